package power

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/ina219"
	"github.com/microretail/kioskd/drivers/mains"
	"github.com/microretail/kioskd/drivers/max17048"
	"github.com/microretail/kioskd/firmware/devices"
	"github.com/microretail/kioskd/firmware/sim"
	"github.com/microretail/kioskd/internal/testclock"
)

// rig is the sim board's power chips read through their real drivers on
// an injected clock: the sim scenarios, deterministic. Each tick moves the
// clock, runs the battery model, reads every chip once, and steps the
// automation, as kioskd's supervisor and automation do in real time.
type rig struct {
	t     *testing.T
	clk   *testclock.Clock
	w     *sim.World
	s     *Sensors
	a     *Automation
	rec   *recorder
	chips []*devices.Chip[*ina219.Dev]
	gauge *devices.Chip[*max17048.Dev]
	line  *mains.Dev
}

type rigOptions struct {
	noGauge bool
	soc     float64
	drain   float64 // %/min
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	p, err := boards.Load(boards.Sim)
	if err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(t0)
	w, err := sim.New(p, sim.Options{Clock: clk.Now, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	w.SetBattery(&o.soc, &o.drain, nil)
	r := &rig{t: t, clk: clk, w: w, rec: &recorder{}}
	r.s = NewSensors(Options{Clock: clk.Now})
	ctx := context.Background()
	shuntAddr, _ := w.Addr(boards.RoleBatteryShunt)
	shunt := r.s.ShuntDevice(func(context.Context) (*ina219.Dev, error) {
		return ina219.New(w.Bus, shuntAddr, &ina219.DefaultOpts)
	})
	if err := shunt.Open(ctx); err != nil {
		t.Fatal(err)
	}
	r.chips = append(r.chips, shunt)
	gaugeAddr, _ := w.Addr(boards.RoleFuelGauge)
	if o.noGauge {
		w.Bus.Inject(gaugeAddr, emu.FaultNACK, -1) // no gauge answers at its address
	}
	r.gauge = r.s.GaugeDevice(func(context.Context) (*max17048.Dev, error) {
		return max17048.New(w.Bus, gaugeAddr, &max17048.DefaultOpts)
	})
	if err := r.gauge.Open(ctx); err != nil {
		if !o.noGauge {
			t.Fatal(err)
		}
		r.gauge = nil
	}
	l, _ := p.LineFor(boards.RoleMainsDetect)
	pin, _ := w.Line(l.Name)
	if r.line, err = mains.New(pin, &mains.Opts{ActiveHigh: l.ActiveHigh}); err != nil {
		t.Fatal(err)
	}
	r.s.setMains(r.line.Present())
	r.a, err = NewAutomation(r.s, AutomationOptions{Thresholds: DefaultThresholds, CapacityAh: sim.CapacityAh,
		Actions: r.rec, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	r.tick(0)
	return r
}

// conversion is longer than the shunt monitor's conversion at its default
// ADC settings: the chips sense what the model set once it has passed.
const conversion = 30 * time.Millisecond

// tick moves time on by d and runs one round of readings and a step.
func (r *rig) tick(d time.Duration) {
	r.t.Helper()
	r.clk.Advance(max(d-conversion, 0))
	r.w.Advance()
	r.clk.Advance(conversion)
	ctx := context.Background()
	for _, c := range r.chips {
		if err := c.Step(ctx); err != nil {
			r.t.Fatal(err)
		}
	}
	if r.gauge != nil {
		if err := r.gauge.Step(ctx); err != nil {
			r.t.Fatal(err)
		}
	}
	r.s.setMains(r.line.Present())
	drainEdges(r.a)
	r.a.step(r.clk.Now(), nil)
}

// run ticks every step for d.
func (r *rig) run(d, step time.Duration) {
	for end := r.clk.Now().Add(d); r.clk.Now().Before(end); {
		r.tick(step)
	}
}

// runUntil ticks every step until the automation is in mode, for at most
// limit.
func (r *rig) runUntil(mode Mode, limit, step time.Duration) {
	for end := r.clk.Now().Add(limit); r.a.Mode() != mode && r.clk.Now().Before(end); {
		r.tick(step)
	}
}

// modes are the modes entered, in order.
func (r *rig) modes() []string {
	var m []string
	for _, l := range r.rec.log {
		if rest, ok := strings.CutPrefix(l, "enter "); ok {
			m = append(m, rest[:strings.Index(rest, ":")])
		}
	}
	return m
}

func (r *rig) wantModes(want ...string) {
	r.t.Helper()
	if got := strings.Join(r.modes(), " "); got != strings.Join(want, " ") {
		r.t.Fatalf("modes %q, want %q\n%s", got, strings.Join(want, " "), strings.Join(r.rec.log, "\n"))
	}
}

// Scenario 1: a hundred half-second drops through the line's driver: the
// edges and nothing else.
func TestScenarioFlicker(t *testing.T) {
	r := newRig(t, rigOptions{soc: 70, drain: sim.DefaultDrain})
	for range 100 {
		r.w.SetMains(false)
		r.tick(500 * time.Millisecond)
		r.w.SetMains(true)
		r.tick(500 * time.Millisecond)
	}
	r.run(time.Minute, time.Second)
	r.wantModes()
	if lost, back := count(r.rec.log, "mains_lost"), count(r.rec.log, "mains_restored"); lost != 100 || back != 100 {
		t.Fatalf("%d mains_lost, %d mains_restored; want 100 each", lost, back)
	}
}

// Scenario 2: a slow discharge from 80% visits every state in order; the
// shutdown is started once and completes.
func TestScenarioSlowDischarge(t *testing.T) {
	r := newRig(t, rigOptions{soc: 80, drain: sim.DefaultDrain})
	r.w.SetMains(false)
	r.runUntil(ModeCritical, 3*time.Hour, 10*time.Second)
	if st := r.w.State(); st.SOC < 10 {
		t.Fatalf("critical at %.1f%%: too late", st.SOC)
	}
	r.run(10*time.Minute, 10*time.Second) // the sequence takes its time; the decision stands
	r.wantModes("battery", "low", "critical")
	if n := count(r.rec.log, "shutdown:"); n != 1 {
		t.Fatalf("shutdown started %d times", n)
	}
	r.a.ShutdownDone()
	if r.a.Mode() != ModeShutdown {
		t.Fatalf("after the sequence: %s", r.a.Mode())
	}
	if !inOrder(r.rec.log, []string{"enter battery", "sync ledger", "enter low", "shed load", "sync ledger", "enter critical", "shutdown:", "enter shutdown"}) {
		t.Fatalf("actions out of order:\n%s", strings.Join(r.rec.log, "\n"))
	}
}

// Scenario 3: mains back during battery, and during low: home with the
// load restored.
func TestScenarioRestore(t *testing.T) {
	r := newRig(t, rigOptions{soc: 40, drain: sim.DefaultDrain})
	r.w.SetMains(false)
	r.run(time.Minute, time.Second)
	r.w.SetMains(true)
	r.run(10*time.Second, time.Second)
	r.wantModes("battery", "mains")
	r.w.SetMains(false)
	r.run(25*time.Minute, 10*time.Second) // under 30%
	r.w.SetMains(true)
	r.run(10*time.Second, time.Second)
	r.wantModes("battery", "mains", "battery", "low", "mains")
	if !strings.Contains(r.rec.log[len(r.rec.log)-1], "restore load") {
		t.Fatalf("the load was not restored: %v", r.rec.log[len(r.rec.log)-3:])
	}
}

// Scenario 4: mains back after the latch: the shutdown goes on.
func TestScenarioRestoreAfterLatch(t *testing.T) {
	r := newRig(t, rigOptions{soc: 17, drain: sim.DefaultDrain})
	r.w.SetMains(false)
	r.run(5*time.Minute, 5*time.Second)
	r.wantModes("battery", "low", "critical")
	r.w.SetMains(true)
	r.run(time.Minute, time.Second)
	r.a.ShutdownDone()
	r.wantModes("battery", "low", "critical", "shutdown")
	if n := count(r.rec.log, "shutdown:"); n != 1 {
		t.Fatalf("shutdown started %d times", n)
	}
}

// Scenario 5: no fuel gauge answers: the charge comes from the shunt's
// voltage on the cell curve, the estimate says so, and every state is
// still reached, early rather than late.
func TestScenarioNoFuelGauge(t *testing.T) {
	r := newRig(t, rigOptions{noGauge: true, soc: 80, drain: sim.DefaultDrain})
	r.w.SetMains(false)
	r.run(time.Minute, 5*time.Second)
	e, ok := r.a.Estimate()
	if !ok || e.Source != "shunt+voltage curve" || !strings.Contains(e.Note, "no fuel gauge") {
		t.Fatalf("estimate without a gauge: %+v %t", e, ok)
	}
	r.runUntil(ModeCritical, 3*time.Hour, 10*time.Second)
	r.wantModes("battery", "low", "critical")
	if !strings.Contains(strings.Join(r.rec.log, "\n"), "(estimated from cell voltage)") {
		t.Fatalf("the states were not reached on the voltage curve:\n%s", strings.Join(r.rec.log, "\n"))
	}
	if st := r.w.State(); st.SOC < DefaultThresholds.CriticalSoC {
		t.Fatalf("critical at %.1f%% on the voltage curve: too late", st.SOC)
	}
	t.Logf("no gauge: critical at %.1f%% by the model (%s)", r.w.State().SOC, r.rec.log[len(r.rec.log)-1])
}

// Scenario 6: the mains line sticks at "present" and then mains goes: the
// battery's discharge gives it away, the line is reported stuck, and the
// trend runs the kiosk: battery mode, then home when mains returns.
func TestScenarioStuckMainsLine(t *testing.T) {
	r := newRig(t, rigOptions{soc: 80, drain: sim.DefaultDrain})
	r.w.StickMains(true)
	r.w.SetMains(false)
	r.run(29*time.Second, time.Second)
	r.wantModes()
	r.run(10*time.Second, time.Second)
	r.wantModes("battery")
	if !strings.Contains(strings.Join(r.rec.log, "\n"), "line stuck=true: the mains-detect line has said mains is present for 30s while the battery discharges") {
		t.Fatalf("the stuck line was not reported:\n%s", strings.Join(r.rec.log, "\n"))
	}
	if _, src := r.a.Mains(); src != SourceTrend {
		t.Fatalf("mains from the %s", src)
	}
	r.w.SetMains(true) // the cell charges again
	r.run(10*time.Second, time.Second)
	r.wantModes("battery", "mains")
	r.w.StickMains(false) // repaired: the line is trusted again once it moves
	r.w.SetMains(false)
	r.tick(time.Second)
	if _, src := r.a.Mains(); src != SourceLine {
		t.Fatalf("after the line moved: mains from the %s", src)
	}
}
