package mains

import (
	"context"
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/microretail/kioskd/drivers/emu"
)

const debounce = 20 * time.Millisecond

// quiet is how long a test waits to be sure Wait reports nothing.
const quiet = 150 * time.Millisecond

// modes runs f on a line with edge interrupts and on one without.
func modes(t *testing.T, f func(t *testing.T, line func(gpio.Level) *emu.Pin)) {
	t.Run("edges", func(t *testing.T) {
		f(t, func(l gpio.Level) *emu.Pin { return emu.NewPin("GPIO6", 6, l) })
	})
	t.Run("polling", func(t *testing.T) {
		f(t, func(l gpio.Level) *emu.Pin { return emu.NewPin("GPIO6", 6, l).NoEdges() })
	})
}

func newDev(t *testing.T, p *emu.Pin, activeHigh bool) *Dev {
	t.Helper()
	d, err := New(p, &Opts{ActiveHigh: activeHigh, Debounce: debounce, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Halt() })
	return d
}

// wait is d.Wait bounded by timeout, with how long it took.
func wait(d *Dev, timeout time.Duration) (bool, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	present, err := d.Wait(ctx)
	return present, time.Since(start), err
}

// waitAsync starts d.Wait on ctx; the result arrives on the channel.
func waitAsync(ctx context.Context, d *Dev) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := d.Wait(ctx)
		ch <- err
	}()
	return ch
}

func TestCleanEdges(t *testing.T) {
	modes(t, func(t *testing.T, line func(gpio.Level) *emu.Pin) {
		for _, tt := range []struct {
			name       string
			activeHigh bool
			up, down   gpio.Level // mains present, mains lost
		}{
			{"active high (X1200)", true, gpio.High, gpio.Low},
			{"active low (X728)", false, gpio.Low, gpio.High},
		} {
			t.Run(tt.name, func(t *testing.T) {
				p := line(tt.up)
				d := newDev(t, p, tt.activeHigh)
				if !d.Present() {
					t.Fatal("mains not present at start")
				}
				for _, step := range []struct {
					level gpio.Level
					want  bool
				}{{tt.down, false}, {tt.up, true}, {tt.down, false}} {
					p.Drive(step.level)
					present, took, err := wait(d, time.Second)
					if err != nil || present != step.want {
						t.Fatalf("line %s: Wait = %v, %v; want %v", step.level, present, err, step.want)
					}
					if took < debounce-time.Millisecond { // Present was true before Wait began
						t.Fatalf("line %s reported after %s, before the %s debounce", step.level, took, debounce)
					}
					if d.Present() != step.want {
						t.Fatal("Present disagrees with Wait")
					}
				}
			})
		}
	})
}

func TestBounce(t *testing.T) {
	modes(t, func(t *testing.T, line func(gpio.Level) *emu.Pin) {
		t.Run("train reported once", func(t *testing.T) {
			p := line(gpio.High)
			d := newDev(t, p, true)
			p.Bounce(gpio.Low, 7)
			if present, _, err := wait(d, time.Second); err != nil || present {
				t.Fatalf("Wait = %v, %v; want false", present, err)
			}
			if present, _, err := wait(d, quiet); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("second report %v, %v", present, err)
			}
		})
		t.Run("train settling back", func(t *testing.T) {
			p := line(gpio.High)
			d := newDev(t, p, true)
			p.Bounce(gpio.High, 6)
			if present, _, err := wait(d, quiet); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait = %v, %v; want nothing", present, err)
			}
		})
		t.Run("blip shorter than debounce", func(t *testing.T) {
			p := line(gpio.High)
			d := newDev(t, p, true)
			ctx, cancel := context.WithTimeout(context.Background(), quiet+debounce)
			defer cancel()
			done := waitAsync(ctx, d)
			time.Sleep(10 * time.Millisecond)
			p.Drive(gpio.Low) // held for half the debounce, long enough for a poll to see it
			time.Sleep(debounce / 2)
			p.Drive(gpio.High)
			if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait = %v; want nothing reported", err)
			}
		})
	})
}

// TestChatterRestartsCount needs edge interrupts: a polled line only sees
// the chatter its samples happen to land on.
func TestChatterRestartsCount(t *testing.T) {
	p := emu.NewPin("GPIO6", 6, gpio.High)
	d := newDev(t, p, true)
	start := time.Now()
	done := waitAsync(context.Background(), d)
	for range 4 { // chatter for twice the debounce, never holding long enough
		p.Drive(gpio.Low)
		time.Sleep(debounce / 4)
		p.Drive(gpio.High)
		time.Sleep(debounce / 4)
	}
	p.Drive(gpio.Low)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 3*debounce {
		t.Fatalf("reported after %s, before the line had held for %s after the last edge", took, debounce)
	}

	// A blip too fast to read as a level still restarts the count.
	start = time.Now()
	done = waitAsync(context.Background(), d)
	p.Drive(gpio.High)
	time.Sleep(debounce / 2)
	p.Bounce(gpio.High, 2)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < debounce/2+debounce {
		t.Fatalf("reported after %s, the blip at %s did not restart the count", took, debounce/2)
	}
}

func TestCancel(t *testing.T) {
	modes(t, func(t *testing.T, line func(gpio.Level) *emu.Pin) {
		p := line(gpio.High)
		d := newDev(t, p, true)
		for range 3 {
			ctx, cancel := context.WithCancel(context.Background())
			done := waitAsync(ctx, d)
			time.Sleep(10 * time.Millisecond)
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Wait = %v, want context.Canceled", err)
				}
				if took := time.Since(start); took > maxSlice/2 {
					t.Fatalf("cancellation took %s", took)
				}
			case <-time.After(2 * maxSlice):
				t.Fatal("Wait ignored cancellation")
			}
		}
		// The line still works after cancelled Waits.
		p.Drive(gpio.Low)
		if present, _, err := wait(d, time.Second); err != nil || present {
			t.Fatalf("after cancellations: Wait = %v, %v", present, err)
		}
	})
}

func TestHalt(t *testing.T) {
	modes(t, func(t *testing.T, line func(gpio.Level) *emu.Pin) {
		p := line(gpio.High)
		d := newDev(t, p, true)
		done := waitAsync(context.Background(), d)
		time.Sleep(10 * time.Millisecond)
		start := time.Now()
		if err := d.Halt(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, ErrHalted) {
				t.Fatalf("Wait = %v, want ErrHalted", err)
			}
			if took := time.Since(start); took > maxSlice/2 {
				t.Fatalf("Halt took %s to unblock Wait", took)
			}
		case <-time.After(2 * maxSlice):
			t.Fatal("Halt did not unblock Wait")
		}
		if err := d.Halt(); err != nil {
			t.Fatalf("second Halt: %v", err)
		}
		p.Drive(gpio.Low)
		if _, err := d.Wait(context.Background()); !errors.Is(err, ErrHalted) {
			t.Fatalf("Wait after Halt = %v", err)
		}
		if d.Present() {
			t.Fatal("Present after Halt does not follow the line")
		}
	})
}

func TestNew(t *testing.T) {
	if _, err := New(nil, nil); err == nil {
		t.Fatal("nil pin accepted")
	}
	if _, err := New(emu.NewPin("GPIO6", 6, gpio.High), &Opts{Debounce: -time.Second}); err == nil {
		t.Fatal("negative debounce accepted")
	}
	tests := []struct {
		name    string
		pin     *emu.Pin
		opts    *Opts
		polling bool
		present bool
	}{
		{"defaults", emu.NewPin("GPIO6", 6, gpio.High), nil, false, true},
		{"no edge interrupts", emu.NewPin("GPIO6", 6, gpio.High).NoEdges(), nil, true, true},
		{"active low", emu.NewPin("GPIO6", 6, gpio.High), &Opts{}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.pin, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if d.Polling() != tt.polling || d.Present() != tt.present {
				t.Fatalf("Polling %v Present %v, want %v %v", d.Polling(), d.Present(), tt.polling, tt.present)
			}
			if d.opts.Debounce != DefaultOpts.Debounce || d.opts.Poll != DefaultOpts.Poll {
				t.Fatalf("zero durations not defaulted: %+v", d.opts)
			}
			if tt.pin.IsOutput() || tt.pin.Pull() != gpio.PullNoChange {
				t.Fatal("New changed the line's direction or pull")
			}
			if s := d.String(); s != "mains(GPIO6(emu))" {
				t.Fatal(s)
			}
		})
	}
}
