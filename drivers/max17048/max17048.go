package max17048

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Addr is the gauge's only I²C address.
const Addr = 0x36

// Opts configures the gauge.
type Opts struct {
	Cells          int  // 1 for the MAX17048, 2 (in series) for the MAX17049
	AlertThreshold int  // state of charge, 1 to 32 %, below which the empty alert fires
	QuickStart     bool // restart the SOC estimate in New; only with a relaxed battery
}

// DefaultOpts is a single cell with the empty alert at 10 %.
var DefaultOpts = Opts{Cells: 1, AlertThreshold: 10}

// Errors New, Sense and ClearAlert return.
var (
	ErrNoBattery = errors.New("max17048: no answer at 0x36: no battery fitted, or the gauge is unpowered")
	ErrIdentity  = errors.New("max17048: VERSION is not 0x001X: not a MAX17048/MAX17049")
	ErrGarbled   = errors.New("max17048: registers read back inconsistent: corrupted on the bus")
)

// SOC is a state of charge in 1/256 %, as the SOC register holds it.
type SOC uint16

// Percent is the state of charge in percent.
func (s SOC) Percent() float64 { return float64(s) / 256 }

func (s SOC) String() string { return fmt.Sprintf("%.2f%%", s.Percent()) }

// Rate is a charge (positive) or discharge rate in 0.208 %/h, as the CRATE
// register holds it.
type Rate int16

// PercentPerHour is the rate in percent of full charge per hour.
func (r Rate) PercentPerHour() float64 { return float64(r) * crateMilli / 1000 }

func (r Rate) String() string { return fmt.Sprintf("%+.2f%%/h", r.PercentPerHour()) }

// Status holds the STATUS alert flags.
type Status uint8

// STATUS flags.
const (
	RI Status = 1 << iota // reset indicator: the chip was reset since configured
	VH                    // cell voltage above the alert window
	VL                    // cell voltage below the alert window
	VR                    // cell voltage fell below the reset threshold
	HD                    // state of charge fell below the alert threshold
	SC                    // state of charge changed by 1 %
)

func (s Status) String() string {
	if s == 0 {
		return "none"
	}
	var names []string
	for i, n := range [...]string{"RI", "VH", "VL", "VR", "HD", "SC"} {
		if s&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if rest := s &^ 0x3F; rest != 0 {
		names = append(names, fmt.Sprintf("0x%02x", uint8(rest)))
	}
	return strings.Join(names, "|")
}

// Reading is one look at the gauge. Cell is the battery's voltage: the one
// cell's, or both cells' in series on the MAX17049. Alert is CONFIG.ALRT:
// an alert fired and was not cleared yet.
type Reading struct {
	Cell   physic.ElectricPotential
	SOC    SOC
	Rate   Rate
	Status Status
	Alert  bool
}

// Dev is a MAX17048 or MAX17049. It is safe for concurrent use.
type Dev struct {
	c      i2c.Dev
	cells  int
	config uint16 // CONFIG as configured, ALRT clear

	mu        sync.Mutex
	reconfigs int
}

var _ conn.Resource = (*Dev)(nil)

// New checks the gauge's VERSION, sets its empty-alert threshold and
// clears its reset indicator. With no battery the gauge, powered from the
// cell, does not answer: New returns an error wrapping ErrNoBattery.
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if addr != Addr {
		return nil, fmt.Errorf("max17048: address 0x%02x: the gauge is at 0x36", addr)
	}
	if opts.Cells != 1 && opts.Cells != 2 {
		return nil, fmt.Errorf("max17048: %d cells: the MAX17048 gauges 1, the MAX17049 2", opts.Cells)
	}
	if opts.AlertThreshold < 1 || opts.AlertThreshold > 32 {
		return nil, fmt.Errorf("max17048: alert threshold %d%% outside 1%% to 32%%", opts.AlertThreshold)
	}
	d := &Dev{
		c:      i2c.Dev{Bus: bus, Addr: addr},
		cells:  opts.Cells,
		config: rcompPOR<<8 | uint16(32-opts.AlertThreshold),
	}
	v, err := d.readReg(regVersion)
	if err != nil {
		return nil, err
	}
	if v&versionMask != versionBase {
		return nil, fmt.Errorf("%w: 0x%04x", ErrIdentity, v)
	}
	st, err := d.readReg(regStatus)
	if err != nil {
		return nil, err
	}
	cfg, err := d.readReg(regConfig)
	if err != nil {
		return nil, err
	}
	if st&stReserved != 0 {
		return nil, fmt.Errorf("%w: STATUS 0x%04x", ErrGarbled, st)
	}
	if err := d.configure(st, cfg); err != nil {
		return nil, err
	}
	if opts.QuickStart {
		if err := d.writeReg(regMode, modeQuickStart); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Sense reads the gauge. If the gauge was reset since it was configured
// (STATUS.RI), Sense configures it again; the reading still reports RI.
//
// Corruption of VCELL, SOC or CRATE alone cannot be told from a real
// value; a corrupted CONFIG or STATUS, or a stuck bus, gives ErrGarbled.
func (d *Dev) Sense() (Reading, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var prevCfg uint16
	for attempt := 0; attempt < 2; attempt++ {
		var x [5]uint16
		for i, r := range [...]reg{regVCell, regSOC, regCRate, regStatus, regConfig} {
			var err error
			if x[i], err = d.readReg(r); err != nil {
				return Reading{}, err
			}
		}
		st, cfg := x[3], x[4]
		if !d.plausible(st, cfg) {
			if attempt == 1 && st&stReserved == 0 && cfg == prevCfg {
				// CONFIG reads the same foreign value twice: it really
				// holds it, from a write garbled on the bus. Put ours back,
				// or every Sense from now on would fail.
				if err := d.writeReg(regConfig, d.config|cfg&cfgALRT); err != nil {
					return Reading{}, err
				}
				d.reconfigs++
				return Reading{}, fmt.Errorf("%w: CONFIG held 0x%04x, not 0x%04x; written again", ErrGarbled, cfg, d.config)
			}
			prevCfg = cfg
			continue
		}
		if st&stRI != 0 {
			if err := d.configure(st, cfg); err != nil {
				return Reading{}, err
			}
			d.reconfigs++
		}
		return Reading{
			Cell:   physic.ElectricPotential(int64(x[0]) * vcellNanoVolt * int64(d.cells)),
			SOC:    SOC(x[1]),
			Rate:   Rate(int16(x[2])),
			Status: Status(st >> 8 & 0x3F),
			Alert:  cfg&cfgALRT != 0,
		}, nil
	}
	return Reading{}, ErrGarbled
}

// ClearAlert clears the STATUS alert flags, then CONFIG.ALRT, which
// releases the ALRT pin. It leaves STATUS.EnVR off: the package does not
// use the voltage-reset alert.
func (d *Dev) ClearAlert() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.readReg(regStatus)
	if err != nil {
		return err
	}
	if st&stReserved != 0 {
		return fmt.Errorf("%w: STATUS 0x%04x", ErrGarbled, st)
	}
	if err := d.writeReg(regStatus, 0); err != nil {
		return err
	}
	if err := d.writeReg(regConfig, d.config); err != nil {
		return err
	}
	if st&stRI != 0 {
		d.reconfigs++ // the write above configured it again
	}
	return nil
}

// QuickStart restarts the gauge's SOC estimate from the cell voltage, as
// at battery insertion: for when a noisy power-up spoiled the first
// estimate. The estimate is only as good as the voltage is relaxed, with
// no load and no charger.
func (d *Dev) QuickStart() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writeReg(regMode, modeQuickStart)
}

// Reconfigurations is how many times the gauge was found reset and
// configured again.
func (d *Dev) Reconfigurations() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reconfigs
}

// String implements conn.Resource.
func (d *Dev) String() string {
	name := "MAX17048"
	if d.cells == 2 {
		name = "MAX17049"
	}
	return name + "{" + d.c.String() + "}"
}

// Halt implements conn.Resource. It does nothing: the gauge must keep
// tracking the battery while the kiosk software is stopped, and sleep mode
// would lose the charge that flows meanwhile.
func (d *Dev) Halt() error { return nil }

// configure writes CONFIG, keeping an ALRT already raised, then clears RI
// and leaves the other flags. It writes EnVR 0, so that a garbled STATUS
// read cannot turn the voltage-reset alert on.
func (d *Dev) configure(st, cfg uint16) error {
	if err := d.writeReg(regConfig, d.config|cfg&cfgALRT); err != nil {
		return err
	}
	if st&stRI == 0 {
		return nil
	}
	return d.writeReg(regStatus, st&stFlags&^stRI)
}

// plausible reports whether STATUS and CONFIG hold what they can: STATUS
// bit 15 is 0, and CONFIG is ours or, after a reset, the power-on value.
func (d *Dev) plausible(st, cfg uint16) bool {
	if st&stReserved != 0 {
		return false
	}
	cfg &^= cfgALRT
	return cfg == d.config || st&stRI != 0 && cfg == porConfig
}

func (d *Dev) readReg(r reg) (uint16, error) {
	var b [2]byte
	if err := d.c.Tx([]byte{byte(r)}, b[:]); err != nil {
		return 0, d.ioError("reading "+r.String(), err)
	}
	return binary.BigEndian.Uint16(b[:]), nil
}

func (d *Dev) writeReg(r reg, v uint16) error {
	if err := d.c.Tx([]byte{byte(r), byte(v >> 8), byte(v)}, nil); err != nil {
		return d.ioError(fmt.Sprintf("writing 0x%04x to %s", v, r), err)
	}
	return nil
}

// ioError wraps err, as ErrNoBattery when the gauge did not acknowledge:
// Linux reports a NACK as EREMOTEIO. periph.io/x/host/v3's sysfs-i2c
// (v3.8.5) formats the errno with %v, out of errors.Is's sight, hence the
// text match too.
func (d *Dev) ioError(what string, err error) error {
	if errors.Is(err, syscall.EREMOTEIO) || strings.Contains(err.Error(), syscall.EREMOTEIO.Error()) {
		return fmt.Errorf("%w (%s: %w)", ErrNoBattery, what, err)
	}
	return fmt.Errorf("max17048: %s: %w", what, err)
}
