package ina219

import (
	"math"
	"sync"
	"time"

	"github.com/microretail/kioskd/drivers/emu"
	"periph.io/x/conn/v3/physic"
)

// Emulator is an INA219 or INA226 for an emu.Bus: the register map with
// its power-on values, the register pointer, and the measurement engine.
//
// Conversions take the time the configuration's ADC settings give in the
// datasheet, on the clock SetClock sets (the wall clock by default). A
// finished conversion samples the shunt and bus voltages SetCurrent and
// SetBus describe, computes Current = Shunt × Cal / 4096 (INA219) or / 2048
// (INA226) and Power = |Current| × Bus / 5000 (INA219) or / 20000 (INA226),
// sets OVF when either leaves its register, and sets CNVR (INA219, cleared
// by reading power) or CVRF (INA226, cleared by reading mask/enable).
// Writing the configuration restarts conversions; power-down stops them.
//
// The shunt ADC is ideal: it rounds to the register's LSB and saturates at
// the range's end. The INA226 alert functions are stored, not acted on.
type Emulator struct {
	v     Variant
	chip  chip
	shunt physic.ElectricResistance

	mu  sync.Mutex
	now func() time.Time
	// What the chip measures.
	busV    physic.ElectricPotential
	current physic.ElectricCurrent
	// The chip.
	ptr                            reg
	config, cal, me, alertLimit    uint16
	shuntR, busR, powerR, currentR uint16 // busR is the count, without the INA219's flags
	ready, overflow                bool   // CNVR or CVRF, and OVF
	converting                     bool
	started                        time.Time // of the conversion in progress
}

var _ emu.Chip = (*Emulator)(nil)

// NewEmulator returns a chip at its power-on state with the given shunt
// between its inputs, no current and no bus voltage.
func NewEmulator(v Variant, shunt physic.ElectricResistance) *Emulator {
	e := &Emulator{v: v, chip: v.chip(), shunt: shunt, now: time.Now}
	e.reset()
	return e
}

// SetClock sets the clock conversions are timed by.
func (e *Emulator) SetClock(now func() time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = now
	e.started = now()
}

// SetBus sets the voltage on the bus pin (IN- on the INA219, VBUS on the
// INA226).
func (e *Emulator) SetBus(v physic.ElectricPotential) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advance()
	e.busV = v
}

// SetCurrent sets the current through the shunt, positive from IN+ to
// IN-. The shunt voltage is I × R.
func (e *Emulator) SetCurrent(i physic.ElectricCurrent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advance()
	e.current = i
}

// Register returns a register as the bus would read it, without the side
// effects of reading it.
func (e *Emulator) Register(r byte) uint16 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advance()
	return e.value(reg(r))
}

// Tx implements emu.Chip. The first byte written sets the register pointer;
// two more write the register. Reads return the register MSB first; the
// pointer does not advance, so longer reads repeat it.
func (e *Emulator) Tx(w, r []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advance()
	if len(w) > 0 {
		e.ptr = reg(w[0])
		if len(w) >= 3 {
			e.write(e.ptr, uint16(w[1])<<8|uint16(w[2]))
		}
	}
	if len(r) > 0 {
		v := e.value(e.ptr)
		for i := range r {
			r[i] = byte(v >> (8 * (1 - i%2)))
		}
		switch {
		case e.v == INA219 && e.ptr == regPower, e.v == INA226 && e.ptr == regMaskEnable:
			e.ready = false
		}
	}
	return nil
}

// PowerOnReset implements emu.Chip.
func (e *Emulator) PowerOnReset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reset()
}

func (e *Emulator) reset() {
	e.ptr = regConfig
	e.config = e.chip.porConfig
	e.cal, e.me, e.alertLimit = 0, 0, 0
	e.shuntR, e.busR, e.powerR, e.currentR = 0, 0, 0, 0
	e.ready, e.overflow = false, false
	e.converting, e.started = true, e.now()
}

func (e *Emulator) value(r reg) uint16 {
	switch r {
	case regConfig:
		return e.config
	case regShunt:
		return e.shuntR
	case regBus:
		if e.v == INA226 {
			return e.busR
		}
		v := e.busR << bus219Shift
		if e.ready {
			v |= bus219CNVR
		}
		if e.overflow {
			v |= bus219OVF
		}
		return v
	case regPower:
		return e.powerR
	case regCurrent:
		return e.currentR
	case regCalibration:
		return e.cal
	}
	if e.v == INA226 {
		switch r {
		case regMaskEnable:
			v := e.me
			if e.ready {
				v |= me226CVRF
			}
			if e.overflow {
				v |= me226OVF
			}
			return v
		case regAlertLimit:
			return e.alertLimit
		case regMfrID:
			return mfrIDTI
		case regDieID:
			return dieID226 << 4
		}
	}
	return 0 // undocumented pointer
}

func (e *Emulator) write(r reg, v uint16) {
	switch {
	case r == regConfig:
		if v&cfgReset != 0 {
			e.reset()
			return
		}
		if e.v == INA226 {
			e.config = cfg226Fixed | v&cfg226Writable
		} else {
			e.config = v & cfg219Writable
		}
		// A mode that converts clears the ready flag and starts afresh;
		// power-down and ADC-off stop and leave the flag alone.
		if e.converting = e.config&(modeShuntBit|modeBusBit) != 0; e.converting {
			e.ready, e.started = false, e.now()
		}
	case r == regCalibration:
		e.cal = v & e.chip.calMask
	case e.v == INA226 && r == regMaskEnable:
		e.me = v & me226Writable
	case e.v == INA226 && r == regAlertLimit:
		e.alertLimit = v
	}
	// The other registers are read-only: writes are ignored.
}

// advance completes the conversion in progress if its time is up. In the
// continuous modes the next one starts where it ended; conversions the
// caller slept through would only have overwritten each other.
func (e *Emulator) advance() {
	if !e.converting {
		return
	}
	t := e.v.conversionTime(e.config)
	now := e.now()
	if now.Before(e.started.Add(t)) {
		return
	}
	e.convert()
	if e.config&modeContBit == 0 {
		e.converting = false
		return
	}
	e.started = e.started.Add(now.Sub(e.started) / t * t)
}

func (e *Emulator) convert() {
	c := e.chip
	mode := e.config & cfgMode
	if mode&modeShuntBit != 0 {
		lo, hi := float64(math.MinInt16), float64(math.MaxInt16)
		if e.v == INA219 {
			full := float64(int64(4000) << (e.config >> cfg219PGAShift & 3))
			lo, hi = -full, full
		}
		nv := float64(e.current) * float64(e.shunt) / 1e9
		e.shuntR = uint16(int16(clamp(math.Round(nv/float64(c.shuntLSB)), lo, hi)))
	}
	if mode&modeBusBit != 0 {
		hi := float64(c.busMax)
		if e.v == INA219 && e.config&cfg219BRNG == 0 {
			hi = 4000 // 16 V range
		}
		e.busR = uint16(clamp(math.Round(float64(e.busV)/float64(c.busLSB)), 0, hi))
	}
	cur := int64(int16(e.shuntR)) * int64(e.cal) / c.currentDiv
	e.overflow = cur > math.MaxInt16 || cur < math.MinInt16
	cur = int64(clamp(float64(cur), math.MinInt16, math.MaxInt16))
	e.currentR = uint16(int16(cur))
	p := abs(cur) * int64(e.busR) / c.powerDiv
	if p > math.MaxUint16 {
		e.overflow, p = true, math.MaxUint16
	}
	e.powerR = uint16(p)
	e.ready = true
}

func clamp(v, lo, hi float64) float64 {
	return math.Max(lo, math.Min(hi, v))
}
