package power

import (
	"strings"
	"testing"
	"time"
)

// at is a reading s seconds after t0 with the line ("on", "off", "" for
// unreadable) and the shunt's current.
func at(s float64, line string, amps float64) Reading {
	r := step{s: s, mains: line, soc: 70}.reading()
	r.Amps = ptr64(amps)
	return r
}

func TestMainsLine(t *testing.T) {
	for _, c := range []struct {
		name  string
		steps []Reading
		mode  Mode
		src   Source
		want  []string
	}{
		{
			name: "stuck present: the discharge gives it away, battery mode from the trend",
			steps: []Reading{at(0, "on", 0), at(1, "on", -0.9), at(30.9, "on", -0.9), at(31, "on", -0.9),
				at(35.9, "on", -0.9), at(36, "on", -0.9)},
			mode: ModeBattery, src: SourceTrend,
			want: []string{"line stuck=true: the mains-detect line has said mains is present for 30s while the battery discharges at 0.90 A",
				"mains_lost 20:00:31.0 (battery trend)", "enter battery", "sync ledger"},
		},
		{
			name: "stuck present, then mains back: the trend brings the kiosk home",
			steps: []Reading{at(0, "on", 0), at(1, "on", -0.9), at(31, "on", -0.9), at(36, "on", -0.9),
				at(100, "on", 0.6), at(104.9, "on", 0.6), at(105, "on", 0.6)},
			mode: ModeMains, src: SourceTrend,
			want: []string{"line stuck=true", "mains_lost", "enter battery", "mains_restored 20:01:40.0 (battery trend)", "enter mains: mains back"},
		},
		{
			name:  "stuck absent while charging: mains at once, no battery mode and no shutdown loop on a flat pack",
			steps: []Reading{at(0, "off", 0.6), at(5, "off", 0.6), at(29, "off", 0.6), at(30, "off", 0.6), at(35, "off", 0.6)},
			mode:  ModeMains, src: SourceTrend,
			want: []string{"line stuck=true: the mains-detect line has said mains is absent"},
		},
		{
			name:  "a real cut after a long charge: the shunt's last charging reading holds battery mode back until it catches up",
			steps: []Reading{at(0, "on", 0.6), at(10, "on", 0.6), at(11, "off", 0.6), at(12, "off", -0.9), at(16.9, "off", -0.9), at(17, "off", -0.9)},
			mode:  ModeBattery, src: SourceLine,
			want: []string{"mains_lost 20:00:12.0 (line)", "enter battery"},
		},
		{
			name:  "the line moves again: trusted again",
			steps: []Reading{at(0, "on", 0), at(1, "on", -0.9), at(31, "on", -0.9), at(40, "off", -0.9), at(41, "on", 0.2)},
			mode:  ModeBattery, src: SourceLine,
			want: []string{"line stuck=true", "mains_lost", "line stuck=false: the mains-detect line moved again", "enter battery", "mains_restored 20:00:41.0 (line)"},
		},
		{
			name:  "a real cut: the readings lag the edge by a second or two, never called stuck",
			steps: []Reading{at(0, "on", 0), at(1, "off", 0), at(2, "off", 0), at(3, "off", -0.9), at(40, "off", -0.9)},
			mode:  ModeBattery, src: SourceLine,
			want: []string{"mains_lost 20:00:01.0 (line)", "enter battery"},
		},
		{
			name:  "an unreadable line: the trend stands in",
			steps: []Reading{at(0, "on", 0), at(1, "", 0), at(2, "", -0.9), at(7, "", -0.9)},
			mode:  ModeBattery, src: SourceTrend,
			want: []string{"mains_lost 20:00:02.0 (battery trend)", "enter battery"},
		},
		{
			name:  "a draw between the marks says nothing: the last trend holds",
			steps: []Reading{at(0, "", 0), at(1, "", -0.1), at(60, "", -0.1)},
			mode:  ModeMains, src: SourceTrend,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			p, _ := NewPolicy(DefaultThresholds, rec)
			for _, r := range c.steps {
				p.Step(r)
			}
			if p.Mode() != c.mode || p.Source() != c.src {
				t.Errorf("mode %s from the %s, want %s from the %s", p.Mode(), p.Source(), c.mode, c.src)
			}
			if !inOrder(rec.log, c.want) || len(c.want) == 0 && len(rec.log) > 0 {
				t.Errorf("actions:\n  %s\nwant, in order:\n  %s", strings.Join(rec.log, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

// TestBootAfterABatteryShutdown: a flat pack charging on mains, with a
// line stuck at absent, must not go straight back to critical at every
// boot: charging is mains.
func TestBootAfterABatteryShutdown(t *testing.T) {
	rec := &recorder{}
	p, _ := NewPolicy(DefaultThresholds, rec)
	for s := 0.0; s <= 60; s++ {
		r := step{s: s, mains: "off", soc: 9}.reading()
		r.Amps = ptr64(1.2)
		p.Step(r)
	}
	if p.Mode() != ModeMains || count(rec.log, "shutdown:") != 0 || count(rec.log, "enter") != 0 {
		t.Fatalf("mode %s:\n%s", p.Mode(), strings.Join(rec.log, "\n"))
	}
}

// TestNoDeadlineWithoutALine: a line that disagreed with the trend and
// then could not be read leaves no stuck-line deadline behind (one left
// in the past made the automation step without pause).
func TestNoDeadlineWithoutALine(t *testing.T) {
	p, _ := NewPolicy(DefaultThresholds, &recorder{})
	p.Step(at(0, "on", 0))
	p.Step(at(1, "on", -0.9)) // disagreeing: a stuck-line deadline at 31 s
	if d, ok := p.Deadline(); !ok || !d.Equal(t0.Add(31*time.Second)) {
		t.Fatalf("deadline %s %t", d, ok)
	}
	p.Step(at(2, "", 0)) // the line unreadable, the trend idle
	if d, ok := p.Deadline(); ok {
		t.Fatalf("a deadline at %s with no line to judge", d)
	}
}

func TestTrendFromTheGauge(t *testing.T) {
	r := step{s: 0, mains: "on", soc: 70}.reading()
	r.RatePctH = ptr64(-30)
	if dis, known, how := trend(r); !dis || !known || !strings.Contains(how, "-30.0 %/h") {
		t.Fatalf("CRATE -30 %%/h: discharging %t, known %t, %q", dis, known, how)
	}
	r.RatePctH = ptr64(-1) // between the marks
	if _, known, _ := trend(r); known {
		t.Fatal("CRATE -1 %/h read as a trend")
	}
	r.Amps = ptr64(0) // the shunt, when there is one, decides
	if dis, known, _ := trend(r); dis || !known {
		t.Fatal("0 A read as discharging")
	}
}

func TestDeadline(t *testing.T) {
	th := DefaultThresholds
	th.MaxOnBattery = time.Hour
	p, _ := NewPolicy(th, &recorder{})
	if _, ok := p.Deadline(); ok {
		t.Fatal("a deadline on mains with nothing pending")
	}
	p.Step(at(0, "on", 0))
	p.Step(at(1, "off", 0))
	if d, ok := p.Deadline(); !ok || !d.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("deadline %s %t after a cut: want the debounce's end", d, ok)
	}
	p.Step(at(6, "off", -0.9))
	if d, _ := p.Deadline(); !d.Equal(t0.Add(time.Second + time.Hour)) {
		t.Fatalf("deadline %s on battery: want the most time on battery", d)
	}
	p.Step(at(10, "on", -0.9)) // back, the readings lagging
	if d, _ := p.Deadline(); !d.Equal(t0.Add(15 * time.Second)) {
		t.Fatalf("deadline %s with mains back: want the debounce's end", d)
	}
	p.Step(at(11, "on", -0.9))
	p.Step(at(12, "on", -0.9)) // back but the cell still discharging: the line check also counts
	if d, _ := p.Deadline(); !d.Equal(t0.Add(15 * time.Second)) {
		t.Fatalf("deadline %s: want the debounce's end, before the line could be called stuck", d)
	}
}

// TestLightDrawOnAGaugeOnlyBoard: no shunt, a big pack and a light draw,
// so the gauge's rate reads as idle: a real cut must not be called a
// stuck line (that would end battery mode, and its shutdown, on battery).
func TestLightDrawOnAGaugeOnlyBoard(t *testing.T) {
	rec := &recorder{}
	p, _ := NewPolicy(DefaultThresholds, rec)
	for s := 0.0; s <= 120; s++ {
		r := step{s: s, mains: "off", soc: 60}.reading()
		r.RatePctH = ptr64(-0.3)
		p.Step(r)
	}
	if p.Mode() != ModeBattery || p.Source() != SourceLine || count(rec.log, "line stuck") != 0 {
		t.Fatalf("mode %s from the %s\n%s", p.Mode(), p.Source(), strings.Join(rec.log, "\n"))
	}
}

// TestChargeGlitchesDoNotHoldOffACut: a reading that shows a charge now
// and then during a real cut (noise, a gauge's filtered rate) neither
// brings mains back nor stops a dying battery from latching.
func TestChargeGlitchesDoNotHoldOffACut(t *testing.T) {
	rec := &recorder{}
	p, _ := NewPolicy(DefaultThresholds, rec)
	for s := 0.0; s <= 30; s++ {
		amps := -0.9
		if int(s)%4 == 3 {
			amps = 0.3
		}
		r := step{s: s, mains: "off", soc: 5}.reading()
		r.Amps = ptr64(amps)
		p.Step(r)
	}
	if p.Mode() != ModeCritical || count(rec.log, "mains_restored") != 0 {
		t.Fatalf("mode %s\n%s", p.Mode(), strings.Join(rec.log, "\n"))
	}
}
