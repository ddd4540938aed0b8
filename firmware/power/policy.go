package power

import (
	"fmt"
	"time"
)

// Mode is the kiosk's power mode, as DESIGN.md names them.
type Mode string

// The modes, in the order a discharge visits them.
const (
	ModeMains    Mode = "mains"
	ModeBattery  Mode = "battery"
	ModeLow      Mode = "low"
	ModeCritical Mode = "critical"
	ModeShutdown Mode = "shutdown"
)

// Thresholds are the [power] keys of DESIGN.md.
type Thresholds struct {
	// Debounce: mains must stay away this long before battery mode
	// begins, and stay back this long before it ends.
	Debounce time.Duration
	// LowSoC: at or under this state of charge (%) the kiosk sheds load.
	LowSoC float64
	// CriticalSoC, CriticalCellVolts (under load), CriticalRuntime: the
	// first of them reached latches the shutdown.
	CriticalSoC       float64
	CriticalCellVolts float64
	CriticalRuntime   time.Duration
	// MaxOnBattery, when set, also latches the shutdown after this long on
	// battery, whatever the gauges say.
	MaxOnBattery time.Duration
	// RestoreHysteresisSoC: low mode ends only once the charge is this
	// far above LowSoC, so a reading that wobbles on the line does not
	// flap the lights and the load.
	RestoreHysteresisSoC float64
}

// DefaultThresholds are DESIGN.md's defaults.
var DefaultThresholds = Thresholds{
	Debounce: 5 * time.Second, LowSoC: 30, CriticalSoC: 15, CriticalCellVolts: 3.5,
	CriticalRuntime: 5 * time.Minute, RestoreHysteresisSoC: 5,
}

// Check reports thresholds that cannot work together.
func (t Thresholds) Check() error {
	switch {
	case t.Debounce < 0 || t.Debounce > 10*time.Minute:
		return fmt.Errorf("power: debounce %s: want 0 to 10m", t.Debounce)
	case t.CriticalSoC <= 0 || t.LowSoC <= t.CriticalSoC || t.LowSoC > 100:
		return fmt.Errorf("power: want 0 < critical_soc (%v) < low_soc (%v) <= 100", t.CriticalSoC, t.LowSoC)
	case t.CriticalCellVolts < 2.5 || t.CriticalCellVolts > 4.2:
		return fmt.Errorf("power: critical_cell_volts %v: want a Li-ion cut-off from 2.5 to 4.2", t.CriticalCellVolts)
	case t.CriticalRuntime < 0 || t.MaxOnBattery < 0:
		return fmt.Errorf("power: negative critical_runtime or max_on_battery")
	case t.RestoreHysteresisSoC < 0 || t.LowSoC+t.RestoreHysteresisSoC > 100:
		return fmt.Errorf("power: restore_hysteresis_soc %v: low_soc plus it must stay within 100", t.RestoreHysteresisSoC)
	}
	return nil
}

// Reading is what the policy sees at one instant: the mains-detect line
// and the battery monitors, each nil when it cannot be read.
type Reading struct {
	At        time.Time
	Mains     *bool
	SoC       *float64 // % from the fuel gauge
	CellVolts *float64 // V per cell, under the present load
	RuntimeS  *int64   // estimated seconds to empty, while discharging
	// Amps (the shunt's pack current) and RatePctH (the fuel gauge's
	// CRATE), negative while discharging: the battery's trend, which
	// stands in for a stuck or unreadable mains line.
	Amps     *float64
	RatePctH *float64
}

// Actions is everything the policy does to the world. The policy calls
// them from Step, in order, and never blocks on the result; the kiosk's
// implementation queues the work (lights, ledger sync, the shutdown
// sequence) and reports the shutdown's end with ShutdownDone.
type Actions interface {
	// MainsLost and MainsRestored go out at the edge, before any debounce:
	// the fleet hears of every blip, even those that change nothing else.
	// src says whether the line or the battery's trend saw it.
	MainsLost(at time.Time, src Source)
	MainsRestored(at time.Time, src Source)
	// MainsLine reports the mains-detect line found stuck (the battery's
	// trend stands in for it) or working again.
	MainsLine(stuck bool, reason string)
	// Enter is the kiosk entering mode for reason: the lighting scene,
	// the telemetry cadence and the fleet's event for the mode.
	Enter(mode Mode, reason string)
	// ShedLoad dims the lights to essentials and pauses background work
	// (OTA downloads); RestoreLoad undoes it. SyncLedger flushes the
	// ledger and pushes the outbox.
	ShedLoad()
	RestoreLoad()
	SyncLedger()
	// Shutdown starts the shutdown sequence: finish the sale in
	// progress, refuse new ones, flush, final telemetry, offline, power
	// off. It is called once.
	Shutdown(reason string)
}

// State is one power mode. Handle decides, from a reading, the state the
// kiosk is in next (itself to stay); it does no I/O.
type State interface {
	Mode() Mode
	Handle(p *Policy, r Reading) (next State, reason string)
}

// Policy is the battery-mode state machine: mains → battery → low →
// critical → shutdown, debounced on the way into battery mode and out of
// it, with hysteresis out of low, and latched from critical on. It is not
// safe for concurrent use: one goroutine feeds it readings.
type Policy struct {
	th    Thresholds
	act   Actions
	state State
	mains *bool // mains as last taken, for the edge events
	line  lineCheck
	src   Source
}

// NewPolicy starts in mains mode.
func NewPolicy(th Thresholds, act Actions) (*Policy, error) {
	if err := th.Check(); err != nil {
		return nil, err
	}
	return &Policy{th: th, act: act, state: onMains{}, src: SourceLine}, nil
}

// SetThresholds changes the thresholds from the next step on (the fleet's
// config). A latched shutdown stays latched.
func (p *Policy) SetThresholds(th Thresholds) error {
	if err := th.Check(); err != nil {
		return err
	}
	p.th = th
	return nil
}

// State is the state the policy is in.
func (p *Policy) State() State { return p.state }

// Mode is the mode the policy is in.
func (p *Policy) Mode() Mode { return p.state.Mode() }

// Source is where the policy's idea of mains comes from now.
func (p *Policy) Source() Source { return p.src }

// Deadline is when the policy will act on the readings it has if nothing
// changes (a debounce ending, the line called stuck, the longest time on
// battery reached), so the caller can step it then rather than at its next
// periodic reading.
func (p *Policy) Deadline() (time.Time, bool) {
	var at []time.Time
	if t, ok := p.line.deadline(); ok {
		at = append(at, t)
	}
	switch s := p.state.(type) {
	case onMains:
		if !s.lostAt.IsZero() {
			at = append(at, s.lostAt.Add(p.th.Debounce))
		}
	case onBattery:
		at = append(at, s.away.deadlines(p.th)...)
	case low:
		at = append(at, s.away.deadlines(p.th)...)
	case resting:
		if !s.backAt.IsZero() {
			at = append(at, s.backAt.Add(p.th.Debounce))
		}
		if !s.blindSince.IsZero() {
			at = append(at, s.blindSince.Add(RestBlind))
		}
	}
	if len(at) == 0 {
		return time.Time{}, false
	}
	first := at[0]
	for _, t := range at[1:] {
		if t.Before(first) {
			first = t
		}
	}
	return first, true
}

// Step feeds the policy a reading and carries out what follows from it.
func (p *Policy) Step(r Reading) {
	mains, src, rep := p.line.observe(r)
	if rep != nil {
		p.act.MainsLine(rep.stuck, rep.reason)
	}
	p.src = src
	r.Mains = mains
	if r.Mains != nil && (p.mains == nil || *p.mains != *r.Mains) {
		if p.mains != nil || !*r.Mains { // the first reading of mains present is no news
			if *r.Mains {
				p.act.MainsRestored(r.At, src)
			} else {
				p.act.MainsLost(r.At, src)
			}
		}
		p.mains = ptr(*r.Mains)
	}
	// A reading can carry the kiosk through several states at once (the
	// debounce over and the charge already low); four is the most a
	// discharge can take, so a loop is a bug, not a hang.
	for range 4 {
		next, reason := p.state.Handle(p, r)
		if next.Mode() == p.state.Mode() {
			p.state = next // the same mode, with what it remembers updated
			return
		}
		p.enter(p.state, next, reason)
	}
}

// Rest starts the policy waiting for mains after a battery shutdown: the
// last boot ended because the pack was nearly empty, and a kiosk that
// traded on until the next latch would only shut down again (a loop
// where the UPS does not cut the power, or the power-off failed). It
// reports critical with reason, starts no shutdown, and leaves once mains
// has been back for the debounce. Only mains ends it: a charge read at
// rest says nothing of the thresholds (a sagging voltage, a short
// runtime) the next load would cross again. With nothing readable at all
// for RestBlind, it gives up waiting and trades as it would with no
// power readings.
func (p *Policy) Rest(reason string) {
	p.state = resting{}
	p.act.Enter(ModeCritical, reason)
}

// ShutdownDone records the end of the shutdown sequence.
func (p *Policy) ShutdownDone() {
	if _, ok := p.state.(critical); ok {
		p.state = shutdown{}
		p.act.Enter(ModeShutdown, "the till is closed; telling the fleet, closing the ledger, powering off")
	}
}

func (p *Policy) enter(from, to State, reason string) {
	p.state = to
	p.act.Enter(to.Mode(), reason)
	switch to.Mode() {
	case ModeLow:
		p.act.ShedLoad()
		p.act.SyncLedger()
	case ModeCritical:
		p.act.Shutdown(reason)
	case ModeMains, ModeBattery:
		if from.Mode() == ModeLow {
			p.act.RestoreLoad()
		}
		if from.Mode() == ModeMains {
			// Every sale made so far goes to disk and to the fleet
			// while the link and the charge last.
			p.act.SyncLedger()
		}
	}
}

// soc is the state of charge from the gauge, or else estimated from the
// cell voltage, with how it was known.
func soc(r Reading) (float64, string, bool) {
	switch {
	case r.SoC != nil:
		return *r.SoC, "fuel gauge", true
	case r.CellVolts != nil:
		return SoCFromCellVolts(*r.CellVolts), "estimated from cell voltage", true
	}
	return 0, "", false
}

// Hold is how long a gauge's reading must stay past low_soc or a critical
// threshold to count: the voltage under load (and with it a charge
// estimated from it, and the draw behind a runtime estimate) dips while
// the printer's motor or the screen's backlight starts, and a dip of a
// moment is no reason to shed the load or close the till for the night.
const Hold = 5 * time.Second

// criticalReason is why the shutdown must begin now, or "". a remembers
// since when the gauges have been past a threshold.
func (p *Policy) criticalReason(r Reading, a *away) string {
	if why := p.gaugesCritical(r); why == "" || p.line.charge.held {
		a.sagSince = time.Time{} // a cell that has been charging is not dying
	} else if a.sagSince.IsZero() {
		a.sagSince = r.At
	} else if r.At.Sub(a.sagSince) >= Hold {
		return why
	}
	if th := p.th; th.MaxOnBattery > 0 && r.At.Sub(a.since) >= th.MaxOnBattery {
		return fmt.Sprintf("on battery for %s, the most allowed", th.MaxOnBattery)
	}
	return ""
}

// gaugesCritical is the first critical threshold the readings are past,
// or "".
func (p *Policy) gaugesCritical(r Reading) string {
	th := p.th
	if s, how, ok := soc(r); ok && s <= th.CriticalSoC {
		return fmt.Sprintf("state of charge %.0f%% at or under %.0f%% (%s)", s, th.CriticalSoC, how)
	}
	if r.CellVolts != nil && *r.CellVolts <= th.CriticalCellVolts {
		return fmt.Sprintf("cell voltage %.2f V at or under %.2f V", *r.CellVolts, th.CriticalCellVolts)
	}
	if r.RuntimeS != nil && th.CriticalRuntime > 0 && time.Duration(*r.RuntimeS)*time.Second <= th.CriticalRuntime {
		return fmt.Sprintf("estimated runtime %s at or under %s", time.Duration(*r.RuntimeS)*time.Second, th.CriticalRuntime)
	}
	return ""
}

func mainsOff(r Reading) bool { return r.Mains != nil && !*r.Mains }
func mainsOn(r Reading) bool  { return r.Mains != nil && *r.Mains }

// onMains: mains present, or lost for less than the debounce (lostAt set).
type onMains struct{ lostAt time.Time }

func (onMains) Mode() Mode { return ModeMains }

func (s onMains) Handle(p *Policy, r Reading) (State, string) {
	if !mainsOff(r) {
		if s.lostAt.IsZero() {
			return s, ""
		}
		return onMains{}, "" // a blip: nothing else changes
	}
	if s.lostAt.IsZero() {
		s.lostAt = r.At
	}
	if r.At.Sub(s.lostAt) < p.th.Debounce {
		return s, ""
	}
	return onBattery{away{since: s.lostAt}}, fmt.Sprintf("mains lost for %s", p.th.Debounce)
}

// restored is the state a battery mode returns to once mains has been
// back for the debounce: backAt is when it came back, zero while away.
func restored(p *Policy, r Reading, backAt time.Time) (time.Time, bool) {
	if !mainsOn(r) {
		return time.Time{}, false
	}
	if backAt.IsZero() {
		backAt = r.At
	}
	return backAt, r.At.Sub(backAt) >= p.th.Debounce
}

// away is what the battery modes share: since when the kiosk has been on
// battery, since when mains has been back (zero while it is away), and
// since when the gauges have been past a critical threshold or low_soc
// (zero while they are not).
type away struct{ since, backAt, sagSince, lowSince time.Time }

// deadlines are when a battery mode may change with no new reading: mains
// back for the debounce, or the longest time on battery.
func (a away) deadlines(th Thresholds) []time.Time {
	var at []time.Time
	if !a.backAt.IsZero() {
		at = append(at, a.backAt.Add(th.Debounce))
	}
	if th.MaxOnBattery > 0 {
		at = append(at, a.since.Add(th.MaxOnBattery))
	}
	for _, t := range []time.Time{a.sagSince, a.lowSince} {
		if !t.IsZero() {
			at = append(at, t.Add(Hold))
		}
	}
	return at
}

// leave is where a battery mode goes whatever the charge: home once mains
// has been back for the debounce, or to critical; nil to stay.
func (a *away) leave(p *Policy, r Reading) (State, string) {
	var ok bool
	if a.backAt, ok = restored(p, r, a.backAt); ok {
		return onMains{}, fmt.Sprintf("mains back for %s", p.th.Debounce)
	}
	if why := p.criticalReason(r, a); why != "" {
		return critical{}, why
	}
	return nil, ""
}

// onBattery: mains away past the debounce, the charge above low.
type onBattery struct{ away }

func (onBattery) Mode() Mode { return ModeBattery }

func (s onBattery) Handle(p *Policy, r Reading) (State, string) {
	if next, why := s.leave(p, r); next != nil {
		return next, why
	}
	c, how, ok := soc(r)
	switch {
	case !ok || c > p.th.LowSoC:
		s.lowSince = time.Time{}
	case s.lowSince.IsZero():
		s.lowSince = r.At
	case r.At.Sub(s.lowSince) >= Hold:
		// Held, as for critical: a charge read from a voltage that dips
		// for a moment must not flap the lights and the load.
		s.lowSince = time.Time{}
		return low(s), fmt.Sprintf("state of charge %.0f%% at or under %.0f%% (%s)", c, p.th.LowSoC, how)
	}
	return s, ""
}

// low: on battery with the charge low; load shed.
type low struct{ away }

func (low) Mode() Mode { return ModeLow }

func (s low) Handle(p *Policy, r Reading) (State, string) {
	if next, why := s.leave(p, r); next != nil {
		return next, why
	}
	// Strictly above low_soc too, so a hysteresis of 0 cannot flap on
	// a reading that sits on the line.
	if c, how, ok := soc(r); ok && c >= p.th.LowSoC+p.th.RestoreHysteresisSoC && c > p.th.LowSoC {
		return onBattery(s), fmt.Sprintf("state of charge back to %.0f%% (%s)", c, how)
	}
	return s, ""
}

// critical: the shutdown is latched, like NUT's forced shutdown: mains
// coming back does not stop it half-way. The next boot starts afresh.
type critical struct{}

func (critical) Mode() Mode                                { return ModeCritical }
func (s critical) Handle(*Policy, Reading) (State, string) { return s, "" }

// RestBlind is how long a resting kiosk waits with nothing readable (no
// mains line, no gauge) before it gives up waiting for mains.
const RestBlind = time.Minute

// resting: after a battery shutdown, waiting for mains (see Rest).
type resting struct{ backAt, blindSince time.Time }

func (resting) Mode() Mode { return ModeCritical }

func (s resting) Handle(p *Policy, r Reading) (State, string) {
	var ok bool
	if s.backAt, ok = restored(p, r, s.backAt); ok {
		return onMains{}, fmt.Sprintf("mains back for %s", p.th.Debounce)
	}
	if _, _, known := soc(r); r.Mains != nil || known {
		s.blindSince = time.Time{}
		return s, ""
	}
	if s.blindSince.IsZero() {
		s.blindSince = r.At
	}
	if r.At.Sub(s.blindSince) >= RestBlind {
		return onMains{}, fmt.Sprintf("no mains line and no battery readings for %s: trading without them", RestBlind)
	}
	return s, ""
}

// shutdown: the sequence is done; the kiosk powers off or exits.
type shutdown struct{}

func (shutdown) Mode() Mode                                { return ModeShutdown }
func (s shutdown) Handle(*Policy, Reading) (State, string) { return s, "" }

// cellCurve is a Li-ion (NMC, 18650-class) cell's charge against its
// resting voltage, from 3.0 V (empty) to 4.2 V (full): the fallback when
// no fuel gauge answers. The voltage read is under load, lower than the
// resting one, so the charge read is lower than the cell's: the fallback
// errs towards shutting down early, never late. (A curve that put more
// charge on a voltage than the cell has would shut down late.)
var cellCurve = []struct{ v, soc float64 }{
	{3.00, 0}, {3.45, 5}, {3.60, 10}, {3.70, 20}, {3.75, 30}, {3.80, 40},
	{3.87, 55}, {3.92, 65}, {4.00, 80}, {4.10, 90}, {4.20, 100},
}

// SoCFromCellVolts estimates the state of charge (%) from a cell's voltage.
func SoCFromCellVolts(v float64) float64 {
	if v <= cellCurve[0].v {
		return 0
	}
	for i := 1; i < len(cellCurve); i++ {
		if a, b := cellCurve[i-1], cellCurve[i]; v <= b.v {
			return a.soc + (v-a.v)/(b.v-a.v)*(b.soc-a.soc)
		}
	}
	return 100
}
