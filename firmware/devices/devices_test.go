package devices

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/firmware/events"
)

// flaky is a device whose opens and steps fail while told to.
type flaky struct {
	mu               sync.Mutex
	openErr, stepErr error
	opens, closes    int
	steps            int
}

func (f *flaky) Open(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.openErr != nil {
		return f.openErr
	}
	f.opens++
	return nil
}

func (f *flaky) Step(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.steps++
	return f.stepErr
}

func (f *flaky) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes++
	return nil
}

func (f *flaky) set(open, step error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.openErr, f.stepErr = open, step
}

// waitFor polls cond; supervision runs in goroutines on a fast clock.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSupervisionLifecycle(t *testing.T) {
	hub := events.NewHub(0, nil)
	sub := hub.Subscribe(0, false, 1024)
	var (
		mu    sync.Mutex
		waits []time.Duration
	)
	s := New(Options{
		Logger: zerolog.Nop(), Events: hub, MinBackoff: time.Second, MaxBackoff: 8 * time.Second,
		After: func(ctx context.Context, d time.Duration) bool {
			if d >= time.Second { // a backoff, not a step pause
				mu.Lock()
				waits = append(waits, d)
				mu.Unlock()
			}
			time.Sleep(100 * time.Microsecond)
			return ctx.Err() == nil
		},
	})
	defer s.Close(context.Background())
	absent := errors.New("no answer at 0x24")
	d := &flaky{openErr: absent}
	s.Start(Spec{Name: "nfc", Chip: "pn532", Device: d, Every: time.Millisecond})

	// Absent at start: offline, the till is not held up, retries back off.
	waitFor(t, "offline with backoff", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(waits) >= 5
	})
	h, _ := s.Get("nfc")
	if h.State != Offline || h.Error != absent.Error() || h.Retry.IsZero() {
		t.Fatalf("absent device: %+v", h)
	}
	mu.Lock()
	for i := 1; i < len(waits); i++ {
		lo := min(time.Second<<min(i, 3), 8*time.Second)
		if waits[i] < lo || waits[i] > lo+lo/5 {
			t.Errorf("backoff %d = %s, want %s plus at most a fifth", i, waits[i], lo)
		}
	}
	mu.Unlock()

	// It appears: ok.
	d.set(nil, nil)
	waitFor(t, "ok", func() bool { return s.States()["nfc"] == "ok" })

	// One failed step: degraded; three in a row: offline and closed.
	d.set(nil, errors.New("checksum"))
	waitFor(t, "offline after failures", func() bool { h, _ := s.Get("nfc"); return h.State == Offline })
	d.mu.Lock()
	closes := d.closes
	d.mu.Unlock()
	if closes == 0 {
		t.Fatal("a device that went offline was not closed")
	}
	// It comes back: ok again, reopened.
	d.set(nil, nil)
	waitFor(t, "ok again", func() bool { h, _ := s.Get("nfc"); return h.State == OK && h.Opens >= 2 })

	// Health is recorded before its event is published, so the last
	// event may still be on its way: read until four have come.
	want := []string{events.DeviceOK, events.DeviceDegraded, events.DeviceOffline, events.DeviceOK}
	var seen []string
	timeout := time.After(5 * time.Second)
	for len(seen) < len(want) {
		select {
		case e, ok := <-sub.C():
			if !ok {
				t.Fatalf("event listener cut off after %v", seen)
			}
			seen = append(seen, e.Type)
		case <-timeout:
			t.Fatalf("events %v, want %v", seen, want)
		}
	}
	for i, w := range want {
		if seen[i] != w {
			t.Fatalf("events %v, want %v", seen, want)
		}
	}
}

func TestCloseStopsEveryDevice(t *testing.T) {
	s := New(Options{Logger: zerolog.Nop()})
	d1, d2 := &flaky{}, &flaky{openErr: errors.New("absent")}
	s.Start(Spec{Name: "a", Device: d1, Every: time.Millisecond})
	s.Start(Spec{Name: "b", Device: d2})
	waitFor(t, "a ok", func() bool { return s.States()["a"] == "ok" })
	s.Close(context.Background())
	d1.mu.Lock()
	defer d1.mu.Unlock()
	if d1.closes == 0 {
		t.Fatal("Close did not close a running device")
	}
}

// panicky is a driver that panics on a bad reply.
type panicky struct{ flaky }

func (p *panicky) Step(context.Context) error { panic("index out of range [3] with length 2") }

func TestDriverPanicCostsOnlyItsDevice(t *testing.T) {
	s := New(Options{Logger: zerolog.Nop(), MinBackoff: time.Millisecond})
	s.Start(Spec{Name: "nfc", Device: &panicky{}})
	s.Start(Spec{Name: "gauge", Device: &flaky{}, Every: time.Millisecond})
	waitFor(t, "the panicking device offline", func() bool {
		h, _ := s.Get("nfc")
		return h.State == Offline && strings.Contains(h.Error, "driver panicked: index out of range")
	})
	waitFor(t, "the other device working on", func() bool {
		h, _ := s.Get("gauge")
		return h.State == OK && h.Opens == 1
	})
	if !s.Close(context.Background()) {
		t.Fatal("Close did not stop the devices")
	}
}

// stuck is a driver whose step ignores cancellation, like a hung transfer.
type stuck struct {
	flaky
	release chan struct{}
}

func (s *stuck) Step(context.Context) error { <-s.release; return nil }

func TestCloseGivesUpOnAStuckDriver(t *testing.T) {
	s := New(Options{Logger: zerolog.Nop()})
	d := &stuck{release: make(chan struct{})}
	defer close(d.release)
	s.Start(Spec{Name: "nfc", Device: d})
	waitFor(t, "open", func() bool { return s.States()["nfc"] == "ok" })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if s.Close(ctx) {
		t.Fatal("Close reported a stuck driver as stopped")
	}
}
