package pca9685

import (
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/physic"

	"github.com/microretail/kioskd/drivers/emu"
)

// Emulator is a PCA9685 as seen from the I2C bus, for tests and the sim
// board. It models the 256-register map with its power-on values and
// read-only bits, the control-register pointer with auto-increment and its
// wrap rules, PRE_SCALE writable only in SLEEP with its floor of 3, the
// ALL_LED registers loading every channel, sticky EXTCLK, and RESTART:
// setting SLEEP while channels run stops them and sets RESTART; they run
// again when RESTART is written 1 at least 500 µs after SLEEP was cleared,
// or when a PWM register is written (7.3.1.1).
//
// Not modelled: the OE pin (tied low, outputs enabled), the All Call and
// Sub Call addresses, the software reset call, and output timing; outputs
// change as soon as a transfer ends.
type Emulator struct {
	mu   sync.Mutex
	regs [256]byte
	ptr  reg       // the control register
	woke time.Time // when SLEEP was last cleared
}

var _ emu.Chip = (*Emulator)(nil)

// NewEmulator returns a chip in its power-on state.
func NewEmulator() *Emulator {
	e := &Emulator{}
	e.PowerOnReset()
	return e
}

// PowerOnReset implements emu.Chip: every register back to its power-on value.
func (e *Emulator) PowerOnReset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.regs = [256]byte{}
	e.regs[regMode1] = mode1Sleep | mode1AllCall
	e.regs[regMode2] = mode2OutDrv
	e.regs[regSubAdr1] = 0xE2
	e.regs[regSubAdr2] = 0xE4
	e.regs[regSubAdr3] = 0xE8
	e.regs[regAllCallAdr] = 0xE0
	for ch := range Channels {
		e.regs[ledReg(ch)+3] = ledFull
	}
	e.regs[regPreScale] = prescalePOR
	e.ptr = regMode1
	e.woke = time.Time{}
}

// Tx implements emu.Chip. The first byte written sets the control register;
// the rest are written from there, then r is read from there, the pointer
// moving after each byte when MODE1 AI is set.
func (e *Emulator) Tx(w, r []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var pwm [Channels]byte // which of each channel's four registers this transfer wrote
	if len(w) > 0 {
		if reserved(reg(w[0])) {
			return fmt.Errorf("pca9685 emulator: register 0x%02x is reserved", w[0])
		}
		e.ptr = reg(w[0])
		for _, b := range w[1:] {
			e.store(e.ptr, b, &pwm)
			e.advance()
		}
	}
	for i := range r {
		r[i] = e.regs[e.ptr] // write-only registers hold 0
		e.advance()
	}
	// At the STOP, a PWM register write clears RESTART; with OCH set, only
	// a write of all four registers of a channel does (7.3.1.1).
	och := e.regs[regMode2]&mode2OCH != 0
	for _, m := range pwm {
		if m != 0 && (!och || m == 0x0F) {
			e.regs[regMode1] &^= mode1Restart
			break
		}
	}
	return nil
}

// reserved registers are not acknowledged (Table 4).
func reserved(r reg) bool { return r > regLEDLast && r < regAllLEDOnL }

// advance moves the pointer after a byte: with AI set, LED15_OFF_H rolls
// over to MODE1, and so does PRE_SCALE (Table 4 remark).
func (e *Emulator) advance() {
	if e.regs[regMode1]&mode1AI == 0 {
		return
	}
	switch {
	case e.ptr == regLEDLast || e.ptr >= regPreScale:
		e.ptr = regMode1
	default:
		e.ptr++
	}
}

func (e *Emulator) store(r reg, v byte, pwm *[Channels]byte) {
	switch {
	case r == regMode1:
		e.storeMode1(v)
	case r == regMode2:
		e.regs[r] = v &^ mode2Reserved
	case r >= regSubAdr1 && r <= regAllCallAdr:
		e.regs[r] = v &^ 1 // bit 0 reads 0
	case r >= regLED0 && r <= regLEDLast:
		ch, i := int(r-regLED0)/4, int(r-regLED0)%4
		e.regs[r] = ledByte(i, v)
		pwm[ch] |= 1 << i
	case r >= regAllLEDOnL && r <= regAllLEDOffH:
		i := int(r - regAllLEDOnL)
		for ch := range Channels {
			e.regs[ledReg(ch)+reg(i)] = ledByte(i, v)
			pwm[ch] |= 1 << i
		}
	case r == regPreScale:
		if e.regs[regMode1]&mode1Sleep != 0 { // blocked while the oscillator runs
			e.regs[r] = max(v, prescaleMin)
		}
	case r == regTestMode:
		e.regs[r] = v
	}
}

// ledByte masks the read-only bits 7:5 of ON_H and OFF_H, register i of 4.
func ledByte(i int, v byte) byte {
	if i%2 == 1 {
		return v &^ ledReserved
	}
	return v
}

func (e *Emulator) storeMode1(v byte) {
	old := e.regs[regMode1]
	n := v & (mode1AI | mode1Sleep | mode1Sub1 | mode1Sub2 | mode1Sub3 | mode1AllCall)
	n |= old & mode1ExtClk // sticky
	if v&mode1ExtClk != 0 && old&mode1Sleep != 0 {
		n |= mode1ExtClk // set while asleep, the sequence drivers use
	}
	restart := old & mode1Restart
	wasAsleep, asleep := old&mode1Sleep != 0, n&mode1Sleep != 0
	switch {
	case !wasAsleep && asleep:
		// Running channels stop and RESTART is set; after an orderly
		// shutdown (all full off) it is cleared.
		restart = 0
		if e.anyOn() {
			restart = mode1Restart
		}
	case wasAsleep && !asleep:
		e.woke = time.Now()
	case !asleep && v&mode1Restart != 0 && time.Since(e.woke) >= oscStartup:
		// RESTART written 1 with SLEEP clear for 500 µs: channels run again.
		// Earlier, the oscillator is not stable and nothing happens.
		restart = 0
	}
	e.regs[regMode1] = n | restart
}

// anyOn reports whether a channel is not full off.
func (e *Emulator) anyOn() bool {
	for ch := range Channels {
		if e.regs[ledReg(ch)+3]&ledFull == 0 {
			return true
		}
	}
	return false
}

// Register is what a read of register r returns now.
func (e *Emulator) Register(r byte) byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.regs[r]
}

// Duty is the fraction of each PWM period channel ch's pin is high, 0 to 1:
// from its ON and OFF counts and full bits, 0 while the oscillator sleeps
// or RESTART is pending, inverted by MODE2 INVRT. ON equal to OFF is off.
// A channel outside 0-15 reports 0.
func (e *Emulator) Duty(ch int) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch < 0 || ch >= Channels {
		return 0
	}
	b := e.regs[ledReg(ch) : ledReg(ch)+4]
	on := int(b[1]&ledCountHi)<<8 | int(b[0])
	off := int(b[3]&ledCountHi)<<8 | int(b[2])
	var d float64
	switch {
	case e.regs[regMode1]&(mode1Sleep|mode1Restart) != 0:
	case b[3]&ledFull != 0:
	case b[1]&ledFull != 0:
		d = 1
	default:
		d = float64((off-on+4096)%4096) / 4096
	}
	if e.regs[regMode2]&mode2Invrt != 0 {
		d = 1 - d
	}
	return d
}

// Frequency is the PWM frequency PRE_SCALE gives on the 25 MHz internal
// oscillator.
func (e *Emulator) Frequency() physic.Frequency {
	e.mu.Lock()
	defer e.mu.Unlock()
	return internalOscillator / physic.Frequency(4096*(int64(e.regs[regPreScale])+1))
}
