package pca9685

import (
	"errors"
	"sync"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/microretail/kioskd/drivers/emu"
)

const addr = 0x40

// probe is New's identity check answered by a chip at power-on.
func probe(mode1 byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0x00}, R: []byte{mode1}}, // MODE1, for EXTCLK
		{Addr: addr, W: []byte{0x01}, R: []byte{0x04}},  // MODE2: reserved bits 7:5 read 0
		{Addr: addr, W: []byte{0xFE}, R: []byte{0x1E}},  // PRE_SCALE: never below 3
		{Addr: addr, W: []byte{0xFD}, R: []byte{0x00}},  // ALL_LED_OFF_H: write only, reads 0
	}
}

// setup is what New and a reinit write with the default options:
// channels from leds, PRE_SCALE ps, then the read-back answered by readback.
func setup(ps byte, leds, readback []byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0x00, 0x30}},            // MODE1: SLEEP so PRE_SCALE is writable, AI, ALLCALL off
		{Addr: addr, W: []byte{0x01, 0x04}},            // MODE2: OUTDRV, totem pole
		{Addr: addr, W: []byte{0xFE, ps}},              // PRE_SCALE
		{Addr: addr, W: []byte{0x00, 0x20}},            // MODE1: oscillator on, AI
		{Addr: addr, W: append([]byte{0x06}, leds...)}, // LED0_ON_L on: all 16 channels in one transfer
		{Addr: addr, W: []byte{0xFE}, R: readback},     // PRE_SCALE, MODE1, MODE2: AI rolls over from 0xFE to 0x00
	}
}

// leds is the 64 channel registers for duties, channels not given off.
func leds(duties map[int]uint16) []byte {
	var b []byte
	for ch := range Channels {
		b = append(b, encode(duties[ch])...)
	}
	return b
}

func ops(parts ...[]i2ctest.IO) []i2ctest.IO {
	var all []i2ctest.IO
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func TestNewPlayback(t *testing.T) {
	tests := []struct {
		name string
		opts *Opts
		ops  []i2ctest.IO
		want error
	}{
		{"defaults", nil, ops(probe(0x11), setup(0x05, leds(nil), []byte{0x05, 0x20, 0x04})), nil},
		{"EXTCLK kept", nil, ops(probe(0x51), []i2ctest.IO{
			{Addr: addr, W: []byte{0x00, 0x70}},                        // MODE1: SLEEP with EXTCLK as found
			{Addr: addr, W: []byte{0x01, 0x04}},                        // MODE2: totem pole
			{Addr: addr, W: []byte{0xFE, 0x05}},                        // PRE_SCALE: 1 kHz
			{Addr: addr, W: []byte{0x00, 0x60}},                        // MODE1: awake, AI, EXTCLK
			{Addr: addr, W: append([]byte{0x06}, leds(nil)...)},        // all channels off
			{Addr: addr, W: []byte{0xFE}, R: []byte{0x05, 0x60, 0x04}}, // read-back matches
		}), nil},
		{"invert, open drain, 200 Hz", &Opts{Frequency: 200 * physic.Hertz, Invert: true, OpenDrain: true}, ops(probe(0x11), []i2ctest.IO{
			{Addr: addr, W: []byte{0x00, 0x30}},                        // MODE1: SLEEP, AI
			{Addr: addr, W: []byte{0x01, 0x10}},                        // MODE2: INVRT, OUTDRV clear
			{Addr: addr, W: []byte{0xFE, 0x1E}},                        // PRE_SCALE 30: 25 MHz / (4096 × 31) = 197 Hz
			{Addr: addr, W: []byte{0x00, 0x20}},                        // MODE1: awake, AI
			{Addr: addr, W: append([]byte{0x06}, leds(nil)...)},        // all channels off
			{Addr: addr, W: []byte{0xFE}, R: []byte{0x1E, 0x20, 0x10}}, // read-back matches
		}), nil},
		{"MODE2 reserved bits set", nil, []i2ctest.IO{
			{Addr: addr, W: []byte{0x00}, R: []byte{0x39}}, // MODE1: anything goes
			{Addr: addr, W: []byte{0x01}, R: []byte{0x9f}}, // MODE2: bit 7 set, so not a PCA9685
			{Addr: addr, W: []byte{0xFE}, R: []byte{0x1E}}, // PRE_SCALE
			{Addr: addr, W: []byte{0xFD}, R: []byte{0x00}}, // ALL_LED_OFF_H
		}, ErrNotPCA9685},
		{"PRE_SCALE below 3", nil, []i2ctest.IO{
			{Addr: addr, W: []byte{0x00}, R: []byte{0x11}}, // MODE1
			{Addr: addr, W: []byte{0x01}, R: []byte{0x04}}, // MODE2
			{Addr: addr, W: []byte{0xFE}, R: []byte{0x02}}, // PRE_SCALE 2: the hardware cannot hold it
			{Addr: addr, W: []byte{0xFD}, R: []byte{0x00}}, // ALL_LED_OFF_H
		}, ErrNotPCA9685},
		{"ALL_LED_OFF_H reads back", nil, []i2ctest.IO{
			{Addr: addr, W: []byte{0x00}, R: []byte{0x11}}, // MODE1
			{Addr: addr, W: []byte{0x01}, R: []byte{0x04}}, // MODE2
			{Addr: addr, W: []byte{0xFE}, R: []byte{0x1E}}, // PRE_SCALE
			{Addr: addr, W: []byte{0xFD}, R: []byte{0x10}}, // ALL_LED_OFF_H holds a value: plain RAM, not a PCA9685
		}, ErrNotPCA9685},
		{"read-back mismatch", nil, ops(probe(0x11), setup(0x05, leds(nil), []byte{0x05, 0x11, 0x04})), ErrVerify},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			d, err := New(bus, addr, tt.opts)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("New: %v, want %v", err, tt.want)
			}
			if (d == nil) != (err != nil) {
				t.Fatalf("New returned %v with error %v", d, err)
			}
			if err := bus.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDevPlayback(t *testing.T) {
	mode1OK := i2ctest.IO{Addr: addr, W: []byte{0x00}, R: []byte{0x20}} // MODE1 as programmed: no reset
	tests := []struct {
		name string
		ops  []i2ctest.IO
		run  func(*Dev) error
		want error
	}{
		{"SetDuty", []i2ctest.IO{
			{Addr: addr, W: []byte{0x12, 0x00, 0x00, 0x00, 0x08}}, // LED3: on at 0, off at 2048
			mode1OK,
		}, func(d *Dev) error { return d.SetDuty(3, 2048) }, nil},
		{"SetDuties full off and full on", []i2ctest.IO{
			{Addr: addr, W: []byte{0x3E, 0, 0, 0, 0x10, 0, 0x10, 0, 0}}, // LED14 OFF_H full off, LED15 ON_H full on
			mode1OK,
		}, func(d *Dev) error { return d.SetDuties(14, []uint16{0, MaxDuty}) }, nil},
		{"AllOff", []i2ctest.IO{
			{Addr: addr, W: []byte{0xFD, 0x10}}, // ALL_LED_OFF_H full off
			mode1OK,
		}, (*Dev).AllOff, nil},
		{"SetFrequency restarts", []i2ctest.IO{
			{Addr: addr, W: []byte{0x00}, R: []byte{0x20}},             // MODE1: awake, AI
			{Addr: addr, W: []byte{0x00, 0x30}},                        // MODE1: SLEEP
			{Addr: addr, W: []byte{0xFE, 0x1E}},                        // PRE_SCALE 30
			{Addr: addr, W: []byte{0x00, 0x20}},                        // MODE1: SLEEP cleared
			{Addr: addr, W: []byte{0x00}, R: []byte{0xA0}},             // MODE1 after 500 µs: RESTART, channels were running
			{Addr: addr, W: []byte{0x00, 0xA0}},                        // MODE1: RESTART written 1 restarts them
			{Addr: addr, W: []byte{0xFE}, R: []byte{0x1E, 0x20, 0x04}}, // read-back
		}, func(d *Dev) error { return d.SetFrequency(200 * physic.Hertz) }, nil},
		{"SetFrequency, nothing to restart", []i2ctest.IO{
			{Addr: addr, W: []byte{0x00}, R: []byte{0x20}},             // MODE1: awake, AI
			{Addr: addr, W: []byte{0x00, 0x30}},                        // MODE1: SLEEP
			{Addr: addr, W: []byte{0xFE, 0xFD}},                        // PRE_SCALE 253
			{Addr: addr, W: []byte{0x00, 0x20}},                        // MODE1: SLEEP cleared
			{Addr: addr, W: []byte{0x00}, R: []byte{0x20}},             // MODE1: no RESTART, all channels were off
			{Addr: addr, W: []byte{0xFE}, R: []byte{0xFD, 0x20, 0x04}}, // read-back
		}, func(d *Dev) error { return d.SetFrequency(24 * physic.Hertz) }, nil},
		{"SetFrequency on a reset chip", ops([]i2ctest.IO{
			{Addr: addr, W: []byte{0x00}, R: []byte{0x11}}, // MODE1 at power-on: the chip was reset
		}, setup(0x1E, leds(nil), []byte{0x1E, 0x20, 0x04})), func(d *Dev) error { return d.SetFrequency(200 * physic.Hertz) }, nil},
		{"reset found after a write", ops([]i2ctest.IO{
			{Addr: addr, W: []byte{0x12, 0x00, 0x00, 0x00, 0x08}}, // LED3: 2048, into a chip with AI clear
			{Addr: addr, W: []byte{0x00}, R: []byte{0x11}},        // MODE1 at power-on: set up again
		}, setup(0x05, leds(map[int]uint16{3: 2048}), []byte{0x05, 0x20, 0x04})), func(d *Dev) error { return d.SetDuty(3, 2048) }, nil},
		{"Reinit read-back fails", setup(0x05, leds(nil), []byte{0x05, 0x20, 0x05}), (*Dev).Reinit, ErrVerify},
		{"Halt twice", []i2ctest.IO{
			{Addr: addr, W: []byte{0xFD, 0x10}}, // ALL_LED_OFF_H full off
			{Addr: addr, W: []byte{0x00, 0x30}}, // MODE1: SLEEP
			{Addr: addr, W: []byte{0xFD, 0x10}}, // again: ALL_LED_OFF_H full off
			{Addr: addr, W: []byte{0x00, 0x30}}, // again: MODE1 SLEEP
		}, func(d *Dev) error { return errors.Join(d.Halt(), d.Halt()) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: ops(probe(0x11), setup(0x05, leds(nil), []byte{0x05, 0x20, 0x04}), tt.ops), DontPanic: true}
			d, err := New(bus, addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.run(d); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err := bus.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPrescale(t *testing.T) {
	tests := []struct {
		f    physic.Frequency
		want int // -1: out of range
	}{
		{1 * physic.KiloHertz, 5},
		{200 * physic.Hertz, 0x1E}, // the datasheet's example and the power-on value
		{50 * physic.Hertz, 121},
		{24 * physic.Hertz, 253},
		{1526 * physic.Hertz, 3},
		{23 * physic.Hertz, -1},
		{1600 * physic.Hertz, 3}, // rounds to 1526 Hz
		{1800 * physic.Hertz, -1},
		{0, -1},
		{-physic.Hertz, -1},
		{physic.GigaHertz, -1},
	}
	for _, tt := range tests {
		t.Run(tt.f.String(), func(t *testing.T) {
			p, err := prescale(internalOscillator, tt.f)
			if tt.want < 0 {
				if !errors.Is(err, ErrRange) {
					t.Fatalf("prescale = %d, %v; want ErrRange", p, err)
				}
				return
			}
			if err != nil || int(p) != tt.want {
				t.Fatalf("prescale = %d, %v; want %d", p, err, tt.want)
			}
		})
	}
}

// newEmulated is a Dev on an emulated bus with a chip at power-on.
func newEmulated(t *testing.T, opts *Opts) (*Dev, *Emulator, *emu.Bus) {
	t.Helper()
	bus := emu.NewBus("i2c-1", 1)
	chip := NewEmulator()
	bus.Attach(addr, chip)
	d, err := New(bus, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d, chip, bus
}

func checkDuties(t *testing.T, chip *Emulator, want map[int]float64) {
	t.Helper()
	for ch := range Channels {
		if got := chip.Duty(ch); got != want[ch] {
			t.Errorf("channel %d: duty %v, want %v", ch, got, want[ch])
		}
	}
}

func TestArguments(t *testing.T) {
	d, _, bus := newEmulated(t, nil)
	before := bus.Count(addr)
	tests := []struct {
		name string
		run  func() error
	}{
		{"channel -1", func() error { return d.SetDuty(-1, 1) }},
		{"channel 16", func() error { return d.SetDuty(Channels, 1) }},
		{"duty above MaxDuty", func() error { return d.SetDuty(0, MaxDuty+1) }},
		{"duties past LED15", func() error { return d.SetDuties(14, []uint16{1, 2, 3}) }},
		{"23 Hz", func() error { return d.SetFrequency(23 * physic.Hertz) }},
		{"2 kHz", func() error { return d.SetFrequency(2 * physic.KiloHertz) }},
		{"address 0x70", func() error { _, err := New(bus, 0x70, nil); return err }},
		{"address 0x3f", func() error { _, err := New(bus, 0x3f, nil); return err }},
		{"address 0x78", func() error { _, err := New(bus, 0x78, nil); return err }},
		{"oscillator 60 MHz", func() error { _, err := New(bus, addr, &Opts{Oscillator: 60 * physic.MegaHertz}); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, ErrRange) {
				t.Fatalf("got %v, want ErrRange", err)
			}
		})
	}
	if n := bus.Count(addr) - before; n != 0 {
		t.Fatalf("rejected arguments cost %d transactions", n)
	}
	if err := d.SetDuties(3, nil); err != nil {
		t.Fatalf("no duties: %v", err)
	}
}

func TestEmulatedOutputs(t *testing.T) {
	tests := []struct {
		name string
		opts *Opts
		set  map[int]uint16
		want map[int]float64
	}{
		{"default", nil, map[int]uint16{0: 1024, 7: 1, 15: MaxDuty}, map[int]float64{0: 0.25, 7: 1.0 / 4096, 15: 1}},
		{"inverted", &Opts{Invert: true}, map[int]uint16{0: 1024, 1: MaxDuty}, func() map[int]float64 {
			m := map[int]float64{0: 0.75, 1: 0}
			for ch := 2; ch < Channels; ch++ {
				m[ch] = 1 // off channels hold the pin high
			}
			return m
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, chip, _ := newEmulated(t, tt.opts)
			for ch, v := range tt.set {
				if err := d.SetDuty(ch, v); err != nil {
					t.Fatal(err)
				}
			}
			checkDuties(t, chip, tt.want)
		})
	}
}

func TestEmulatedOptions(t *testing.T) {
	tests := []struct {
		opts  *Opts
		mode2 byte
		ps    byte
	}{
		{nil, 0x04, 5},
		{&Opts{OpenDrain: true}, 0x00, 5},
		{&Opts{Invert: true, Frequency: 200 * physic.Hertz}, 0x14, 0x1E},
		{&Opts{Oscillator: 40 * physic.MegaHertz, Frequency: 1526 * physic.Hertz}, 0x04, 5},
	}
	for _, tt := range tests {
		_, chip, _ := newEmulated(t, tt.opts)
		if m1, m2, ps := chip.Register(0x00), chip.Register(0x01), chip.Register(0xFE); m1 != 0x20 || m2 != tt.mode2 || ps != tt.ps {
			t.Errorf("%+v: MODE1 0x%02x MODE2 0x%02x PRE_SCALE %d, want 0x20 0x%02x %d", tt.opts, m1, m2, ps, tt.mode2, tt.ps)
		}
	}
}

func TestSetFrequencyKeepsChannelsRunning(t *testing.T) {
	d, chip, _ := newEmulated(t, nil)
	if err := d.SetDuties(0, []uint16{1024, 2048}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetFrequency(200 * physic.Hertz); err != nil {
		t.Fatal(err)
	}
	if ps := chip.Register(0xFE); ps != 0x1E {
		t.Fatalf("PRE_SCALE %d, want 30", ps)
	}
	if f, cf := d.Frequency(), chip.Frequency(); f != cf || f.String() != "196.888Hz" {
		t.Fatalf("Frequency %s, chip runs at %s", f, cf)
	}
	// Without the RESTART write the channels would stay stopped.
	checkDuties(t, chip, map[int]float64{0: 0.25, 1: 0.5})
	if m := chip.Register(0x00); m != 0x20 {
		t.Fatalf("MODE1 0x%02x, want 0x20", m)
	}
}

func TestChipResetMidRun(t *testing.T) {
	d, chip, bus := newEmulated(t, nil)
	if err := d.SetFrequency(200 * physic.Hertz); err != nil {
		t.Fatal(err)
	}
	if err := d.SetDuty(0, 1024); err != nil {
		t.Fatal(err)
	}
	bus.Reset(addr) // brownout: power-on values, lights dark
	checkDuties(t, chip, nil)
	if m := chip.Register(0x00); m != 0x11 {
		t.Fatalf("MODE1 after reset 0x%02x, want 0x11", m)
	}
	if err := d.SetDuty(1, 2048); err != nil {
		t.Fatal(err)
	}
	checkDuties(t, chip, map[int]float64{0: 0.25, 1: 0.5})
	if m1, ps := chip.Register(0x00), chip.Register(0xFE); m1 != 0x20 || ps != 0x1E {
		t.Fatalf("after recovery MODE1 0x%02x PRE_SCALE %d, want 0x20 30", m1, ps)
	}
}

func TestNACKStorm(t *testing.T) {
	d, chip, bus := newEmulated(t, nil)
	if err := d.SetDuty(2, 3000); err != nil {
		t.Fatal(err)
	}
	bus.Inject(addr, emu.FaultNACK, -1)
	for i := range 20 {
		if err := d.SetDuty(3, uint16(i)); !errors.Is(err, emu.ErrNACK) {
			t.Fatalf("during the storm: %v, want a NACK", err)
		}
	}
	if err := d.SetFrequency(100 * physic.Hertz); !errors.Is(err, emu.ErrNACK) {
		t.Fatalf("SetFrequency during the storm: %v", err)
	}
	bus.Reset(addr) // the storm was a brownout
	bus.Clear(addr)
	if err := d.SetDuty(4, MaxDuty); err != nil {
		t.Fatalf("after the storm: %v", err)
	}
	checkDuties(t, chip, map[int]float64{2: 3000.0 / 4096, 4: 1})
	if d.Frequency() != chip.Frequency() {
		t.Fatalf("Dev says %s, chip runs at %s", d.Frequency(), chip.Frequency())
	}
}

func TestBadBytes(t *testing.T) {
	tests := []struct {
		name  string
		fault emu.Fault
		n     int
		want  error // nil: the driver recovers within the call
	}{
		{"garbled MODE1 read-back", emu.FaultGarbage, 2, nil}, // the write, then the read
		{"garbage", emu.FaultGarbage, -1, ErrVerify},
		{"SDA stuck high", emu.FaultStuck, -1, ErrVerify},
		{"bus error", emu.FaultBusError, 1, emu.ErrBusError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, chip, bus := newEmulated(t, nil)
			bus.Inject(addr, tt.fault, tt.n)
			err := d.SetDuty(5, 100)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			bus.Clear(addr)
			if err := d.SetDuty(6, 200); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
			checkDuties(t, chip, map[int]float64{5: 100.0 / 4096, 6: 200.0 / 4096})
		})
	}
}

func TestNewOnFaultyBus(t *testing.T) {
	tests := []struct {
		name  string
		fault emu.Fault
		want  error
	}{
		{"unplugged", emu.FaultNACK, emu.ErrNACK},
		{"SDA stuck high", emu.FaultStuck, ErrNotPCA9685},
		{"garbage", emu.FaultGarbage, ErrNotPCA9685}, // ALL_LED_OFF_H reads 0; a flipped bit cannot
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := emu.NewBus("i2c-1", 7)
			bus.Attach(addr, NewEmulator())
			bus.Inject(addr, tt.fault, -1)
			if d, err := New(bus, addr, nil); d != nil || !errors.Is(err, tt.want) {
				t.Fatalf("New = %v, %v; want %v", d, err, tt.want)
			}
		})
	}
}

func TestHaltThenResume(t *testing.T) {
	d, chip, _ := newEmulated(t, nil)
	if err := d.SetDuties(0, []uint16{100, 200, 300}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := d.Halt(); err != nil {
			t.Fatal(err)
		}
		if m := chip.Register(0x00); m != 0x30 {
			t.Fatalf("MODE1 after Halt 0x%02x, want SLEEP set, RESTART clear", m)
		}
		checkDuties(t, chip, nil)
	}
	if err := d.SetDuty(9, MaxDuty); err != nil {
		t.Fatal(err)
	}
	checkDuties(t, chip, map[int]float64{9: 1})
	if err := d.AllOff(); err != nil {
		t.Fatal(err)
	}
	checkDuties(t, chip, nil)
}

func TestConcurrentUse(t *testing.T) {
	d, chip, bus := newEmulated(t, nil)
	var wg sync.WaitGroup
	for ch := range Channels {
		wg.Go(func() {
			for i := range 10 {
				if err := d.SetDuty(ch, uint16(256*ch+i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		if err := d.SetFrequency(500 * physic.Hertz); err != nil {
			t.Error(err)
		}
		bus.Reset(addr)
	})
	wg.Wait()
	if err := d.Reinit(); err != nil {
		t.Fatal(err)
	}
	want := map[int]float64{}
	for ch := range Channels {
		want[ch] = float64(256*ch+9) / 4096
	}
	checkDuties(t, chip, want)
}

func TestString(t *testing.T) {
	d, _, _ := newEmulated(t, nil)
	if got := d.String(); got != "PCA9685{i2c-1, 0x40}" {
		t.Fatal(got)
	}
}
