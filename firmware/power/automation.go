package power

import (
	"context"
	"sync"
	"time"
)

// Automation runs the policy on the kiosk's sensors: a step at every
// mains edge, as it happens, and one a second with the latest battery
// readings and runtime estimate. Its Actions are called from Run's
// goroutine and must not call back into the Automation before returning.
type Automation struct {
	s          *Sensors
	p          *Policy
	capacityAh float64
	clock      func() time.Time

	pmu sync.Mutex // the policy is fed from Run and ShutdownDone

	mu        sync.Mutex
	mode      Mode
	src       Source
	mains     *bool // mains as the policy takes it
	estimate  *Estimate
	deadline  time.Time // when the policy next acts on its own; zero for none
	steppedAt time.Time // the time of the last step's reading
}

// AutomationOptions configure NewAutomation.
type AutomationOptions struct {
	Thresholds Thresholds
	CapacityAh float64 // the pack's capacity, for the runtime estimate; 0: unknown
	Actions    Actions
	Clock      func() time.Time
	// Resting, if set, starts the automation waiting for mains after a
	// battery shutdown (Policy.Rest), with this reason.
	Resting string
}

// NewAutomation returns the automation, in mains mode until Run.
func NewAutomation(s *Sensors, o AutomationOptions) (*Automation, error) {
	a := &Automation{s: s, capacityAh: o.CapacityAh, clock: o.Clock, mode: ModeMains, src: SourceLine}
	p, err := NewPolicy(o.Thresholds, entering{a, o.Actions})
	if err != nil {
		return nil, err
	}
	if a.clock == nil {
		a.clock = time.Now
	}
	a.p = p
	if o.Resting != "" {
		p.Rest(o.Resting)
	}
	return a, nil
}

// entering is the Actions that records a mode as it is entered, before
// the kiosk's own actions run: whatever they ask of the automation (the
// fleet's report of the new mode) sees it.
type entering struct {
	a *Automation
	Actions
}

func (e entering) Enter(m Mode, why string) {
	e.a.mu.Lock()
	e.a.mode = m
	e.a.mu.Unlock()
	e.Actions.Enter(m, why)
}

// Run steps the policy until ctx ends: at every edge, once a second, and
// at the moment a debounce ends, so the kiosk reacts to a cut within
// milliseconds of the debounce, not at the next periodic reading.
func (a *Automation) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	soon := time.NewTimer(time.Hour)
	defer soon.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-a.s.Edges():
			a.step(e.At, &e.Present)
		case <-tick.C:
			a.step(a.clock(), nil)
		case <-soon.C:
			a.step(a.clock(), nil)
		}
		a.mu.Lock()
		d, last := a.deadline, a.steppedAt
		a.mu.Unlock()
		// A deadline the last step already reached changed nothing
		// then; stepping again at once would only spin.
		if wait := d.Sub(a.clock()); d.After(last) && wait < time.Second {
			soon.Reset(max(wait, 0))
		}
	}
}

// step feeds the policy the readings at now; mains, when set, is the
// line's level at an edge, else the latest known.
func (a *Automation) step(now time.Time, mains *bool) {
	st := a.s.Status()
	b := st.Battery
	r := Reading{At: now, Mains: st.Mains, SoC: b.SOC, CellVolts: b.CellVolts}
	if mains != nil {
		r.Mains = mains
	}
	r.Amps, r.RatePctH = b.Amps, b.RatePctH
	est, ok := EstimateRuntime(Gauges{SoC: b.SOC, RatePctH: b.RatePctH, Amps: b.Amps, CellVolts: b.CellVolts}, a.capacityAh)
	if ok {
		r.RuntimeS = &est.RuntimeS
	}
	a.pmu.Lock()
	a.p.Step(r)
	mode, src, mains := a.p.Mode(), a.p.Source(), a.p.mains
	deadline, _ := a.p.Deadline()
	a.pmu.Unlock()
	a.mu.Lock()
	a.mode, a.src, a.mains, a.deadline, a.steppedAt = mode, src, mains, deadline, now
	a.estimate = nil
	if ok {
		a.estimate = &est
	}
	a.mu.Unlock()
}

// Mode is the power mode now.
func (a *Automation) Mode() Mode {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mode
}

// Mains is whether mains is present as the automation takes it (nil: not
// known), and where that comes from: the line, or the battery's trend
// while the line is stuck or unreadable.
func (a *Automation) Mains() (*bool, Source) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mains, a.src
}

// Estimate is the latest runtime estimate, if there is one.
func (a *Automation) Estimate() (Estimate, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.estimate == nil {
		return Estimate{}, false
	}
	return *a.estimate, true
}

// SetThresholds changes the policy's thresholds from the next step on.
func (a *Automation) SetThresholds(th Thresholds) error {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	return a.p.SetThresholds(th)
}

// ShutdownDone records the end of the shutdown sequence.
func (a *Automation) ShutdownDone() {
	a.pmu.Lock()
	a.p.ShutdownDone()
	mode := a.p.Mode()
	a.pmu.Unlock()
	a.mu.Lock()
	a.mode = mode
	a.mu.Unlock()
}
