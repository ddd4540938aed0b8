package mains

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
)

// ErrHalted is what Wait returns once Halt was called.
var ErrHalted = errors.New("mains: halted")

// Opts configures a Dev.
type Opts struct {
	// ActiveHigh is the level meaning mains present: true on the Geekworm
	// X1200, false on the X728.
	ActiveHigh bool
	// Debounce is how long a level must hold to count. Zero means 50 ms.
	Debounce time.Duration
	// Poll is how often a line without edge interrupts is sampled. Zero
	// means 100 ms.
	Poll time.Duration
}

// DefaultOpts suit a Geekworm X1200.
var DefaultOpts = Opts{
	ActiveHigh: true,
	Debounce:   50 * time.Millisecond,
	Poll:       100 * time.Millisecond,
}

// maxSlice bounds one WaitForEdge, so that a lost wake-up delays Wait by
// at most this much.
const maxSlice = time.Second

// Dev is a mains-present line. It is safe for concurrent use; concurrent
// Waits take turns.
type Dev struct {
	pin     gpio.PinIn
	opts    Opts
	polling bool

	waitMu sync.Mutex
	last   bool // the state Wait last returned, or the one at New

	mu     sync.Mutex
	halted bool
	halt   chan struct{} // closed by Halt
}

var _ conn.Resource = (*Dev)(nil)

// New watches p. It arms edge detection on both edges, leaving the pull as
// the board set it; if the line has no edge interrupts it polls instead.
// opts nil means DefaultOpts; zero durations in opts mean the defaults.
func New(p gpio.PinIn, opts *Opts) (*Dev, error) {
	if p == nil {
		return nil, errors.New("mains: no pin")
	}
	o := DefaultOpts
	if opts != nil {
		o = *opts
	}
	if o.Debounce == 0 {
		o.Debounce = DefaultOpts.Debounce
	}
	if o.Poll == 0 {
		o.Poll = DefaultOpts.Poll
	}
	if o.Debounce < 0 || o.Poll < 0 {
		return nil, fmt.Errorf("mains: negative debounce %s or poll %s", o.Debounce, o.Poll)
	}
	d := &Dev{pin: p, opts: o, halt: make(chan struct{})}
	if err := d.arm(); err != nil {
		if err := p.In(gpio.PullNoChange, gpio.NoEdge); err != nil {
			return nil, fmt.Errorf("mains: %s as input: %w", p, err)
		}
		d.polling = true
	}
	d.last = d.Present()
	return d, nil
}

// Present reports the line's level now, not debounced.
func (d *Dev) Present() bool {
	return (d.pin.Read() == gpio.High) == d.opts.ActiveHigh
}

// Polling reports whether the line lacks edge interrupts and is sampled
// every Opts.Poll.
func (d *Dev) Polling() bool { return d.polling }

// Wait blocks until the debounced state differs from the one it last
// returned (at first, from the line's state at New) and returns it. A
// level must hold for Opts.Debounce to count, every edge starting the
// count again; a bounce train that settles back returns nothing. Wait
// returns ctx's error when ctx is done and ErrHalted after Halt.
func (d *Dev) Wait(ctx context.Context) (present bool, err error) {
	d.waitMu.Lock()
	defer d.waitMu.Unlock()
	if err := d.done(ctx); err != nil {
		return false, err
	}
	if !d.polling {
		// An earlier Wait's cancellation halted the pin, disarming it.
		if err := d.arm(); err != nil {
			return false, err
		}
		// Halting the pin wakes a WaitForEdge in progress.
		halted := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			_ = d.pin.Halt()
			close(halted)
		})
		defer func() {
			if !stop() {
				<-halted
			}
		}()
	}
	cand, since := d.Present(), time.Now()
	for {
		timeout := time.Duration(-1) // until the line moves
		if cand != d.last {
			if timeout = d.opts.Debounce - time.Since(since); timeout <= 0 {
				// Held long enough by the clock, but this goroutine may
				// have run late: an edge still queued means the line moved
				// within the window, and the count starts again.
				if !d.polling && d.pin.WaitForEdge(0) {
					cand, since = d.Present(), time.Now()
					continue
				}
				d.last = cand
				return cand, nil
			}
		}
		edge, err := d.sense(ctx, timeout)
		if err != nil {
			return false, err
		}
		if now := d.Present(); edge || now != cand {
			cand, since = now, time.Now()
		}
	}
}

// sense returns when the line may have moved, reporting whether an edge
// did, or after timeout (negative: none).
func (d *Dev) sense(ctx context.Context, timeout time.Duration) (bool, error) {
	if d.polling {
		if timeout < 0 || timeout > d.opts.Poll {
			timeout = d.opts.Poll
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-d.halt:
		case <-t.C:
		}
		return false, d.done(ctx)
	}
	if timeout < 0 || timeout > maxSlice {
		timeout = maxSlice
	}
	start := time.Now()
	edge := d.pin.WaitForEdge(timeout)
	if err := d.done(ctx); err != nil {
		return false, err
	}
	if !edge && time.Since(start) < timeout {
		// Woken early without an edge: something halted the pin. Re-arm.
		if err := d.arm(); err != nil {
			return false, err
		}
	}
	return edge, nil
}

func (d *Dev) arm() error {
	if err := d.pin.In(gpio.PullNoChange, gpio.BothEdges); err != nil {
		return fmt.Errorf("mains: %s: arm both edges: %w", d.pin, err)
	}
	return nil
}

// done is ErrHalted after Halt, else ctx's error.
func (d *Dev) done(ctx context.Context) error {
	d.mu.Lock()
	halted := d.halted
	d.mu.Unlock()
	if halted {
		return ErrHalted
	}
	return ctx.Err()
}

// String implements conn.Resource.
func (d *Dev) String() string { return fmt.Sprintf("mains(%s)", d.pin) }

// Halt implements conn.Resource: it halts the pin, which stops edge
// detection, and makes Wait return ErrHalted. Present still works.
func (d *Dev) Halt() error {
	d.mu.Lock()
	if d.halted {
		d.mu.Unlock()
		return nil
	}
	d.halted = true
	close(d.halt)
	d.mu.Unlock()
	return d.pin.Halt()
}
