package power

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is Actions writing down what it was asked, one line each.
type recorder struct{ log []string }

func (r *recorder) MainsLost(at time.Time, src Source) {
	r.add("mains_lost %s (%s)", at.Format("15:04:05.0"), src)
}
func (r *recorder) MainsRestored(at time.Time, src Source) {
	r.add("mains_restored %s (%s)", at.Format("15:04:05.0"), src)
}
func (r *recorder) MainsLine(stuck bool, why string) { r.add("line stuck=%t: %s", stuck, why) }
func (r *recorder) Enter(m Mode, why string)         { r.add("enter %s: %s", m, why) }
func (r *recorder) ShedLoad()                        { r.add("shed load") }
func (r *recorder) RestoreLoad()                     { r.add("restore load") }
func (r *recorder) SyncLedger()                      { r.add("sync ledger") }
func (r *recorder) Shutdown(why string)              { r.add("shutdown: %s", why) }
func (r *recorder) add(f string, a ...any)           { r.log = append(r.log, fmt.Sprintf(f, a...)) }

var t0 = time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)

func ptr64(v float64) *float64 { return &v }

// step is one reading, s seconds after t0; mains "on", "off" or "" (unread).
type step struct {
	s         float64
	mains     string
	soc, volt float64 // 0: unread
	runtime   int64   // seconds; 0: unread
}

func (st step) reading() Reading {
	r := Reading{At: t0.Add(time.Duration(st.s * float64(time.Second)))}
	if st.mains != "" {
		on := st.mains == "on"
		r.Mains = &on
	}
	if st.soc != 0 {
		r.SoC = ptr64(st.soc)
	}
	if st.volt != 0 {
		r.CellVolts = ptr64(st.volt)
	}
	if st.runtime != 0 {
		r.RuntimeS = &st.runtime
	}
	return r
}

func TestPolicyTransitions(t *testing.T) {
	th := DefaultThresholds
	for _, c := range []struct {
		name  string
		th    func(*Thresholds)
		steps []step
		mode  Mode
		want  []string // actions, in order, as substrings
	}{
		{
			name:  "a blip shorter than the debounce: the edges and nothing else",
			steps: []step{{0, "on", 80, 0, 0}, {1, "off", 80, 0, 0}, {1.5, "on", 80, 0, 0}, {20, "on", 80, 0, 0}},
			mode:  ModeMains,
			want:  []string{"mains_lost 20:00:01.0", "mains_restored 20:00:01.5"},
		},
		{
			name:  "mains away past the debounce: battery mode from the edge",
			steps: []step{{0, "on", 80, 0, 0}, {1, "off", 80, 0, 0}, {5.9, "off", 80, 0, 0}, {6, "off", 80, 0, 0}},
			mode:  ModeBattery,
			want:  []string{"mains_lost", "enter battery: mains lost for 5s"},
		},
		{
			name: "a slow discharge visits every state in order, and the latch holds",
			steps: []step{{0, "on", 80, 0, 0}, {1, "off", 80, 0, 0}, {7, "off", 50, 0, 0}, {100, "off", 30, 0, 0},
				{105, "off", 30, 0, 0}, {200, "off", 20, 0, 0}, {300, "off", 15, 0, 0}, {304.9, "off", 15, 0, 0}, {305, "off", 15, 0, 0},
				{306, "on", 15, 0, 0}, {400, "on", 40, 0, 0}},
			mode: ModeCritical,
			want: []string{"mains_lost", "enter battery", "enter low: state of charge 30% at or under 30% (fuel gauge)",
				"shed load", "sync ledger", "enter critical: state of charge 15%", "shutdown: state of charge 15%",
				"mains_restored"},
		},
		{
			name:  "debounce over with the charge already low: battery, and low once it holds",
			steps: []step{{0, "off", 25, 0, 0}, {5, "off", 25, 0, 0}, {9.9, "off", 25, 0, 0}, {10, "off", 25, 0, 0}},
			mode:  ModeLow,
			want:  []string{"mains_lost", "enter battery", "enter low", "shed load", "sync ledger"},
		},
		{
			name: "restore during low: back to mains after the debounce, load restored",
			steps: []step{{0, "off", 25, 0, 0}, {5, "off", 25, 0, 0}, {10, "off", 25, 0, 0}, {11, "on", 25, 0, 0},
				{13, "off", 25, 0, 0}, {14, "on", 25, 0, 0}, {18.9, "on", 25, 0, 0}, {19, "on", 25, 0, 0}},
			mode: ModeMains,
			want: []string{"mains_lost", "enter battery", "enter low", "shed load", "sync ledger",
				"mains_restored", "mains_lost", "mains_restored", "enter mains: mains back for 5s", "restore load"},
		},
		{
			name:  "low ends only past the hysteresis",
			steps: []step{{0, "off", 29, 0, 0}, {5, "off", 29, 0, 0}, {10, "off", 29, 0, 0}, {60, "off", 32, 0, 0}, {120, "off", 35, 0, 0}},
			mode:  ModeBattery,
			want:  []string{"enter battery", "enter low", "shed load", "sync ledger", "enter battery: state of charge back to 35%", "restore load"},
		},
		{
			name:  "no fuel gauge: the cell voltage curve stands in",
			steps: []step{{0, "off", 0, 3.9, 0}, {5, "off", 0, 3.9, 0}, {100, "off", 0, 3.76, 0}, {200, "off", 0, 3.745, 0}, {205, "off", 0, 3.745, 0}},
			mode:  ModeLow,
			want:  []string{"enter battery", "enter low: state of charge 29% at or under 30% (estimated from cell voltage)"},
		},
		{
			name: "cell voltage under load latches the shutdown once it stays under the line",
			steps: []step{{0, "off", 60, 0, 0}, {5, "off", 60, 3.7, 0}, {50, "off", 55, 3.48, 0}, {54.9, "off", 55, 3.47, 0},
				{55, "off", 55, 3.47, 0}},
			mode: ModeCritical,
			want: []string{"enter battery", "enter critical: cell voltage 3.47 V at or under 3.50 V", "shutdown: cell voltage"},
		},
		{
			name: "no fuel gauge: a dip while the printer's motor starts sheds nothing and latches nothing",
			steps: []step{{0, "off", 0, 3.9, 0}, {5, "off", 0, 3.9, 0}, {50, "off", 0, 3.55, 0}, {52, "off", 0, 3.55, 0},
				{53, "off", 0, 3.85, 0}, {60, "off", 0, 3.85, 0}},
			mode: ModeBattery,
			want: []string{"enter battery"},
		},
		{
			name: "a dip of the cell voltage while the printer's motor starts is no reason",
			steps: []step{{0, "off", 60, 0, 0}, {5, "off", 60, 3.7, 0}, {50, "off", 55, 3.45, 0}, {52, "off", 55, 3.45, 0},
				{53, "off", 55, 3.68, 0}, {56, "off", 55, 3.45, 0}, {60, "off", 55, 3.45, 0}},
			mode: ModeBattery,
			want: []string{"enter battery"},
		},
		{
			name:  "estimated runtime latches the shutdown",
			steps: []step{{0, "off", 60, 0, 0}, {5, "off", 60, 0, 3600}, {50, "off", 55, 0, 240}, {55, "off", 55, 0, 230}},
			mode:  ModeCritical,
			want:  []string{"enter battery", "enter critical: estimated runtime 3m50s at or under 5m0s"},
		},
		{
			name:  "time on battery, when configured",
			th:    func(t *Thresholds) { t.MaxOnBattery = time.Hour },
			steps: []step{{0, "off", 90, 0, 0}, {5, "off", 90, 0, 0}, {3599, "off", 88, 0, 0}, {3600, "off", 88, 0, 0}},
			mode:  ModeCritical,
			want:  []string{"enter battery", "enter critical: on battery for 1h0m0s"},
		},
		{
			name:  "an unreadable mains line changes nothing by itself",
			steps: []step{{0, "on", 80, 0, 0}, {1, "", 80, 0, 0}, {60, "", 80, 0, 0}},
			mode:  ModeMains,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			th := th
			if c.th != nil {
				c.th(&th)
			}
			rec := &recorder{}
			p, err := NewPolicy(th, rec)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.steps {
				p.Step(s.reading())
			}
			if p.Mode() != c.mode {
				t.Errorf("mode %s, want %s", p.Mode(), c.mode)
			}
			if !inOrder(rec.log, c.want) || len(c.want) == 0 && len(rec.log) > 0 {
				t.Errorf("actions:\n  %s\nwant, in order:\n  %s", strings.Join(rec.log, "\n  "), strings.Join(c.want, "\n  "))
			}
			if n := count(rec.log, "shutdown:"); n > 1 {
				t.Errorf("shutdown started %d times", n)
			}
		})
	}
}

// inOrder reports whether every want is a substring of a line of got, in
// order; every mode entered must be in want.
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && strings.Contains(g, want[i]) {
			i++
		}
	}
	return i == len(want) && count(got, "enter") == count(want, "enter")
}

func count(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// TestFlicker: a hundred half-second drops change nothing but the edge
// events, one pair each.
func TestFlicker(t *testing.T) {
	rec := &recorder{}
	p, _ := NewPolicy(DefaultThresholds, rec)
	for i := range 100 {
		at := float64(i)
		p.Step(step{at, "off", 70, 0, 0}.reading())
		p.Step(step{at + 0.5, "on", 70, 0, 0}.reading())
	}
	if p.Mode() != ModeMains || count(rec.log, "mains_lost") != 100 || count(rec.log, "mains_restored") != 100 || count(rec.log, "enter") != 0 {
		t.Fatalf("after 100 blips: mode %s, actions %d: %v…", p.Mode(), len(rec.log), rec.log[:min(6, len(rec.log))])
	}
}

func TestShutdownDoneAndLatch(t *testing.T) {
	rec := &recorder{}
	p, _ := NewPolicy(DefaultThresholds, rec)
	p.Step(step{0, "off", 10, 0, 0}.reading())
	p.Step(step{5, "off", 10, 0, 0}.reading())
	if p.Mode() != ModeBattery {
		t.Fatalf("critical before the hold: mode %s", p.Mode())
	}
	p.Step(step{10, "off", 10, 0, 0}.reading())
	if p.Mode() != ModeCritical {
		t.Fatalf("mode %s", p.Mode())
	}
	p.Step(step{6, "on", 90, 0, 0}.reading())
	p.Step(step{60, "on", 90, 0, 0}.reading())
	p.ShutdownDone()
	if p.Mode() != ModeShutdown || count(rec.log, "shutdown:") != 1 {
		t.Fatalf("mode %s, %v", p.Mode(), rec.log)
	}
}

func TestSoCFromCellVolts(t *testing.T) {
	for _, c := range []struct{ v, want float64 }{{2.8, 0}, {3.0, 0}, {3.55, 8.33}, {3.75, 30}, {4.2, 100}, {4.3, 100}} {
		if got := SoCFromCellVolts(c.v); got < c.want-0.01 || got > c.want+0.01 {
			t.Errorf("%.2f V: %.2f%%, want %.2f%%", c.v, got, c.want)
		}
	}
	prev := -1.0
	for v := 2.9; v <= 4.3; v += 0.01 {
		if s := SoCFromCellVolts(v); s < prev {
			t.Fatalf("not monotonic at %.2f V", v)
		} else {
			prev = s
		}
	}
}

func TestThresholdsCheck(t *testing.T) {
	for _, bad := range []func(*Thresholds){
		func(t *Thresholds) { t.LowSoC = 10 },
		func(t *Thresholds) { t.CriticalSoC = 0 },
		func(t *Thresholds) { t.CriticalCellVolts = 5 },
		func(t *Thresholds) { t.Debounce = -time.Second },
		func(t *Thresholds) { t.RestoreHysteresisSoC = 80 },
	} {
		th := DefaultThresholds
		bad(&th)
		if _, err := NewPolicy(th, &recorder{}); err == nil {
			t.Errorf("accepted %+v", th)
		}
	}
}

// TestRestAfterABatteryShutdown: the boot after a battery shutdown waits
// for mains, whatever the charge does, and starts no second shutdown;
// mains back for the debounce, or a charged pack, ends the wait.
func TestRestAfterABatteryShutdown(t *testing.T) {
	rec := &recorder{}
	p, _ := NewPolicy(DefaultThresholds, rec)
	p.Rest("waiting for mains")
	for s := 0.0; s < 120; s += 5 {
		p.Step(step{s, "off", 12, 3.45, 60}.reading())
	}
	if p.Mode() != ModeCritical || count(rec.log, "shutdown:") != 0 {
		t.Fatalf("resting on a flat pack: mode %s\n%s", p.Mode(), strings.Join(rec.log, "\n"))
	}
	p.Step(step{120, "on", 12, 0, 0}.reading())
	if d, ok := p.Deadline(); !ok || !d.Equal(t0.Add(125*time.Second)) {
		t.Fatalf("deadline %s %t: want the debounce's end", d, ok)
	}
	p.Step(step{125, "on", 12, 0, 0}.reading())
	if p.Mode() != ModeMains || !inOrder(rec.log, []string{"enter critical: waiting for mains", "mains_restored", "enter mains: mains back for 5s"}) {
		t.Fatalf("mode %s\n%s", p.Mode(), strings.Join(rec.log, "\n"))
	}

	// A charge read at rest is no reason to trade: the latch may have
	// been the voltage or the runtime, which the next load crosses again.
	rec = &recorder{}
	p, _ = NewPolicy(DefaultThresholds, rec)
	p.Rest("waiting for mains")
	for s := 0.0; s < 300; s += 5 {
		p.Step(step{s, "off", 80, 0, 0}.reading())
	}
	if p.Mode() != ModeCritical {
		t.Fatalf("a charge at rest ended the wait: mode %s\n%s", p.Mode(), strings.Join(rec.log, "\n"))
	}
	// Nothing readable at all: after a minute, trade as without readings.
	rec = &recorder{}
	p, _ = NewPolicy(DefaultThresholds, rec)
	p.Rest("waiting for mains")
	for s := 0.0; s <= 60; s += 5 {
		p.Step(step{s, "", 0, 0, 0}.reading())
	}
	if p.Mode() != ModeMains || count(rec.log, "enter mains: no mains line and no battery readings for 1m0s") != 1 {
		t.Fatalf("blind: mode %s\n%s", p.Mode(), strings.Join(rec.log, "\n"))
	}
}
