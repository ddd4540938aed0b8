package max17048

import (
	"errors"
	"math"
	"sort"
	"sync"

	"github.com/microretail/kioskd/drivers/emu"
	"periph.io/x/conn/v3/physic"
)

// Emulator is a MAX17048 (one cell) or MAX17049 (two) for an emu.Bus: the
// register map with its power-on values, byte addressing with
// auto-increment, and the alerts.
//
// The ModelGauge algorithm is not modelled: the world sets the state of
// charge and rate it computes. Alerts are evaluated when the world changes,
// as the chip does at its next measurement:
//   - HD and ALRT when SOC crosses below 32 - CONFIG.ATHD %;
//   - SC and ALRT when SOC moves to another whole percent, if CONFIG.ALSC;
//   - VH or VL and ALRT when VCELL leaves VALRT's window (per cell);
//   - VR and ALRT when VCELL falls below VRESET (per cell), if STATUS.EnVR.
//
// The host clears STATUS flags and CONFIG.ALRT by writing 0; writing 1
// leaves them. The gauge is powered from the battery: without one every
// transaction NACKs, and fitting one is a power-on reset (STATUS.RI set).
// Writing 0x5400 to CMD resets it too, and the chip NACKs that write as
// it goes down, as Adafruit's CircuitPython driver observes. Sleep and
// hibernate are stored, not acted on.
type Emulator struct {
	cells int

	mu          sync.Mutex
	present     bool
	cell        physic.ElectricPotential // battery voltage
	soc         float64                  // %
	rate        float64                  // %/h
	ptr         byte
	regs        map[reg]uint16
	quickStarts int
}

var _ emu.Chip = (*Emulator)(nil)

// NewEmulator returns a gauge for cells cells in series with a battery
// fitted at 3.7 V per cell and 50 %, just powered up.
func NewEmulator(cells int) *Emulator {
	if cells != 2 {
		cells = 1
	}
	e := &Emulator{cells: cells, present: true, cell: physic.ElectricPotential(cells) * 3700 * physic.MilliVolt, soc: 50}
	e.reset()
	return e
}

// SetBattery fits or removes the battery. Fitting one powers the gauge up.
func (e *Emulator) SetBattery(present bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if present && !e.present {
		e.present = true
		e.reset()
	}
	e.present = present
}

// SetCell sets the battery voltage: the cell's, or both cells' on the
// MAX17049.
func (e *Emulator) SetCell(v physic.ElectricPotential) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cell = v
	if !e.present {
		return
	}
	e.regs[regVCell] = e.vcell()
	perCell := int64(e.regs[regVCell]) * vcellNanoVolt
	valrt := e.regs[regVAlrt]
	if perCell > int64(valrt&0xFF)*valrtMilliVolt*1e6 {
		e.alert(stVH)
	}
	if perCell < int64(valrt>>8)*valrtMilliVolt*1e6 {
		e.alert(stVL)
	}
	if e.regs[regStatus]&stEnVR != 0 && perCell < int64(e.regs[regVReset]>>9)*vresetMilliVolt*1e6 {
		e.alert(stVR)
	}
}

// SetSOC sets the state of charge ModelGauge computes, in percent.
func (e *Emulator) SetSOC(pct float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.soc = pct
	if !e.present {
		return
	}
	old := e.regs[regSOC]
	e.regs[regSOC] = e.socReg()
	now := e.regs[regSOC]
	cfg := e.regs[regConfig]
	empty := (32 - cfg&cfgATHD) << 8 // threshold in 1/256 %
	if old >= empty && now < empty {
		e.alert(stHD)
	}
	if cfg&cfgALSC != 0 && old>>8 != now>>8 {
		e.alert(stSC)
	}
}

// SetRate sets the charge (positive) or discharge rate, in %/h.
func (e *Emulator) SetRate(pctPerHour float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rate = pctPerHour
	if e.present {
		e.regs[regCRate] = e.crateReg()
	}
}

// Register returns the 16-bit register at r as the bus would read it.
func (e *Emulator) Register(r byte) uint16 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.value(reg(r &^ 1))
}

// QuickStarts is how many quick-starts the gauge was told to do.
func (e *Emulator) QuickStarts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.quickStarts
}

var (
	errUnpowered = errors.New("max17048 emulator: no battery, no power")
	errResetting = errors.New("max17048 emulator: resetting")
)

// Tx implements emu.Chip. The first byte written sets the address; bytes
// after it are written from there on, and reads go on from the address.
func (e *Emulator) Tx(w, r []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.present {
		return errUnpowered
	}
	if len(w) > 0 {
		e.ptr = w[0]
		if err := e.write(e.ptr, w[1:]); err != nil {
			return err
		}
	}
	for i := range r {
		a := e.ptr + byte(i)
		v := e.value(reg(a &^ 1))
		if a&1 == 0 {
			v >>= 8
		}
		r[i] = byte(v)
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
	e.ptr = 0
	e.regs = map[reg]uint16{
		regVersion: 0x0012, regMode: porMode, regHibRT: porHibRT, regConfig: porConfig,
		regVAlrt: porVAlrt, regVReset: porVReset, regStatus: porStatus,
	}
	// The first estimate, from the cell voltage at power-up.
	e.regs[regVCell], e.regs[regSOC], e.regs[regCRate] = e.vcell(), e.socReg(), e.crateReg()
}

func (e *Emulator) value(r reg) uint16 {
	if r == regCmd {
		return 0xFFFF
	}
	return e.regs[r] // unimplemented addresses read 0
}

// write merges data into the registers from address a on, then applies
// each register written.
func (e *Emulator) write(a byte, data []byte) error {
	touched := map[reg]uint16{}
	for i, b := range data {
		at := a + byte(i)
		r := reg(at &^ 1)
		v, ok := touched[r]
		if !ok {
			v = e.value(r)
		}
		if at&1 == 0 {
			v = v&0x00FF | uint16(b)<<8
		} else {
			v = v&0xFF00 | uint16(b)
		}
		touched[r] = v
	}
	order := make([]reg, 0, len(touched))
	for r := range touched {
		order = append(order, r)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	for _, r := range order {
		if err := e.set(r, touched[r]); err != nil {
			return err
		}
	}
	return nil
}

func (e *Emulator) set(r reg, v uint16) error {
	old := e.regs[r]
	switch r {
	case regMode:
		if v&modeQuickStart != 0 {
			e.quickStarts++
			e.regs[regSOC] = e.socReg()
		}
		e.regs[r] = v&modeEnSleep | old&modeHibStat
	case regConfig:
		e.regs[r] = v&^cfgALRT | v&old&cfgALRT
	case regHibRT, regVAlrt:
		e.regs[r] = v
	case regVReset:
		e.regs[r] = v&0xFF00 | old&0x00FF // ID is read-only
	case regStatus:
		e.regs[r] = old&v&stFlags | v&stEnVR
	case regCmd:
		if v == cmdPOR {
			e.reset()
			return errResetting
		}
	}
	// VCELL, SOC, VERSION and CRATE are read-only.
	return nil
}

func (e *Emulator) alert(flag uint16) {
	e.regs[regStatus] |= flag
	e.regs[regConfig] |= cfgALRT
}

func (e *Emulator) vcell() uint16 {
	n := float64(e.cell) / float64(e.cells) / vcellNanoVolt
	return uint16(math.Round(math.Max(0, math.Min(math.MaxUint16, n))))
}

func (e *Emulator) socReg() uint16 {
	return uint16(math.Round(math.Max(0, math.Min(math.MaxUint16, e.soc*256))))
}

func (e *Emulator) crateReg() uint16 {
	n := math.Round(e.rate * 1000 / crateMilli)
	return uint16(int16(math.Max(math.MinInt16, math.Min(math.MaxInt16, n))))
}
