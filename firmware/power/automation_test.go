package power

import (
	"testing"
	"time"
)

// drainEdges steps a through every mains edge the sensors queued.
func drainEdges(a *Automation) {
	for {
		select {
		case e := <-a.s.Edges():
			a.step(e.At, &e.Present)
		default:
			return
		}
	}
}

// TestAutomationSeesEveryEdge: mains drops shorter than a second, between
// the periodic readings, reach the policy through the edges; a hundred of
// them change no mode, and a real cut does after the debounce.
func TestAutomationSeesEveryEdge(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	s := NewSensors(Options{Clock: clock})
	rec := &recorder{}
	a, err := NewAutomation(s, AutomationOptions{Thresholds: DefaultThresholds, Actions: rec, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	s.setMains(true)
	for range 100 {
		now = now.Add(500 * time.Millisecond)
		s.setMains(false)
		now = now.Add(500 * time.Millisecond)
		s.setMains(true)
		drainEdges(a)
		a.step(now, nil)
	}
	if a.Mode() != ModeMains || count(rec.log, "mains_lost") != 100 || count(rec.log, "enter") != 0 {
		t.Fatalf("after 100 blips: mode %s, %d lost, %d enters", a.Mode(), count(rec.log, "mains_lost"), count(rec.log, "enter"))
	}
	s.setMains(false)
	drainEdges(a)
	for range 6 {
		now = now.Add(time.Second)
		a.step(now, nil)
	}
	if a.Mode() != ModeBattery {
		t.Fatalf("6 s after the cut: mode %s; %v", a.Mode(), rec.log[len(rec.log)-3:])
	}
	if _, ok := a.Estimate(); ok {
		t.Fatal("a runtime estimate with no battery readings")
	}
}
