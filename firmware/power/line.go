package power

import (
	"fmt"
	"time"
)

// Source says where the policy's idea of mains comes from.
type Source string

const (
	// SourceLine: the mains-detect GPIO line, trusted.
	SourceLine Source = "line"
	// SourceTrend: the battery's trend (discharging means mains is away),
	// because the line is stuck or cannot be read.
	SourceTrend Source = "battery trend"
)

// The battery trend: a discharge past these is mains away; a draw under
// the idle marks (or a charge) is mains present; in between says nothing.
// A Pi-class kiosk draws 0.5 A or more from its cell on battery, and a
// full cell on mains reads within tens of milliamps of zero.
const (
	dischargeAmps  = 0.15 // A drawn from the pack
	idleAmps       = 0.05
	dischargeRateH = 3.0 // %/h from the fuel gauge's CRATE
	idleRateH      = 0.5
	// Past these the cell is charging: only mains does that.
	chargeAmps  = 0.1
	chargeRateH = 1.0
)

// charging reports whether a reading shows the cell charging, which only
// mains can do, and how long that must hold to count: a shunt measures
// the current, so a few seconds cover its lag behind an edge; the fuel
// gauge's rate is a filtered estimate that reads positive for a while
// after a cut made while charging, or when the voltage recovers as load
// is shed, so it must hold for a minute.
func charging(r Reading) (bool, time.Duration) {
	if r.Amps != nil {
		return *r.Amps >= chargeAmps, Hold
	}
	return r.RatePctH != nil && *r.RatePctH >= chargeRateH, time.Minute
}

// chargeHeld tracks whether the readings have shown a charge long enough
// to count.
type chargeHeld struct {
	since time.Time // of the first reading in a row that showed a charge
	held  bool
}

func (c *chargeHeld) observe(r Reading) bool {
	on, hold := charging(r)
	switch {
	case !on:
		c.since, c.held = time.Time{}, false
	case c.since.IsZero():
		c.since = r.At
	}
	c.held = on && r.At.Sub(c.since) >= hold
	return c.held
}

// LineStuckAfter is how long the mains-detect line must contradict the
// battery's trend before the line is called stuck. It is long enough that
// the readings' lag behind a real edge (a second or two) never trips it.
const LineStuckAfter = 30 * time.Second

// trend reads mains from the battery: whether it is discharging, whether
// the readings say either way, and how it was known.
func trend(r Reading) (discharging, known bool, how string) {
	switch {
	case r.Amps != nil && *r.Amps <= -dischargeAmps:
		return true, true, fmt.Sprintf("the battery discharges at %.2f A", -*r.Amps)
	case r.Amps != nil && *r.Amps >= -idleAmps:
		return false, true, fmt.Sprintf("the battery is not discharging (%.2f A)", *r.Amps)
	case r.Amps != nil:
		return false, false, ""
	case r.RatePctH != nil && *r.RatePctH <= -dischargeRateH:
		return true, true, fmt.Sprintf("the fuel gauge reads %.1f %%/h", *r.RatePctH)
	case r.RatePctH != nil && *r.RatePctH >= -idleRateH:
		return false, true, fmt.Sprintf("the fuel gauge reads %+.1f %%/h", *r.RatePctH)
	}
	return false, false, ""
}

// lineCheck watches the mains-detect line against the battery's trend. A
// line that says mains is present while the battery discharges (or absent
// while it clearly charges) for LineStuckAfter is stuck: a broken opto-coupler, a
// loose wire, a pull-up with nothing driving it. From then on the trend
// stands in for the line until the line moves again, which shows it
// works. A line that cannot be read at all is also stood in for.
type lineCheck struct {
	last     *bool     // the line's last level read
	disagree time.Time // since when the line has contradicted the trend; zero if it does not
	stuck    bool
	trendOn  *bool // mains as the trend last said it
	charge   chargeHeld
}

// lineReport is a change in whether the line is trusted.
type lineReport struct {
	stuck  bool
	reason string
}

// observe returns mains as the policy should take it, where that came
// from, and a report when the line's standing changed.
func (c *lineCheck) observe(r Reading) (mains *bool, src Source, rep *lineReport) {
	line := r.Mains
	if line != nil && c.last != nil && *line != *c.last {
		c.disagree = time.Time{}
		if c.stuck {
			c.stuck = false
			rep = &lineReport{reason: "the mains-detect line moved again: trusting it"}
		}
	}
	if line != nil {
		c.last = ptr(*line)
	}
	dis, known, how := trend(r)
	if known {
		c.trendOn = ptr(!dis)
	}
	charged := c.charge.observe(r)
	switch {
	case line == nil:
		c.disagree = time.Time{} // nothing to disagree with
		return c.trendOn, SourceTrend, rep
	case c.stuck:
		return c.trendOn, SourceTrend, rep
	case known && *line && dis || !*line && charged:
		// Present while the cell discharges, or absent while it
		// charges. Only a clear charge counts against "absent": a
		// light draw on a gauge-only board can read as idle, and
		// calling a real cut a stuck line would end battery mode.
		if c.disagree.IsZero() {
			c.disagree = r.At
		}
		if r.At.Sub(c.disagree) < LineStuckAfter {
			if !*line {
				// Absent while the cell charges: only mains charges
				// it, so the kiosk stays on mains while the line is
				// judged (a board booting after a battery shutdown
				// must not go straight back to critical).
				return ptr(true), SourceTrend, rep
			}
			return line, SourceLine, rep
		}
		c.stuck = true
		level := "present"
		if !*line {
			level = "absent"
		}
		return c.trendOn, SourceTrend, &lineReport{stuck: true, reason: fmt.Sprintf(
			"the mains-detect line has said mains is %s for %s while %s: the line is stuck; using the battery trend", level, LineStuckAfter, how)}
	default:
		c.disagree = time.Time{}
		return line, SourceLine, rep
	}
}

// deadline is when the line will be called stuck if nothing changes.
func (c *lineCheck) deadline() (time.Time, bool) {
	if c.stuck || c.disagree.IsZero() {
		return time.Time{}, false
	}
	return c.disagree.Add(LineStuckAfter), true
}
