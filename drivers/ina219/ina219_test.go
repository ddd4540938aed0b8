package ina219

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/internal/testclock"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name   string
		opts   Opts
		lsb    physic.ElectricCurrent
		cal    uint16
		config uint16
	}{
		{"UPS HAT default", DefaultOpts, 100 * physic.MicroAmpere, 4096, 0x3DDF},
		{"INA219 400mA on PGA /1, 16V", Opts{Shunt: 100 * physic.MilliOhm, MaxCurrent: 400 * physic.MilliAmpere, MaxBus: 12 * physic.Volt},
			20 * physic.MicroAmpere, 20480, 0x05DF},
		{"INA219 one-shot", Opts{Shunt: 100 * physic.MilliOhm, MaxCurrent: 1 * physic.Ampere, OneShot: true},
			50 * physic.MicroAmpere, 8192, 0x35DB},
		// 5 mΩ and 2 A drop 10 mV: the minimum LSB would need Cal > 0xFFFE.
		{"INA219 small drop coarsens the LSB", Opts{Shunt: 5 * physic.MilliOhm, MaxCurrent: 2 * physic.Ampere},
			200 * physic.MicroAmpere, 40960, 0x25DF},
		// 30 mΩ and 3 A drop 90 mV: PGA /4. Cal 13653 is odd; FS0 reads 0.
		{"INA219 odd Cal loses FS0", Opts{Shunt: 30 * physic.MilliOhm, MaxCurrent: 3 * physic.Ampere},
			100 * physic.MicroAmpere, 13652, 0x35DF},
		// TI's SBOS547B example: 2 mΩ, 15 A; 457.7 µA rounds up to 500 µA.
		{"INA226 TI example", Opts{Variant: INA226, Shunt: 2 * physic.MilliOhm, MaxCurrent: 15 * physic.Ampere},
			500 * physic.MicroAmpere, 5120, 0x4327},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := plan(&tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if s.lsb != tt.lsb || s.cal != tt.cal || s.config != tt.config {
				t.Fatalf("LSB %s, Cal %d, config 0x%04x; want %s, %d, 0x%04x", s.lsb, s.cal, s.config, tt.lsb, tt.cal, tt.config)
			}
		})
	}
	bad := map[string]Opts{
		"no shunt":          {MaxCurrent: physic.Ampere},
		"no current":        {Shunt: physic.Ohm},
		"INA219 over 320mV": {Shunt: 100 * physic.MilliOhm, MaxCurrent: 4 * physic.Ampere},
		"INA226 over 82mV":  {Variant: INA226, Shunt: 100 * physic.MilliOhm, MaxCurrent: physic.Ampere},
		"unknown variant":   {Variant: 7, Shunt: physic.Ohm, MaxCurrent: physic.MilliAmpere},
		"shunt too large":   {Shunt: 100 * physic.MegaOhm, MaxCurrent: physic.NanoAmpere},
	}
	for name, o := range bad {
		t.Run(name, func(t *testing.T) {
			if s, err := plan(&o); err == nil {
				t.Fatalf("accepted: %+v", s)
			}
		})
	}
}

// newINA219 is what New sends an INA219 at 0x42 with DefaultOpts.
func newINA219() []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: 0x42, W: []byte{0x00, 0x80, 0x00}},            // configuration: RST
		{Addr: 0x42, W: []byte{0x00}, R: []byte{0x39, 0x9F}}, // configuration reads its power-on value: an INA219
		{Addr: 0x42, W: []byte{0x05, 0x10, 0x00}},            // calibration 4096: 100 µA LSB with 0.1 Ω
		{Addr: 0x42, W: []byte{0x00, 0x3D, 0xDF}},            // configuration: 32 V, /8, 12 bits ×8, continuous
	}
}

// newINA226 is what New sends an INA226 at 0x40 with a 2 mΩ shunt and 15 A.
func newINA226() []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: 0x40, W: []byte{0xFE}, R: []byte{0x54, 0x49}}, // manufacturer ID: TI
		{Addr: 0x40, W: []byte{0xFF}, R: []byte{0x22, 0x60}}, // die ID 0x226, revision 0
		{Addr: 0x40, W: []byte{0x05, 0x14, 0x00}},            // calibration 5120: 500 µA LSB with 2 mΩ
		{Addr: 0x40, W: []byte{0x00, 0x43, 0x27}},            // configuration: 4 samples of 1.1 ms, continuous
	}
}

var opts226 = Opts{Variant: INA226, Shunt: 2 * physic.MilliOhm, MaxCurrent: 15 * physic.Ampere}

func TestNewPlayback(t *testing.T) {
	tests := []struct {
		name string
		addr uint16
		opts Opts
		ops  []i2ctest.IO
		want error
	}{
		{"INA219", 0x42, DefaultOpts, newINA219(), nil},
		{"INA226", 0x40, opts226, newINA226(), nil},
		{"INA219 that does not reset", 0x42, DefaultOpts, []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x00, 0x80, 0x00}},            // configuration: RST
			{Addr: 0x42, W: []byte{0x00}, R: []byte{0x41, 0x27}}, // an INA226's power-on configuration
		}, ErrIdentity},
		{"INA226 with another die", 0x40, opts226, []i2ctest.IO{
			{Addr: 0x40, W: []byte{0xFE}, R: []byte{0x54, 0x49}}, // manufacturer ID: TI
			{Addr: 0x40, W: []byte{0xFF}, R: []byte{0x22, 0x70}}, // die ID 0x227: an INA227
		}, ErrIdentity},
		{"INA226 stuck bus", 0x40, opts226, []i2ctest.IO{
			{Addr: 0x40, W: []byte{0xFE}, R: []byte{0xFF, 0xFF}}, // manufacturer ID: SDA held high
			{Addr: 0x40, W: []byte{0xFF}, R: []byte{0xFF, 0xFF}}, // die ID: SDA held high
		}, ErrIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			d, err := New(pb, tt.addr, &tt.opts)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("New: %v, want %v", err, tt.want)
			}
			if (d == nil) == (err == nil) {
				t.Fatalf("New returned %v and %v", d, err)
			}
			if err := pb.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSensePlayback(t *testing.T) {
	r8V := Reading{Bus: 8 * physic.Volt, Shunt: 50 * physic.MilliVolt, Current: 500 * physic.MilliAmpere, Power: 4 * physic.Watt}
	tests := []struct {
		name   string
		opts   Opts
		new    []i2ctest.IO
		ops    []i2ctest.IO
		want   Reading
		err    error
		recals int
		sleeps int
	}{
		{"first reading waits for a conversion", DefaultOpts, newINA219(), []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x80}}, // bus 2000 × 4 mV, CNVR clear: still converting
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V, CNVR set
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 5000 × 10 µV
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x13, 0x88}}, // current 5000 × 100 µA
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x07, 0xD0}}, // power 2000 × 2 mW; clears CNVR
		}, r8V, nil, 0, 1},
		{"INA226 worked example", opts226, newINA226(), []i2ctest.IO{
			{Addr: 0x40, W: []byte{0x06}, R: []byte{0x00, 0x08}}, // mask/enable: CVRF
			{Addr: 0x40, W: []byte{0x02}, R: []byte{0x25, 0x70}}, // bus 9584 × 1.25 mV
			{Addr: 0x40, W: []byte{0x01}, R: []byte{0x1F, 0x40}}, // shunt 8000 × 2.5 µV
			{Addr: 0x40, W: []byte{0x04}, R: []byte{0x4E, 0x20}}, // current 20000 × 500 µA
			{Addr: 0x40, W: []byte{0x03}, R: []byte{0x25, 0x70}}, // power 9584 × 12.5 mW
		}, Reading{Bus: 11980 * physic.MilliVolt, Shunt: 20 * physic.MilliVolt, Current: 10 * physic.Ampere, Power: 119800 * physic.MilliWatt}, nil, 0, 0},
		{"discharging", DefaultOpts, newINA219(), []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3A, 0x9A}}, // bus 1875 × 4 mV, CNVR set
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0xF8, 0x30}}, // shunt -2000 × 10 µV
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0xF8, 0x30}}, // current -2000 × 100 µA
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x02, 0xEE}}, // power 750 × 2 mW
		}, Reading{Bus: 7500 * physic.MilliVolt, Shunt: -20 * physic.MilliVolt, Current: -200 * physic.MilliAmpere, Power: 1500 * physic.MilliWatt}, nil, 0, 0},
		{"no current checks the calibration", DefaultOpts, newINA219(), []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V, CNVR set
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x00, 0x00}}, // shunt 0
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x00, 0x00}}, // current 0
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x00, 0x00}}, // power 0
			{Addr: 0x42, W: []byte{0x05}, R: []byte{0x10, 0x00}}, // calibration still 4096: really no current
		}, Reading{Bus: 8 * physic.Volt}, nil, 0, 0},
		{"recalibrates after a reset", DefaultOpts, newINA219(), []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V, CNVR set
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 50 mV
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x00, 0x00}}, // current 0 despite the shunt voltage
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x00, 0x00}}, // power 0
			{Addr: 0x42, W: []byte{0x05}, R: []byte{0x00, 0x00}}, // calibration 0: the chip was reset
			{Addr: 0x42, W: []byte{0x05, 0x10, 0x00}},            // calibration 4096 again
			{Addr: 0x42, W: []byte{0x00, 0x3D, 0xDF}},            // configuration again: starts a conversion
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x80}}, // bus 8 V, CNVR clear: converting
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V, CNVR set
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 50 mV
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x13, 0x88}}, // current 500 mA
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x07, 0xD0}}, // power 4 W
		}, r8V, nil, 1, 1},
		{"math overflow", DefaultOpts, newINA219(), []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x83}}, // bus 8 V, CNVR and OVF set
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x7D, 0x00}}, // shunt 32000: full scale
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x7F, 0xFF}}, // current clipped
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0xFF, 0xFF}}, // power clipped
		}, Reading{}, ErrOverflow, 0, 0},
		{"shunt at full scale", DefaultOpts, newINA219(), []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V, CNVR set
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x83, 0x00}}, // shunt -32000: the PGA's end
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x83, 0x00}}, // current -32000
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x7D, 0x00}}, // power 32000
		}, Reading{}, ErrOverflow, 0, 0},
		{"no conversion ever completes", DefaultOpts, newINA219(), []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x00, 0x00}}, // bus: CNVR clear
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x00, 0x00}}, // bus: CNVR clear after a conversion time
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x00, 0x00}}, // bus: CNVR clear after two
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x00, 0x00}}, // bus: CNVR clear after three: give up
		}, Reading{}, ErrNotReady, 0, 3},
		{"garbled three times", DefaultOpts, newINA219(), []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 5000
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x1B, 0x88}}, // current 7048: a bit flipped
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x07, 0xD0}}, // power 2000
			{Addr: 0x42, W: []byte{0x05}, R: []byte{0x10, 0x00}}, // calibration 4096: not a reset
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x86}}, // bus with the unused bit 2 set
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 5000
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x13, 0x88}}, // current 5000
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x07, 0xD0}}, // power 2000
			{Addr: 0x42, W: []byte{0x05}, R: []byte{0x10, 0x00}}, // calibration 4096
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 5000
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x13, 0x88}}, // current 5000
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x27, 0xD0}}, // power 10192: a bit flipped
			{Addr: 0x42, W: []byte{0x05}, R: []byte{0x10, 0x00}}, // calibration 4096
		}, Reading{}, ErrGarbled, 0, 0},
		{"garbled once, then clean", DefaultOpts, newINA219(), []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 5000
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x13, 0x88}}, // current 5000
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x07, 0x50}}, // power 1872: a bit flipped
			{Addr: 0x42, W: []byte{0x05}, R: []byte{0x10, 0x00}}, // calibration 4096
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x80}}, // bus 8 V
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 5000
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x13, 0x88}}, // current 5000
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x07, 0xD0}}, // power 2000
		}, r8V, nil, 0, 0},
		{"one-shot triggers each reading", Opts{Shunt: 100 * physic.MilliOhm, MaxCurrent: 1 * physic.Ampere, OneShot: true}, []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x00, 0x80, 0x00}},            // configuration: RST
			{Addr: 0x42, W: []byte{0x00}, R: []byte{0x39, 0x9F}}, // power-on configuration
			{Addr: 0x42, W: []byte{0x05, 0x20, 0x00}},            // calibration 8192: 50 µA LSB
			{Addr: 0x42, W: []byte{0x00, 0x35, 0xDB}},            // configuration: 32 V, /4, shunt and bus triggered
		}, []i2ctest.IO{
			{Addr: 0x42, W: []byte{0x00, 0x35, 0xDB}},            // configuration: trigger a conversion
			{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V, CNVR set
			{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 50 mV
			{Addr: 0x42, W: []byte{0x04}, R: []byte{0x27, 0x10}}, // current 10000 × 50 µA
			{Addr: 0x42, W: []byte{0x03}, R: []byte{0x0F, 0xA0}}, // power 4000 × 1 mW
		}, r8V, nil, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := &i2ctest.Playback{Ops: append(tt.new, tt.ops...), DontPanic: true}
			d, err := New(pb, pb.Ops[0].Addr, &tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			sleeps := 0
			d.sleep = func(time.Duration) { sleeps++ }
			got, err := d.Sense()
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Sense: %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("Sense = %+v, want %+v", got, tt.want)
			}
			if d.Recalibrations() != tt.recals || sleeps != tt.sleeps {
				t.Fatalf("%d recalibrations and %d sleeps, want %d and %d", d.Recalibrations(), sleeps, tt.recals, tt.sleeps)
			}
			if err := pb.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHaltPlayback(t *testing.T) {
	pb := &i2ctest.Playback{Ops: append(newINA219(),
		i2ctest.IO{Addr: 0x42, W: []byte{0x00, 0x3D, 0xD8}},            // configuration: power-down
		i2ctest.IO{Addr: 0x42, W: []byte{0x00, 0x3D, 0xDF}},            // configuration: continuous again
		i2ctest.IO{Addr: 0x42, W: []byte{0x02}, R: []byte{0x3E, 0x82}}, // bus 8 V, CNVR set
		i2ctest.IO{Addr: 0x42, W: []byte{0x01}, R: []byte{0x13, 0x88}}, // shunt 50 mV
		i2ctest.IO{Addr: 0x42, W: []byte{0x04}, R: []byte{0x13, 0x88}}, // current 500 mA
		i2ctest.IO{Addr: 0x42, W: []byte{0x03}, R: []byte{0x07, 0xD0}}, // power 4 W
	), DontPanic: true}
	d, err := New(pb, 0x42, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := d.Halt(); err != nil {
			t.Fatalf("Halt %d: %v", i, err)
		}
	}
	if _, err := d.Sense(); err != nil {
		t.Fatalf("Sense after Halt: %v", err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
	if got := d.String(); got != "INA219{playback(66)}" {
		t.Fatalf("String() = %q", got)
	}
}

type rig struct {
	bus  *emu.Bus
	chip *Emulator
	dev  *Dev
	clk  *testclock.Clock
	addr uint16
}

func newRig(t *testing.T, o Opts, seed uint64) *rig {
	t.Helper()
	r := &rig{bus: emu.NewBus("i2c-1", seed), chip: NewEmulator(o.Variant, o.Shunt), clk: testclock.New(time.Unix(1e9, 0)), addr: 0x42}
	r.chip.SetClock(r.clk.Now)
	r.bus.Attach(r.addr, r.chip)
	var err error
	if r.dev, err = New(r.bus, r.addr, &o); err != nil {
		t.Fatal(err)
	}
	r.dev.sleep = r.clk.Sleep
	return r
}

// near reports whether a reading matches the world within a few LSBs.
func near(t *testing.T, got Reading, bus physic.ElectricPotential, i physic.ElectricCurrent, lsb physic.ElectricCurrent) bool {
	t.Helper()
	d := got.Bus - bus
	c := got.Current - i
	return d <= 4*physic.MilliVolt && d >= -4*physic.MilliVolt && c <= 2*lsb && c >= -2*lsb
}

func TestSenseEmulated(t *testing.T) {
	tests := []struct {
		name string
		opts Opts
		bus  physic.ElectricPotential
		i    physic.ElectricCurrent
	}{
		{"UPS HAT charging", DefaultOpts, 8400 * physic.MilliVolt, 1200 * physic.MilliAmpere},
		{"UPS HAT discharging", DefaultOpts, 7200 * physic.MilliVolt, -2500 * physic.MilliAmpere},
		{"UPS HAT idle", DefaultOpts, 8 * physic.Volt, 0},
		{"INA219 16 V range", Opts{Shunt: 100 * physic.MilliOhm, MaxCurrent: 400 * physic.MilliAmpere, MaxBus: 12 * physic.Volt}, 5 * physic.Volt, 123 * physic.MilliAmpere},
		{"INA219 one-shot", Opts{Shunt: 100 * physic.MilliOhm, MaxCurrent: 2 * physic.Ampere, OneShot: true}, 5100 * physic.MilliVolt, 700 * physic.MilliAmpere},
		{"INA226", opts226, 12 * physic.Volt, 10 * physic.Ampere},
		{"INA226 reverse", opts226, 24 * physic.Volt, -3 * physic.Ampere},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.opts, 1)
			r.chip.SetBus(tt.bus)
			r.chip.SetCurrent(tt.i)
			for n := 0; n < 3; n++ {
				got, err := r.dev.Sense()
				if err != nil {
					t.Fatal(err)
				}
				if !near(t, got, tt.bus, tt.i, r.dev.lsb) {
					t.Fatalf("Sense = %+v; world %s, %s", got, tt.bus, tt.i)
				}
				r.clk.Sleep(time.Second)
			}
			if cal, cfg := r.chip.Register(byte(regCalibration)), r.chip.Register(byte(regConfig)); cal != r.dev.cal || cfg != r.dev.config {
				t.Fatalf("chip holds Cal %d, config 0x%04x; want %d, 0x%04x", cal, cfg, r.dev.cal, r.dev.config)
			}
		})
	}
}

func TestResetMidRun(t *testing.T) {
	for _, o := range []Opts{DefaultOpts, opts226} {
		for _, i := range []physic.ElectricCurrent{750 * physic.MilliAmpere, 0} {
			t.Run(o.Variant.String()+" "+i.String(), func(t *testing.T) {
				r := newRig(t, o, 1)
				r.chip.SetBus(8 * physic.Volt)
				r.chip.SetCurrent(i)
				if _, err := r.dev.Sense(); err != nil {
					t.Fatal(err)
				}
				r.clk.Sleep(time.Second)
				if !r.bus.Reset(r.addr) {
					t.Fatal("no chip to reset")
				}
				if cal := r.chip.Register(byte(regCalibration)); cal != 0 {
					t.Fatalf("calibration 0x%04x after a reset", cal)
				}
				r.clk.Sleep(time.Second) // the chip converts with its power-on settings
				got, err := r.dev.Sense()
				if err != nil {
					t.Fatal(err)
				}
				if !near(t, got, 8*physic.Volt, i, r.dev.lsb) {
					t.Fatalf("after a reset Sense = %+v", got)
				}
				if r.dev.Recalibrations() != 1 {
					t.Fatalf("%d recalibrations, want 1", r.dev.Recalibrations())
				}
				if cal, cfg := r.chip.Register(byte(regCalibration)), r.chip.Register(byte(regConfig)); cal != r.dev.cal || cfg != r.dev.config {
					t.Fatalf("chip holds Cal %d, config 0x%04x; want %d, 0x%04x", cal, cfg, r.dev.cal, r.dev.config)
				}
			})
		}
	}
}

func TestNACKStorm(t *testing.T) {
	r := newRig(t, DefaultOpts, 1)
	r.chip.SetBus(8 * physic.Volt)
	r.chip.SetCurrent(physic.Ampere)
	if _, err := r.dev.Sense(); err != nil {
		t.Fatal(err)
	}
	r.bus.Inject(r.addr, emu.FaultNACK, -1)
	for n := 0; n < 20; n++ {
		if _, err := r.dev.Sense(); !errors.Is(err, emu.ErrNACK) {
			t.Fatalf("Sense %d in the storm: %v", n, err)
		}
	}
	r.bus.Reset(r.addr) // the storm was a brownout
	r.bus.Clear(r.addr)
	r.clk.Sleep(time.Second)
	got, err := r.dev.Sense()
	if err != nil || !near(t, got, 8*physic.Volt, physic.Ampere, r.dev.lsb) {
		t.Fatalf("after the storm: %+v, %v", got, err)
	}
	if r.dev.Recalibrations() != 1 {
		t.Fatalf("%d recalibrations, want 1", r.dev.Recalibrations())
	}
}

func TestNoisyBus(t *testing.T) {
	for _, o := range []Opts{DefaultOpts, opts226} {
		t.Run(o.Variant.String(), func(t *testing.T) {
			r := newRig(t, o, 7)
			bus, i := 7800*physic.MilliVolt, 1500*physic.MilliAmpere
			r.chip.SetBus(bus)
			r.chip.SetCurrent(i)
			if _, err := r.dev.Sense(); err != nil {
				t.Fatal(err)
			}
			r.bus.Inject(r.addr, emu.FaultGarbage, -1)
			failed := 0
			for n := 0; n < 200; n++ {
				got, err := r.dev.Sense()
				switch {
				case errors.Is(err, ErrGarbled) || errors.Is(err, ErrOverflow):
					failed++
				case err != nil:
					t.Fatalf("Sense %d: %v", n, err)
				case !near(t, got, bus, i, r.dev.lsb):
					t.Fatalf("Sense %d returned a corrupted reading: %+v", n, got)
				}
			}
			if failed < 190 {
				t.Fatalf("only %d of 200 garbled reads were caught", failed)
			}
			r.bus.Inject(r.addr, emu.FaultStuck, -1)
			if _, err := r.dev.Sense(); !errors.Is(err, ErrGarbled) {
				t.Fatalf("SDA stuck high: %v", err)
			}
			r.bus.Clear(r.addr)
			if got, err := r.dev.Sense(); err != nil || !near(t, got, bus, i, r.dev.lsb) {
				t.Fatalf("clean bus again: %+v, %v", got, err)
			}
		})
	}
}

func TestNotReady(t *testing.T) {
	r := newRig(t, DefaultOpts, 1)
	r.dev.sleep = func(time.Duration) {} // time stands still: no conversion finishes
	if _, err := r.dev.Sense(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Sense: %v", err)
	}
	r.dev.sleep = r.clk.Sleep
	if _, err := r.dev.Sense(); err != nil {
		t.Fatalf("once time moves: %v", err)
	}
}

func TestHaltStopsConversions(t *testing.T) {
	r := newRig(t, opts226, 1)
	r.chip.SetBus(12 * physic.Volt)
	r.chip.SetCurrent(2 * physic.Ampere)
	if _, err := r.dev.Sense(); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 2; n++ {
		if err := r.dev.Halt(); err != nil {
			t.Fatal(err)
		}
	}
	if mode := r.chip.Register(byte(regConfig)) & cfgMode; mode != modePowerDown {
		t.Fatalf("mode %d after Halt", mode)
	}
	before := r.chip.Register(byte(regCurrent))
	r.chip.SetCurrent(5 * physic.Ampere)
	r.clk.Sleep(time.Second)
	if after := r.chip.Register(byte(regCurrent)); after != before {
		t.Fatalf("current register went from %d to %d while powered down", before, after)
	}
	got, err := r.dev.Sense()
	if err != nil || !near(t, got, 12*physic.Volt, 5*physic.Ampere, r.dev.lsb) {
		t.Fatalf("Sense after Halt: %+v, %v", got, err)
	}
}

func TestNewEmulated(t *testing.T) {
	bus := emu.NewBus("i2c-1", 1)
	bus.Attach(0x40, NewEmulator(INA219, 100*physic.MilliOhm))
	bus.Attach(0x41, NewEmulator(INA226, 2*physic.MilliOhm))
	tests := []struct {
		name string
		addr uint16
		opts Opts
		want error
	}{
		{"nothing there", 0x44, DefaultOpts, emu.ErrNACK},
		{"INA226 where an INA219 is", 0x40, opts226, ErrIdentity},
		{"INA219 where an INA226 is", 0x41, DefaultOpts, ErrIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d, err := New(bus, tt.addr, &tt.opts); !errors.Is(err, tt.want) || d != nil {
				t.Fatalf("New = %v, %v; want %v", d, err, tt.want)
			}
		})
	}
	if _, err := New(bus, 0x36, nil); err == nil {
		t.Fatal("accepted address 0x36")
	}
}

func TestConcurrentUse(t *testing.T) {
	r := newRig(t, DefaultOpts, 1)
	r.chip.SetBus(8 * physic.Volt)
	r.chip.SetCurrent(physic.Ampere)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 50; n++ {
				if _, err := r.dev.Sense(); err != nil {
					t.Error(err)
					return
				}
				_ = r.dev.Recalibrations()
				if g == 0 && n == 25 {
					r.bus.Reset(r.addr)
				}
			}
		}(g)
	}
	wg.Wait()
	if n := r.dev.Recalibrations(); n != 1 {
		t.Fatalf("%d recalibrations after a reset", n)
	}
}
