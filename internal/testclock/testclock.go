// Package testclock is the injected clock of kioskd's tests: it stands
// still until a test moves it, so time-dependent code is tested without
// sleeping and without flaking on a loaded machine.
package testclock

import (
	"sync"
	"time"
)

// Clock is a clock that moves only when told to. It is safe for
// concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock showing t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now is the time on the clock; pass it where code takes a func() time.Time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Sleep is Advance, for code that takes an injected sleep: sleeping on
// this clock takes no time and moves it.
func (c *Clock) Sleep(d time.Duration) { c.Advance(d) }
