package ina219

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Variant is the chip on the bus.
type Variant int

// The chips the package drives.
const (
	INA219 Variant = iota // 12-bit, PGA, 26 V bus, no ID registers
	INA226                // 16-bit, ±81.92 mV shunt, 36 V bus, ID registers
)

func (v Variant) String() string {
	switch v {
	case INA219:
		return "INA219"
	case INA226:
		return "INA226"
	}
	return fmt.Sprintf("Variant(%d)", int(v))
}

// Opts describes the chip and its shunt.
type Opts struct {
	Variant    Variant
	Shunt      physic.ElectricResistance // the shunt resistor between IN+ and IN-
	MaxCurrent physic.ElectricCurrent    // the largest current expected, either way
	// MaxBus selects the INA219 bus range: up to 16 V picks the 16 V range,
	// 0 or anything above the 32 V one. The INA226 has a single range.
	MaxBus physic.ElectricPotential
	// OneShot converts only when Sense asks and leaves the chip idle in
	// between, instead of converting continuously.
	OneShot bool
}

// DefaultOpts fits the Waveshare UPS HATs: an INA219 with a 0.1 Ω shunt.
// 3.2 A drops 320 mV, the INA219's widest shunt range; the current LSB
// comes out at 100 µA and the calibration at 4096.
var DefaultOpts = Opts{Variant: INA219, Shunt: 100 * physic.MilliOhm, MaxCurrent: 3200 * physic.MilliAmpere}

// Errors Sense and New return.
var (
	ErrIdentity = errors.New("ina219: the chip does not identify as the configured INA219/INA226")
	ErrOverflow = errors.New("ina219: current beyond the measurable range (shunt at full scale or math overflow)")
	ErrNotReady = errors.New("ina219: no conversion completed in the time the datasheet gives")
	ErrGarbled  = errors.New("ina219: registers read back inconsistent: corrupted on the bus")
)

// Reading is one measurement. Current is positive from IN+ to IN-; Power
// is the magnitude the chip computes.
type Reading struct {
	Bus, Shunt physic.ElectricPotential
	Current    physic.ElectricCurrent
	Power      physic.Power
}

// Dev is an INA219 or INA226. It is safe for concurrent use.
type Dev struct {
	c         i2c.Dev
	v         Variant
	chip      chip
	oneShot   bool
	lsb       physic.ElectricCurrent // current LSB
	cal       uint16
	config    uint16
	shuntFull int64         // shunt count at the end of the range
	conv      time.Duration // one round of shunt and bus conversions
	sleep     func(time.Duration)

	mu      sync.Mutex
	pending bool // a conversion was started and has not been seen to finish
	halted  bool
	recals  int
}

var _ conn.Resource = (*Dev)(nil)

// New identifies the chip at addr (0x40 to 0x4F), calibrates it for the
// shunt and starts it converting. The INA226 is identified by its ID
// registers; the INA219 has none, so it is reset and must then read back
// its power-on configuration, 0x399F.
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if addr < 0x40 || addr > 0x4F {
		return nil, fmt.Errorf("ina219: address 0x%02x is not one of 0x40 to 0x4f", addr)
	}
	s, err := plan(opts)
	if err != nil {
		return nil, err
	}
	d := &Dev{
		c: i2c.Dev{Bus: bus, Addr: addr}, v: opts.Variant, chip: opts.Variant.chip(),
		oneShot: opts.OneShot, lsb: s.lsb, cal: s.cal, config: s.config, shuntFull: s.shuntFull,
		conv: opts.Variant.conversionTime(s.config), sleep: time.Sleep,
	}
	if err := d.identify(); err != nil {
		return nil, err
	}
	if err := d.calibrate(); err != nil {
		return nil, err
	}
	return d, nil
}

// Sense returns the latest measurement. If the chip was reset since it was
// calibrated (a brownout returns the calibration register to 0, and with
// it current and power), Sense calibrates it again and measures anew.
//
// In continuous mode the chip converts on its own and Sense returns the
// latest conversion, which may be one it returned before: CNVR only says
// whether a conversion finished since the last read of the power register.
// Sense waits for a conversion only after the chip was (re)configured, and
// every time in one-shot mode.
func (d *Dev) Sense() (Reading, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted || d.oneShot {
		if err := d.start(); err != nil {
			return Reading{}, err
		}
		if d.oneShot {
			d.sleep(d.conv)
		}
	}
	recalibrated := false
	for attempt := 0; attempt < 3; attempt++ {
		x, err := d.read()
		if err != nil {
			return Reading{}, err
		}
		if d.plausible(x) {
			if d.overflowed(x) {
				return Reading{}, ErrOverflow
			}
			if x.current != 0 && d.consistent(x) {
				return d.reading(x), nil
			}
		}
		// No current, or registers that disagree: either the chip was reset
		// (calibration 0, so current and power 0) or a byte was garbled.
		cal, err := d.readReg(regCalibration)
		if err != nil {
			return Reading{}, err
		}
		if cal == 0 {
			if recalibrated {
				return Reading{}, errors.New("ina219: calibration lost again right after rewriting it: is the chip browning out?")
			}
			if err := d.calibrate(); err != nil {
				return Reading{}, err
			}
			d.recals++
			recalibrated = true
			continue
		}
		if cal == d.cal && d.plausible(x) && d.consistent(x) {
			return d.reading(x), nil // no current flowing
		}
	}
	return Reading{}, ErrGarbled
}

// Recalibrations is how many times Sense found the chip reset and
// programmed it again.
func (d *Dev) Recalibrations() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.recals
}

// String implements conn.Resource.
func (d *Dev) String() string {
	return d.chip.name + "{" + d.c.String() + "}"
}

// Halt implements conn.Resource: it puts the chip in power-down mode. The
// next Sense wakes it up.
func (d *Dev) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted {
		return nil
	}
	if err := d.writeReg(regConfig, d.config&^cfgMode|modePowerDown); err != nil {
		return err
	}
	d.halted = true
	return nil
}

// settings are the register values New derives from Opts.
type settings struct {
	lsb       physic.ElectricCurrent
	cal       uint16
	config    uint16
	shuntFull int64
}

// plan follows TI's calibration procedure (SBOS448G 8.5.1, SBOS547B
// 6.5.1): Current_LSB ≥ MaxCurrent / 2^15, rounded up to a 1-2-5 value;
// Cal = trunc(0.04096 / (Current_LSB × Rshunt)) on the INA219 and
// trunc(0.00512 / (Current_LSB × Rshunt)) on the INA226, coarsening the
// LSB until Cal fits its register. The INA219's PGA gets the narrowest
// range that holds MaxCurrent × Rshunt.
func plan(o *Opts) (settings, error) {
	if o.Variant != INA219 && o.Variant != INA226 {
		return settings{}, fmt.Errorf("ina219: unknown variant %d", int(o.Variant))
	}
	if o.Shunt <= 0 || o.MaxCurrent <= 0 {
		return settings{}, fmt.Errorf("ina219: shunt %s and maximum current %s must both be positive", o.Shunt, o.MaxCurrent)
	}
	c := o.Variant.chip()
	drop := float64(o.MaxCurrent) * float64(o.Shunt) / 1e9 // nV
	mode := modeBothCont
	if o.OneShot {
		mode = modeBothTrig
	}
	var s settings
	calMax := int64(c.calMask)
	if o.Variant == INA226 {
		if drop > float64(32768*c.shuntLSB) {
			return settings{}, fmt.Errorf("ina219: %s through %s drops %s, beyond the INA226's ±81.92mV", o.MaxCurrent, o.Shunt, physic.ElectricPotential(drop))
		}
		s.config = cfg226Fixed | avg226x4<<cfg226AVGShift | ct226ms1<<cfg226VBUSCTShift | ct226ms1<<cfg226VSHCTShift | mode
		s.shuntFull = math.MaxInt16
	} else {
		pg := uint16(0)
		for ; drop > float64(40*physic.MilliVolt<<pg); pg++ {
			if pg == 3 {
				return settings{}, fmt.Errorf("ina219: %s through %s drops %s, beyond the INA219's ±320mV", o.MaxCurrent, o.Shunt, physic.ElectricPotential(drop))
			}
		}
		s.config = pg<<cfg219PGAShift | adc219Avg8<<cfg219BADCShift | adc219Avg8<<cfg219SADCShift | mode
		if o.MaxBus <= 0 || o.MaxBus > 16*physic.Volt {
			s.config |= cfg219BRNG
		}
		s.shuntFull = 4000 << pg
	}
	r := int64(o.Shunt)
	for lsb := roundUpLSB((int64(o.MaxCurrent) + 32767) / 32768); ; lsb = roundUpLSB(lsb + 1) {
		if lsb > math.MaxInt64/r {
			return settings{}, fmt.Errorf("ina219: no calibration fits a %s shunt", o.Shunt)
		}
		cal := c.calK / (lsb * r)
		if cal <= calMax {
			if cal &= int64(c.calMask); cal == 0 {
				return settings{}, fmt.Errorf("ina219: no calibration fits a %s shunt and %s", o.Shunt, o.MaxCurrent)
			}
			s.lsb, s.cal = physic.ElectricCurrent(lsb), uint16(cal)
			return s, nil
		}
	}
}

// roundUpLSB is the smallest 1, 2 or 5 × 10^n nA at or above least.
func roundUpLSB(least int64) int64 {
	for decade := int64(1); ; decade *= 10 {
		for _, m := range [...]int64{1, 2, 5} {
			if m*decade >= least {
				return m * decade
			}
		}
	}
}

// identify checks the chip is the variant asked for.
func (d *Dev) identify() error {
	if d.v == INA226 {
		mfr, err := d.readReg(regMfrID)
		if err != nil {
			return err
		}
		die, err := d.readReg(regDieID)
		if err != nil {
			return err
		}
		if mfr != mfrIDTI || die>>4 != dieID226 {
			return fmt.Errorf("%w: manufacturer 0x%04x, die 0x%04x; want 0x5449, 0x226x", ErrIdentity, mfr, die)
		}
		return nil
	}
	if err := d.writeReg(regConfig, cfgReset); err != nil {
		return err
	}
	cfg, err := d.readReg(regConfig)
	if err != nil {
		return err
	}
	if cfg != porConfig219 {
		return fmt.Errorf("%w: configuration 0x%04x after a reset; want 0x%04x", ErrIdentity, cfg, porConfig219)
	}
	return nil
}

// calibrate writes the calibration, then the configuration, which starts
// a conversion that uses it.
func (d *Dev) calibrate() error {
	if err := d.writeReg(regCalibration, d.cal); err != nil {
		return err
	}
	return d.start()
}

// start writes the configuration: it wakes the chip from power-down and,
// in one-shot mode, triggers a conversion.
func (d *Dev) start() error {
	if err := d.writeReg(regConfig, d.config); err != nil {
		return err
	}
	d.halted, d.pending = false, true
	return nil
}

// raw is one set of result registers.
type raw struct {
	status, shunt, bus, current, power uint16
}

// read reads the result registers, flags first and the power register last:
// on the INA219 reading power clears CNVR.
func (d *Dev) read() (raw, error) {
	var x raw
	var err error
	if x.status, err = d.status(); err != nil {
		return x, err
	}
	x.bus = x.status
	if d.v == INA226 {
		if x.bus, err = d.readReg(regBus); err != nil {
			return x, err
		}
	}
	if x.shunt, err = d.readReg(regShunt); err != nil {
		return x, err
	}
	if x.current, err = d.readReg(regCurrent); err != nil {
		return x, err
	}
	x.power, err = d.readReg(regPower)
	return x, err
}

// status reads the register holding the conversion-ready flag: the bus
// voltage on the INA219, mask/enable on the INA226. When a conversion is
// pending it waits for it, a conversion time at a time, three times over.
func (d *Dev) status() (uint16, error) {
	reg, ready := regBus, bus219CNVR
	if d.v == INA226 {
		reg, ready = regMaskEnable, me226CVRF
	}
	for polls := 0; ; polls++ {
		s, err := d.readReg(reg)
		if err != nil {
			return 0, err
		}
		if !d.pending || s&ready != 0 {
			d.pending = false
			return s, nil
		}
		if polls == 3 {
			return 0, fmt.Errorf("%w (%s)", ErrNotReady, 3*d.conv)
		}
		d.sleep(d.conv)
	}
}

// plausible reports whether bits the chip always reads as 0 are 0.
func (d *Dev) plausible(x raw) bool {
	if d.v == INA226 {
		return x.status&me226Reserved == 0 && x.bus&bus226Unused == 0
	}
	return x.status&bus219Reserved == 0
}

// overflowed reports the chip's math overflow flag or a shunt voltage at
// the end of its range.
func (d *Dev) overflowed(x raw) bool {
	ovf := bus219OVF
	if d.v == INA226 {
		ovf = me226OVF
	}
	s := int64(int16(x.shunt))
	return x.status&ovf != 0 || s >= d.shuntFull || s <= -d.shuntFull
}

// consistent checks current and power against the chip's own formulas:
// it computes them from the shunt and bus registers it returns. The
// INA219 computes from the registers, so they agree to the count; the
// INA226 averages per-sample results, so they agree to rounding.
func (d *Dev) consistent(x raw) bool {
	c := d.chip
	cur := int64(int16(x.current))
	want := int64(int16(x.shunt)) * int64(d.cal) / c.currentDiv
	slack := int64(1)
	if d.v == INA226 {
		slack = 1 + int64(d.cal)/c.currentDiv
	}
	if abs(cur-want) > slack {
		return false
	}
	wantP := abs(cur) * int64(x.bus>>c.busShift) / c.powerDiv
	slack = 1
	if d.v == INA226 {
		slack = 2 + wantP/100
	}
	return abs(int64(x.power)-wantP) <= slack
}

func (d *Dev) reading(x raw) Reading {
	c := d.chip
	return Reading{
		Bus:     physic.ElectricPotential(x.bus>>c.busShift) * c.busLSB,
		Shunt:   physic.ElectricPotential(int16(x.shunt)) * c.shuntLSB,
		Current: physic.ElectricCurrent(int16(x.current)) * d.lsb,
		// Power_LSB is 20 or 25 × Current_LSB: so many nW per nA.
		Power: physic.Power(int64(x.power) * c.powerRatio * int64(d.lsb)),
	}
}

func (d *Dev) readReg(r reg) (uint16, error) {
	var b [2]byte
	if err := d.c.Tx([]byte{byte(r)}, b[:]); err != nil {
		return 0, fmt.Errorf("ina219: reading the %s register: %w", r, err)
	}
	return binary.BigEndian.Uint16(b[:]), nil
}

func (d *Dev) writeReg(r reg, v uint16) error {
	if err := d.c.Tx([]byte{byte(r), byte(v >> 8), byte(v)}, nil); err != nil {
		return fmt.Errorf("ina219: writing 0x%04x to the %s register: %w", v, r, err)
	}
	return nil
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
