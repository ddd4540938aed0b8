package pca9685

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Channels is how many PWM outputs the chip has, LED0 to LED15.
const Channels = 16

// MaxDuty is a channel fully on. A duty d from 1 to MaxDuty-1 keeps the
// output on for d of the 4096 counts of each PWM period; 0 is fully off.
const MaxDuty = 4096

// Errors callers act on.
var (
	// ErrNotPCA9685 means the chip at the address does not read like a PCA9685.
	ErrNotPCA9685 = errors.New("pca9685: not a PCA9685")
	// ErrVerify means the chip did not read back the configuration just
	// written: noise on the bus, or a chip that is not holding its state.
	// The next call tries again.
	ErrVerify = errors.New("pca9685: configuration did not read back")
	// ErrRange means an argument is outside what the chip can do.
	ErrRange = errors.New("pca9685: out of range")
)

// Opts configures a Dev.
type Opts struct {
	// Frequency is the PWM frequency, 24 Hz to 1526 Hz on the internal
	// oscillator. The default 1 kHz is far above visible flicker, also for
	// the cameras that film the kiosk. Zero means the default.
	Frequency physic.Frequency
	// Oscillator is the clock the prescaler divides: 25 MHz inside the chip,
	// or the EXTCLK clock. Zero means 25 MHz.
	Oscillator physic.Frequency
	// Invert sets MODE2 INVRT: the pin is low while a channel is on, for
	// LEDs wired from the supply to the pin without a driver transistor.
	Invert bool
	// OpenDrain clears MODE2 OUTDRV so outputs only sink, as LEDs with a
	// built-in Zener diode require. The default is totem pole.
	OpenDrain bool
}

// DefaultOpts suits LEDs driven through transistors, the usual kiosk wiring.
var DefaultOpts = Opts{
	Frequency:  1 * physic.KiloHertz,
	Oscillator: internalOscillator,
}

// Dev is a PCA9685. It is safe for concurrent use.
type Dev struct {
	c     i2c.Dev
	osc   physic.Frequency
	mode2 byte // MODE2 as programmed
	mode1 byte // MODE1 while running: AI, plus EXTCLK if it was set at New

	mu       sync.Mutex
	prescale byte
	duty     [Channels]uint16 // what each channel was last set to, reloaded after a reset
}

var _ conn.Resource = (*Dev)(nil)

// New checks that a PCA9685 answers at addr, then sets it up: every channel
// off, auto-increment on, All Call off, the PWM frequency and output stage
// from opts (nil means DefaultOpts).
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	o := DefaultOpts
	if opts != nil {
		o = *opts
	}
	if o.Frequency == 0 {
		o.Frequency = DefaultOpts.Frequency
	}
	if o.Oscillator == 0 {
		o.Oscillator = DefaultOpts.Oscillator
	}
	// A0-A5 select 0x40-0x7F; 0x70 is the All Call address every PCA9685
	// answers at power-on (7.1.2) and 0x78-0x7F are reserved by I2C.
	if addr < 0x40 || addr > 0x77 || addr == allCallAddr {
		return nil, fmt.Errorf("%w: address 0x%02x (want 0x40-0x77 except 0x70)", ErrRange, addr)
	}
	if o.Oscillator < 0 || o.Oscillator > maxOscillator*physic.Hertz {
		return nil, fmt.Errorf("%w: oscillator %s (want up to 50MHz)", ErrRange, o.Oscillator)
	}
	ps, err := prescale(o.Oscillator, o.Frequency)
	if err != nil {
		return nil, err
	}
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: addr}, osc: o.Oscillator, prescale: ps, mode1: mode1AI, mode2: mode2OutDrv}
	if o.Invert {
		d.mode2 |= mode2Invrt
	}
	if o.OpenDrain {
		d.mode2 &^= mode2OutDrv
	}
	if err := d.identify(); err != nil {
		return nil, err
	}
	if err := d.reinit(); err != nil {
		return nil, err
	}
	return d, nil
}

// SetDuty sets channel ch to duty, 0 (off) to MaxDuty (on).
func (d *Dev) SetDuty(ch int, duty uint16) error {
	return d.SetDuties(ch, []uint16{duty})
}

// SetDuties sets channels first, first+1, … in one bus transaction, so they
// change together.
func (d *Dev) SetDuties(first int, duties []uint16) error {
	if first < 0 || first+len(duties) > Channels {
		return fmt.Errorf("%w: channels %d-%d (want 0-%d)", ErrRange, first, first+len(duties)-1, Channels-1)
	}
	for i, v := range duties {
		if v > MaxDuty {
			return fmt.Errorf("%w: channel %d duty %d (want 0-%d)", ErrRange, first+i, v, MaxDuty)
		}
	}
	if len(duties) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writeChannels(first, duties); err != nil {
		return err
	}
	copy(d.duty[first:], duties)
	return d.settle()
}

// AllOff turns every channel off with one write to ALL_LED_OFF_H.
func (d *Dev) AllOff() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.write(regAllLEDOffH, ledFull); err != nil {
		return err
	}
	d.duty = [Channels]uint16{}
	return d.settle()
}

// SetFrequency changes the PWM frequency, with the datasheet's sequence:
// PRE_SCALE is writable only while the oscillator sleeps (7.3.5), and
// channels stopped by the sleep are restarted once it runs again (7.3.1.1).
func (d *Dev) SetFrequency(f physic.Frequency) error {
	ps, err := prescale(d.osc, f)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m, err := d.read(regMode1)
	if err != nil {
		return err
	}
	d.prescale = ps
	if m != d.mode1 {
		return d.reinit() // reset or halted: a full set-up writes PRE_SCALE anyway
	}
	if err := d.write(regMode1, m&^mode1Restart|mode1Sleep); err != nil {
		return err
	}
	if err := d.write(regPreScale, ps); err != nil {
		return err
	}
	if err := d.write(regMode1, m&^mode1Restart); err != nil {
		return err
	}
	time.Sleep(oscStartup)
	if m, err = d.read(regMode1); err != nil {
		return err
	}
	if m&mode1Restart != 0 {
		if err := d.write(regMode1, m); err != nil { // writing RESTART back as 1 restarts the channels
			return err
		}
	}
	return d.verify()
}

// Frequency is the PWM frequency the chip runs at: the one asked for,
// rounded to what PRE_SCALE can hold.
func (d *Dev) Frequency() physic.Frequency {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.osc / physic.Frequency(4096*(int64(d.prescale)+1))
}

// Reinit sets the chip up again from scratch and reloads every channel.
// Dev does it by itself when it finds the chip reset; Reinit is for a
// caller that knows, say after cycling the lights' power rail.
func (d *Dev) Reinit() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reinit()
}

// String implements conn.Resource.
func (d *Dev) String() string {
	return fmt.Sprintf("PCA9685{%s, 0x%02x}", d.c.Bus, d.c.Addr)
}

// Halt implements conn.Resource: every channel off, then the oscillator
// off. The next SetDuty wakes the chip with the other channels off.
func (d *Dev) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.duty = [Channels]uint16{}
	if err := d.write(regAllLEDOffH, ledFull); err != nil {
		return err
	}
	return d.write(regMode1, d.mode1|mode1Sleep)
}

// identify checks the parts of the register map whose values the datasheet
// fixes; see the package documentation. AI may be off, so one register per
// read. MODE1 has no fixed bits; its EXTCLK is kept as found.
func (d *Dev) identify() error {
	var v [4]byte
	for i, r := range []reg{regMode1, regMode2, regPreScale, regAllLEDOffH} {
		var err error
		if v[i], err = d.read(r); err != nil {
			return err
		}
	}
	if v[1]&mode2Reserved != 0 || v[2] < prescaleMin || v[3] != 0 {
		return fmt.Errorf("%w at %s: MODE2 0x%02x, PRE_SCALE 0x%02x, ALL_LED_OFF_H 0x%02x", ErrNotPCA9685, d, v[1], v[2], v[3])
	}
	d.mode1 |= v[0] & mode1ExtClk
	return nil
}

// reinit programs MODE2 and PRE_SCALE, wakes the oscillator with
// auto-increment on, reloads all channels and checks the result.
func (d *Dev) reinit() error {
	if err := d.write(regMode1, d.mode1|mode1Sleep); err != nil { // PRE_SCALE is writable only asleep
		return err
	}
	if err := d.write(regMode2, d.mode2); err != nil {
		return err
	}
	if err := d.write(regPreScale, d.prescale); err != nil {
		return err
	}
	if err := d.write(regMode1, d.mode1); err != nil {
		return err
	}
	time.Sleep(oscStartup)
	// Writing the channels also clears a RESTART left by the sleep (7.3.1.1).
	if err := d.writeChannels(0, d.duty[:]); err != nil {
		return err
	}
	return d.verify()
}

// settle reads MODE1 back after a write. A chip that lost power reads
// SLEEP set and AI clear; anything but what was programmed gets a reinit.
func (d *Dev) settle() error {
	m, err := d.read(regMode1)
	if err != nil {
		return err
	}
	if m == d.mode1 {
		return nil
	}
	return d.reinit()
}

// verify reads PRE_SCALE, MODE1 and MODE2 in one transfer: auto-increment
// rolls over from PRE_SCALE to MODE1 (Table 4).
func (d *Dev) verify() error {
	var b [3]byte
	if err := d.c.Tx([]byte{byte(regPreScale)}, b[:]); err != nil {
		return fmt.Errorf("pca9685: read back PRE_SCALE, MODE1, MODE2: %w", err)
	}
	if b != [3]byte{d.prescale, d.mode1, d.mode2} {
		return fmt.Errorf("%w: PRE_SCALE, MODE1, MODE2 read % x, want % x", ErrVerify, b, []byte{d.prescale, d.mode1, d.mode2})
	}
	return nil
}

func (d *Dev) writeChannels(first int, duties []uint16) error {
	b := make([]byte, 1, 1+4*len(duties))
	b[0] = byte(ledReg(first))
	for _, v := range duties {
		b = append(b, encode(v)...)
	}
	if err := d.c.Tx(b, nil); err != nil {
		return fmt.Errorf("pca9685: write LED%d-LED%d: %w", first, first+len(duties)-1, err)
	}
	return nil
}

// encode is LEDn_ON_L, ON_H, OFF_L, OFF_H for duty: on at count 0, off at
// count duty, or the full-on or full-off bit.
func encode(duty uint16) []byte {
	switch {
	case duty == 0:
		return []byte{0, 0, 0, ledFull}
	case duty >= MaxDuty:
		return []byte{0, ledFull, 0, 0}
	}
	return []byte{0, 0, byte(duty), byte(duty >> 8)}
}

func (d *Dev) write(r reg, v byte) error {
	if err := d.c.Tx([]byte{byte(r), v}, nil); err != nil {
		return fmt.Errorf("pca9685: write 0x%02x to register 0x%02x: %w", v, byte(r), err)
	}
	return nil
}

func (d *Dev) read(r reg) (byte, error) {
	var b [1]byte
	if err := d.c.Tx([]byte{byte(r)}, b[:]); err != nil {
		return 0, fmt.Errorf("pca9685: read register 0x%02x: %w", byte(r), err)
	}
	return b[0], nil
}

// prescale is PRE_SCALE for f: round(osc / (4096 f)) - 1 (7.3.5, Equation 1).
func prescale(osc, f physic.Frequency) (byte, error) {
	if f <= 0 || f > osc {
		return 0, fmt.Errorf("%w: frequency %s", ErrRange, f)
	}
	div := 4096 * f
	p := (osc+div/2)/div - 1
	if p < prescaleMin || p > prescaleMax {
		return 0, fmt.Errorf("%w: frequency %s needs PRE_SCALE %d (want %d-%d)", ErrRange, f, p, prescaleMin, prescaleMax)
	}
	return byte(p), nil
}
