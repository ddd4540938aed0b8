// Package devices supervises the kiosk's peripherals. Each configured
// device is opened at start and then worked in its own goroutine. Its
// health is ok, degraded or offline. A device that fails is retried with
// exponential backoff and jitter, and is ok again once it answers.
//
// Nothing here ever blocks the till. A missing card reader, a gauge with no
// battery behind it, or a lighting board that browned out costs that device
// only. Each change of health is logged once and published as an event.
package devices

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/internal/wait"
)

// State is a device's health.
type State string

// The health states.
const (
	OK       State = "ok"       // it answers and its last operation worked
	Degraded State = "degraded" // it answers, but its last operation failed
	Offline  State = "offline"  // it does not answer; retried with backoff
)

// Device is a peripheral under supervision.
type Device interface {
	// Open finds the device and sets it up. An error leaves it offline.
	Open(ctx context.Context) error
	// Step does one unit of the device's work: a reading, a card poll, a
	// lighting frame. It paces itself or relies on Spec.Every. An error
	// marks the device degraded; Spec.Failures in a row take it offline.
	Step(ctx context.Context) error
	// Close releases the device. It is called after the device goes
	// offline and at shutdown, and must tolerate a device that is gone.
	Close() error
}

// Spec is one device to supervise.
type Spec struct {
	Name   string // as shown in /api/state: "nfc", "fuel_gauge", …
	Chip   string // the driver behind it: "pn532", …
	Device Device
	// Every is the pause between steps; 0 when Step paces itself.
	Every time.Duration
	// Failures is how many failed steps in a row take the device offline
	// (default 3). A single failure makes it degraded.
	Failures int
}

// Options configures a Supervisor.
type Options struct {
	Logger zerolog.Logger
	Events *events.Hub // may be nil
	Clock  func() time.Time
	// MinBackoff and MaxBackoff bound the wait before reopening an offline
	// device (defaults 1s and 1m). Each failed open doubles the wait, with
	// up to a fifth of jitter so a fleet that browns out together does not
	// retry in lockstep.
	MinBackoff, MaxBackoff time.Duration
	// After waits for d or until ctx ends; tests speed time up with it.
	After func(ctx context.Context, d time.Duration) bool
}

// Health is what the supervisor knows about one device.
type Health struct {
	Name     string    `json:"name"`
	Chip     string    `json:"chip"`
	State    State     `json:"state"`
	Error    string    `json:"error,omitempty"`
	Since    time.Time `json:"since"`
	Failures int       `json:"failures"`          // failed operations in a row
	Retry    time.Time `json:"retry_at,omitzero"` // when an offline device is next tried
	Opens    int       `json:"opens"`             // times it was opened successfully
}

// Supervisor runs the devices. It is safe for concurrent use.
type Supervisor struct {
	opts Options
	log  zerolog.Logger

	mu     sync.Mutex
	health map[string]*Health
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a supervisor; Add devices, then Start.
func New(opts Options) *Supervisor {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(time.Minute, opts.MinBackoff)
	}
	if opts.After == nil {
		opts.After = wait.After
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Supervisor{
		opts: opts, log: opts.Logger.With().Str("component", "devices").Logger(),
		health: map[string]*Health{}, ctx: ctx, cancel: cancel,
	}
}

// Start supervises spec's device in its own goroutine, until Close.
func (s *Supervisor) Start(spec Spec) {
	if spec.Failures <= 0 {
		spec.Failures = 3
	}
	s.mu.Lock()
	s.health[spec.Name] = &Health{Name: spec.Name, Chip: spec.Chip, State: Offline, Error: "not opened yet", Since: s.opts.Clock()}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(spec)
	}()
}

// Close stops every device and waits for their goroutines, at most until
// ctx ends: a driver stuck in a bus transfer must not hold up a shutdown.
// It reports whether every device stopped.
func (s *Supervisor) Close(ctx context.Context) bool {
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		s.log.Error().Msg("devices did not stop in time; leaving them")
		return false
	}
}

// States maps each device to its state, as /api/state shows it.
func (s *Supervisor) States() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]string, len(s.health))
	for n, h := range s.health {
		m[n] = string(h.State)
	}
	return m
}

// Health returns every device's health, by name.
func (s *Supervisor) Health() []Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Health, 0, len(s.health))
	for _, h := range s.health {
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns one device's health.
func (s *Supervisor) Get(name string) (Health, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.health[name]
	if !ok {
		return Health{}, false
	}
	return *h, true
}

func (s *Supervisor) run(spec Spec) {
	ctx := s.ctx
	backoff := s.opts.MinBackoff
	for ctx.Err() == nil {
		err := guard(func() error { return spec.Device.Open(ctx) })
		if err == nil {
			s.set(spec, OK, nil, time.Time{}, true)
			var worked bool
			worked, err = s.work(ctx, spec)
			_ = guard(spec.Device.Close)
			if worked {
				backoff = s.opts.MinBackoff
			}
		}
		if ctx.Err() != nil {
			break
		}
		// Offline: wait before trying again. The backoff only resets once
		// the device has worked, so a chip that opens but fails every
		// read is not hammered.
		wait := jitter(backoff)
		s.set(spec, Offline, err, s.opts.Clock().Add(wait), false)
		if !s.opts.After(ctx, wait) {
			break
		}
		backoff = min(backoff*2, s.opts.MaxBackoff)
	}
	_ = guard(spec.Device.Close)
}

// guard runs f, turning a panic in a driver into an error: one chip's bad
// reply must cost that device, not the till.
func guard(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("devices: driver panicked: %v", p)
		}
	}()
	return f()
}

// work steps an open device until it fails Spec.Failures times in a row or
// ctx ends. It returns whether any step worked, and the last error.
func (s *Supervisor) work(ctx context.Context, spec Spec) (worked bool, err error) {
	fails := 0
	for {
		err = guard(func() error { return spec.Device.Step(ctx) })
		if ctx.Err() != nil {
			return worked, ctx.Err()
		}
		if err == nil {
			worked, fails = true, 0
			s.set(spec, OK, nil, time.Time{}, false)
		} else if fails++; fails >= spec.Failures {
			return worked, err
		} else {
			s.set(spec, Degraded, err, time.Time{}, false)
		}
		if spec.Every > 0 && !s.opts.After(ctx, spec.Every) {
			return worked, ctx.Err()
		}
	}
}

// set records a device's health; a change of state is logged and published.
func (s *Supervisor) set(spec Spec, st State, err error, retry time.Time, opened bool) {
	now := s.opts.Clock()
	s.mu.Lock()
	h := s.health[spec.Name]
	prev, prevErr := h.State, h.Error
	if st != prev {
		h.Since = now
	}
	h.State, h.Retry, h.Error = st, retry, ""
	if err != nil {
		h.Error = err.Error()
	}
	switch {
	case st == OK:
		h.Failures = 0
	case err != nil:
		h.Failures++
	}
	if opened {
		h.Opens++
	}
	snap := *h
	s.mu.Unlock()

	// Log and publish changes only: a chip that stays offline for an hour
	// is one line, not thousands.
	if st == prev && snap.Error == prevErr {
		return
	}
	ev := s.log.Info()
	if st != OK {
		ev = s.log.Warn().Str("error", snap.Error)
		if !retry.IsZero() {
			ev = ev.Dur("retry_in", retry.Sub(now))
		}
	}
	ev.Str("device", spec.Name).Str("chip", spec.Chip).Str("state", string(st)).Msg("device health")
	if s.opts.Events != nil && st != prev {
		typ := map[State]string{OK: events.DeviceOK, Degraded: events.DeviceDegraded, Offline: events.DeviceOffline}[st]
		s.opts.Events.Publish(typ, snap)
	}
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// Chip adapts a driver to Device: OpenFunc makes the driver (its New),
// StepFunc works it, and Forget drops what it read once it closes, so a
// device that went offline never shows stale numbers.
type Chip[D interface{ Halt() error }] struct {
	OpenFunc func(context.Context) (D, error)
	StepFunc func(context.Context, D) error
	Forget   func() // may be nil

	dev  D
	open bool
}

// Open implements Device.
func (c *Chip[D]) Open(ctx context.Context) error {
	d, err := c.OpenFunc(ctx)
	if err != nil {
		return err
	}
	c.dev, c.open = d, true
	return nil
}

// Step implements Device.
func (c *Chip[D]) Step(ctx context.Context) error { return c.StepFunc(ctx, c.dev) }

// Close implements Device: it forgets the readings and halts the driver.
func (c *Chip[D]) Close() error {
	if c.Forget != nil {
		c.Forget()
	}
	if !c.open {
		return nil
	}
	c.open = false
	return c.dev.Halt()
}
