package power

import (
	"strings"
	"testing"
)

func TestEstimateRuntime(t *testing.T) {
	f := ptr64
	for _, c := range []struct {
		name     string
		g        Gauges
		capAh    float64
		ok       bool
		runtimeS int64
		source   string
		note     string
	}{
		{"shunt: 10 Ah at 50% drawing 2.5 A is 2 h", Gauges{SoC: f(50), Amps: f(-2.5)}, 10, true, 7200, "shunt", "shunt's draw alone"},
		{"gauge: 60% at -30%/h is 2 h", Gauges{SoC: f(60), RatePctH: f(-30)}, 0, true, 7200, "gauge", "fuel gauge's rate alone"},
		{"both agree: the shorter", Gauges{SoC: f(50), Amps: f(-2.5), RatePctH: f(-30)}, 10, true, 6000, "gauge", ""},
		{"both disagree: the shorter, said", Gauges{SoC: f(50), Amps: f(-0.5), RatePctH: f(-50)}, 10, true, 3600, "gauge", "disagree"},
		{"no gauge: the voltage curve and the shunt", Gauges{CellVolts: f(3.75), Amps: f(-2.5)}, 10, true, 4320, "shunt+voltage curve", "cell voltage"},
		{"charging: no estimate", Gauges{SoC: f(50), Amps: f(1.2), RatePctH: f(20)}, 10, false, 0, "", ""},
		{"no capacity configured and no rate", Gauges{SoC: f(50), Amps: f(-2)}, 0, false, 0, "", ""},
		{"nothing readable", Gauges{}, 10, false, 0, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, ok := EstimateRuntime(c.g, c.capAh)
			if ok != c.ok || e.RuntimeS != c.runtimeS || e.Source != c.source || (c.note == "") != (e.Note == "") || !strings.Contains(e.Note, c.note) {
				t.Fatalf("got %+v ok=%v; want %ds from %q with a note about %q", e, ok, c.runtimeS, c.source, c.note)
			}
		})
	}
}
