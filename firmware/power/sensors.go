// Package power knows the kiosk's power: whether mains is present, and the
// battery's voltage, current, state of charge and the runtime left. The
// readings come from the chips through their drivers: the mains-detect
// line, the INA219/INA226 shunt on the battery rail and the MAX17048 fuel
// gauge. Each chip is a supervised device, so a missing gauge or a shunt
// that browned out costs only its own readings.
package power

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/drivers/ina219"
	"github.com/microretail/kioskd/drivers/mains"
	"github.com/microretail/kioskd/drivers/max17048"
	"github.com/microretail/kioskd/firmware/devices"
	"github.com/microretail/kioskd/firmware/events"
)

// Battery is what the battery monitors read. A nil field is a reading no
// working chip provides.
type Battery struct {
	Volts     *float64 `json:"volts,omitempty"`        // pack voltage: the shunt's bus voltage, else the gauge's cell voltage
	Amps      *float64 `json:"amps,omitempty"`         // pack current from the shunt; negative while discharging
	SOC       *float64 `json:"soc,omitempty"`          // state of charge in percent, from the gauge
	CellVolts *float64 `json:"cell_volts,omitempty"`   // the gauge's VCELL
	RatePctH  *float64 `json:"rate_pct_h,omitempty"`   // the gauge's CRATE; negative while discharging
	RuntimeS  *int64   `json:"runtime_s,omitempty"`    // time to empty at the present rate, while discharging
	Sources   []string `json:"sources,omitempty"`      // the chips these readings came from
	Alert     bool     `json:"alert,omitempty"`        // the gauge's low-charge alert is raised
	Status    string   `json:"gauge_status,omitempty"` // the gauge's STATUS flags
}

// Status is the power as /api/state and telemetry show it.
type Status struct {
	Mains *bool `json:"mains"` // nil: the mains-detect line is not readable
	// Mode is "mains" or "battery" from the mains-detect line, or
	// "unknown". The debounced battery-mode policy with its low and
	// critical states refines it.
	Mode string `json:"mode"`
	// MainsSource is where the automation takes mains from: the "line",
	// or the "battery trend" while the line is stuck or unreadable; then
	// Mains is the trend's answer.
	MainsSource Source  `json:"mains_source,omitempty"`
	Battery     Battery `json:"battery"`
	// Estimate is the runtime estimate with its source and any fallback,
	// once the battery-mode automation makes one.
	Estimate *Estimate `json:"estimate,omitempty"`
	// BackgroundHeld says why work that can wait (OTA downloads) is held,
	// while the automation sheds load.
	BackgroundHeld string `json:"background_held,omitempty"`
}

// Options configures Sensors.
type Options struct {
	Logger zerolog.Logger
	Events *events.Hub // may be nil
	Clock  func() time.Time
	// Cells is how many Li-ion cells the pack has in series (default 1):
	// without a fuel gauge, the shunt's bus voltage over it is the cell
	// voltage the charge is estimated from.
	Cells int
}

// Sensors holds the latest power readings. It is safe for concurrent use.
type Sensors struct {
	log   zerolog.Logger
	ev    *events.Hub
	clock func() time.Time
	cells int

	mu    sync.Mutex
	mains *bool
	shunt *ina219.Reading
	gauge *max17048.Reading
	edges chan Edge // mains changes, for the power policy
}

// Edge is a change of the mains-detect line, when it was seen.
type Edge struct {
	At      time.Time
	Present bool
}

// Edges delivers every change of the mains-detect line as it is seen, so
// the policy sees blips shorter than any sampling period. It holds 64;
// past that, changes are dropped here (never the events), and the
// policy's next periodic reading catches up.
func (s *Sensors) Edges() <-chan Edge { return s.edges }

// NewSensors returns sensors with no readings yet.
func NewSensors(opts Options) *Sensors {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Cells < 1 {
		opts.Cells = 1
	}
	return &Sensors{log: opts.Logger.With().Str("component", "power").Logger(), ev: opts.Events, clock: opts.Clock,
		cells: opts.Cells, edges: make(chan Edge, 64)}
}

func ptr[T any](v T) *T { return &v }

// round3 keeps readings readable: millivolts and milliamps.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// Status returns the readings now.
func (s *Sensors) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Mode: "unknown"}
	if s.mains != nil {
		st.Mains = ptr(*s.mains)
		st.Mode = "battery"
		if *s.mains {
			st.Mode = "mains"
		}
	}
	b := &st.Battery
	if g := s.gauge; g != nil {
		b.Sources = append(b.Sources, "max17048")
		b.CellVolts = ptr(round3(float64(g.Cell) / 1e9))
		b.Volts = b.CellVolts
		b.SOC = ptr(math.Round(g.SOC.Percent()*10) / 10)
		rate := g.Rate.PercentPerHour()
		b.RatePctH = ptr(math.Round(rate*10) / 10)
		if rate < 0 {
			b.RuntimeS = ptr(int64(g.SOC.Percent() / -rate * 3600))
		}
		b.Alert = g.Alert
		b.Status = g.Status.String()
	}
	if r := s.shunt; r != nil {
		b.Sources = append(b.Sources, "ina219")
		b.Volts = ptr(round3(float64(r.Bus) / 1e9))
		b.Amps = ptr(round3(float64(r.Current) / 1e9))
		if b.CellVolts == nil {
			// No gauge: the pack voltage per cell, under load, is what
			// the charge is estimated from.
			b.CellVolts = ptr(round3(*b.Volts / float64(s.cells)))
		}
	}
	return st
}

// ShuntDevice supervises the battery-rail shunt monitor. open finds it.
func (s *Sensors) ShuntDevice(open func(context.Context) (*ina219.Dev, error)) *devices.Chip[*ina219.Dev] {
	return sensing(&s.mu, &s.shunt, open, (*ina219.Dev).Sense)
}

// GaugeDevice supervises the fuel gauge. open finds it.
func (s *Sensors) GaugeDevice(open func(context.Context) (*max17048.Dev, error)) *devices.Chip[*max17048.Dev] {
	return sensing(&s.mu, &s.gauge, open, (*max17048.Dev).Sense)
}

// sensing is a chip whose every step is one reading, kept in *slot under
// mu until the chip closes.
func sensing[D interface{ Halt() error }, R any](mu *sync.Mutex, slot **R, open func(context.Context) (D, error), sense func(D) (R, error)) *devices.Chip[D] {
	return &devices.Chip[D]{
		OpenFunc: open,
		StepFunc: func(_ context.Context, d D) error {
			r, err := sense(d)
			if err != nil {
				return err
			}
			mu.Lock()
			*slot = &r
			mu.Unlock()
			return nil
		},
		Forget: func() { mu.Lock(); *slot = nil; mu.Unlock() },
	}
}

// MainsDevice supervises the mains-detect line. open finds it. A change is
// published at once, as mains_lost or mains_restored; debouncing a power
// cut into battery mode is the power policy's job, not the sensor's.
func (s *Sensors) MainsDevice(open func(context.Context) (*mains.Dev, error)) *devices.Chip[*mains.Dev] {
	return &devices.Chip[*mains.Dev]{
		OpenFunc: func(ctx context.Context) (*mains.Dev, error) {
			d, err := open(ctx)
			if err != nil {
				return nil, err
			}
			s.setMains(d.Present())
			return d, nil
		},
		StepFunc: func(ctx context.Context, d *mains.Dev) error {
			// Wait blocks until the line changes, however long that is.
			present, err := d.Wait(ctx)
			if err != nil {
				return err
			}
			s.setMains(present)
			return nil
		},
		Forget: func() { s.mu.Lock(); s.mains = nil; s.mu.Unlock() },
	}
}

func (s *Sensors) setMains(present bool) {
	s.mu.Lock()
	prev := s.mains
	s.mains = ptr(present)
	s.mu.Unlock()
	if prev != nil && *prev == present {
		return
	}
	select {
	case s.edges <- Edge{At: s.clock(), Present: present}:
	default:
	}
	if prev == nil && present {
		return // booting on mains is not news
	}
	typ := events.MainsLost
	if present {
		typ = events.MainsRestored
	}
	s.log.Warn().Bool("mains", present).Msg(typ)
	if s.ev != nil {
		s.ev.Publish(typ, map[string]any{"mains": present})
	}
}
