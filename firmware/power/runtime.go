package power

import (
	"fmt"
	"math"
)

// Gauges are the battery readings a runtime estimate draws on, each nil
// when its chip does not answer.
type Gauges struct {
	SoC       *float64 // % from the fuel gauge (MAX17048)
	RatePctH  *float64 // the fuel gauge's CRATE, %/h; negative while discharging
	Amps      *float64 // pack current from the shunt (INA219); negative while discharging
	CellVolts *float64 // for the voltage curve when no gauge answers
}

// Estimate is a runtime estimate and where it came from.
type Estimate struct {
	RuntimeS int64  `json:"runtime_s"`
	Source   string `json:"source"`         // "shunt", "gauge", or either with "+voltage curve"
	Note     string `json:"note,omitempty"` // a fallback or a disagreement, said plainly
}

// disagreeRatio: two estimates further apart than this are reported as
// disagreeing, and the shorter is used.
const disagreeRatio = 2.0

// EstimateRuntime estimates the time to empty while discharging, from the
// pack's capacity (Ah) and the shunt's measured draw, or from the fuel
// gauge's CRATE. With both, the shorter wins and a wide disagreement is
// said; with no state of charge, the cell-voltage curve stands in. ok is
// false while charging or idle, or with nothing to estimate from.
func EstimateRuntime(g Gauges, capacityAh float64) (e Estimate, ok bool) {
	soc, curve := 0.0, false
	switch {
	case g.SoC != nil:
		soc = *g.SoC
	case g.CellVolts != nil:
		soc, curve = SoCFromCellVolts(*g.CellVolts), true
	default:
		return Estimate{}, false
	}
	var fromShunt, fromGauge float64 // hours; 0 when not known
	if g.Amps != nil && *g.Amps < 0 && capacityAh > 0 {
		fromShunt = capacityAh * soc / 100 / -*g.Amps
	}
	if g.RatePctH != nil && *g.RatePctH < 0 && !curve {
		fromGauge = soc / -*g.RatePctH
	}
	hours := 0.0
	switch {
	case fromShunt > 0 && fromGauge > 0:
		hours, e.Source = math.Min(fromShunt, fromGauge), "shunt"
		if fromGauge < fromShunt {
			e.Source = "gauge"
		}
		if math.Max(fromShunt, fromGauge) > disagreeRatio*hours {
			e.Note = fmt.Sprintf("the gauges disagree: %.1f h from the shunt's draw, %.1f h from the fuel gauge's rate; using the shorter", fromShunt, fromGauge)
		}
	case fromShunt > 0:
		hours, e.Source = fromShunt, "shunt"
		if g.SoC != nil && g.RatePctH == nil {
			e.Note = "no rate from the fuel gauge: from the shunt's draw alone"
		}
	case fromGauge > 0:
		hours, e.Source = fromGauge, "gauge"
		if g.Amps == nil {
			e.Note = "no shunt: from the fuel gauge's rate alone"
		}
	default:
		return Estimate{}, false
	}
	if curve {
		e.Source += "+voltage curve"
		e.Note = "no fuel gauge: charge estimated from the cell voltage"
	}
	e.RuntimeS = int64(hours * 3600)
	return e, true
}
