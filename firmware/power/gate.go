package power

import (
	"context"
	"sync"
)

// Gate holds background work while the kiosk sheds load on a low battery:
// work that can wait (an OTA download, a bulk upload) calls Wait between
// its chunks. Wait returns at once while the gate is open and blocks while
// it is held, until it opens again or ctx ends. It is safe for concurrent
// use; the zero Gate is open.
type Gate struct {
	mu   sync.Mutex
	why  string
	open chan struct{} // closed when the gate opens; nil while open
}

// Hold closes the gate for why ("low battery"); a second Hold only
// changes the reason.
func (g *Gate) Hold(why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.why = why
	if g.open == nil {
		g.open = make(chan struct{})
	}
}

// Release opens the gate; the work waiting goes on.
func (g *Gate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open != nil {
		close(g.open)
		g.open, g.why = nil, ""
	}
}

// Held reports whether the gate is held, and why.
func (g *Gate) Held() (bool, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open != nil, g.why
}

// Wait returns nil once the gate is open, or ctx's error if it ends first.
func (g *Gate) Wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		ch := g.open
		g.mu.Unlock()
		if ch == nil {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
