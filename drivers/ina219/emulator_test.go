package ina219

import (
	"testing"
	"time"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/internal/testclock"
	"periph.io/x/conn/v3/physic"
)

// bench is an emulator alone on a bus, on a clock that moves only when told.
type bench struct {
	t    *testing.T
	bus  *emu.Bus
	chip *Emulator
	clk  *testclock.Clock
}

func newBench(t *testing.T, v Variant, shunt physic.ElectricResistance) *bench {
	b := &bench{t: t, bus: emu.NewBus("i2c-1", 1), chip: NewEmulator(v, shunt), clk: testclock.New(time.Unix(1e9, 0))}
	b.chip.SetClock(b.clk.Now)
	b.bus.Attach(0x40, b.chip)
	return b
}

func (b *bench) write(r reg, v uint16) {
	b.t.Helper()
	if err := b.bus.Tx(0x40, []byte{byte(r), byte(v >> 8), byte(v)}, nil); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bench) read(r reg) uint16 {
	b.t.Helper()
	var v [2]byte
	if err := b.bus.Tx(0x40, []byte{byte(r)}, v[:]); err != nil {
		b.t.Fatal(err)
	}
	return uint16(v[0])<<8 | uint16(v[1])
}

func TestEmulatorPowerOn(t *testing.T) {
	tests := []struct {
		v    Variant
		regs map[reg]uint16
	}{
		{INA219, map[reg]uint16{regConfig: 0x399F, regShunt: 0, regBus: 0, regPower: 0, regCurrent: 0, regCalibration: 0}},
		{INA226, map[reg]uint16{regConfig: 0x4127, regShunt: 0, regBus: 0, regPower: 0, regCurrent: 0, regCalibration: 0,
			regMaskEnable: 0, regAlertLimit: 0, regMfrID: 0x5449, regDieID: 0x2260}},
	}
	for _, tt := range tests {
		t.Run(tt.v.String(), func(t *testing.T) {
			b := newBench(t, tt.v, 100*physic.MilliOhm)
			b.write(regCalibration, 0x1000)
			b.write(regConfig, 0x0000)
			b.bus.Reset(0x40)
			for r, want := range tt.regs {
				if got := b.read(r); got != want {
					t.Errorf("%s register after a power-on reset: 0x%04x, want 0x%04x", r, got, want)
				}
			}
		})
	}
}

func TestEmulatorRegisterAccess(t *testing.T) {
	tests := []struct {
		name  string
		v     Variant
		r     reg
		write uint16
		want  uint16
	}{
		{"INA219 configuration bit 14 unused", INA219, regConfig, 0x7FFF, 0x3FFF},
		{"INA219 calibration FS0 void", INA219, regCalibration, 0x1235, 0x1234},
		{"INA219 shunt read-only", INA219, regShunt, 0x1234, 0},
		{"INA219 bus read-only", INA219, regBus, 0x1234, 0},
		{"INA219 current read-only", INA219, regCurrent, 0x1234, 0},
		{"INA219 power read-only", INA219, regPower, 0x1234, 0},
		{"INA226 configuration bits 14-12 fixed", INA226, regConfig, 0x0000, 0x4000},
		{"INA226 calibration bit 15 reserved", INA226, regCalibration, 0xFFFF, 0x7FFF},
		{"INA226 mask/enable flags read-only", INA226, regMaskEnable, 0xFFFF, 0xFC03},
		{"INA226 alert limit", INA226, regAlertLimit, 0xABCD, 0xABCD},
		{"INA226 die ID read-only", INA226, regDieID, 0x1234, 0x2260},
		{"INA226 mode power-down", INA226, regConfig, 0x4120, 0x4120},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBench(t, tt.v, 100*physic.MilliOhm)
			b.write(tt.r, tt.write)
			if got := b.read(tt.r); got != tt.want {
				t.Fatalf("wrote 0x%04x, read 0x%04x; want 0x%04x", tt.write, got, tt.want)
			}
			if got := b.chip.Register(byte(tt.r)); got != tt.want {
				t.Fatalf("Register = 0x%04x, want 0x%04x", got, tt.want)
			}
		})
	}
}

func TestEmulatorPointer(t *testing.T) {
	b := newBench(t, INA219, 100*physic.MilliOhm)
	b.write(regCalibration, 0xA0B0)
	if err := b.bus.Tx(0x40, []byte{byte(regConfig)}, nil); err != nil { // pointer only
		t.Fatal(err)
	}
	var r [4]byte
	if err := b.bus.Tx(0x40, nil, r[:]); err != nil { // read at the pointer
		t.Fatal(err)
	}
	if r != [4]byte{0x39, 0x9F, 0x39, 0x9F} {
		t.Fatalf("read % x at the configuration pointer, want it twice", r)
	}
	b.write(regConfig, cfgReset)
	if got := b.read(regCalibration); got != 0 {
		t.Fatalf("RST left calibration at 0x%04x", got)
	}
	if got := b.read(regConfig); got != porConfig219 {
		t.Fatalf("RST left configuration at 0x%04x", got)
	}
}

// TestEmulatorWorkedExample replays the INA226 datasheet's
// configure/measure/calculate example: 10 A through 2 mΩ at 12 V,
// Current_LSB 1 mA.
func TestEmulatorWorkedExample(t *testing.T) {
	b := newBench(t, INA226, 2*physic.MilliOhm)
	b.write(regCalibration, 0x0A00) // 2560
	b.chip.SetCurrent(10 * physic.Ampere)
	b.chip.SetBus(11980 * physic.MilliVolt)
	b.clk.Sleep(2199 * time.Microsecond) // one sample of 1.1 ms each for shunt and bus
	if me := b.read(regMaskEnable); me&me226CVRF != 0 || b.read(regCurrent) != 0 {
		t.Fatalf("conversion done early: mask/enable 0x%04x", me)
	}
	b.clk.Sleep(time.Microsecond)
	want := map[reg]uint16{regShunt: 0x1F40, regBus: 0x2570, regCurrent: 0x2710, regPower: 0x12B8}
	for r, v := range want {
		if got := b.read(r); got != v {
			t.Errorf("%s register 0x%04x, want 0x%04x", r, got, v)
		}
	}
	if me := b.read(regMaskEnable); me&me226CVRF == 0 {
		t.Fatal("CVRF clear after a conversion")
	}
	if me := b.read(regMaskEnable); me&me226CVRF != 0 {
		t.Fatal("reading mask/enable left CVRF set")
	}
}

func TestEmulatorConversionReady(t *testing.T) {
	b := newBench(t, INA219, 100*physic.MilliOhm)
	b.write(regCalibration, 4096)
	b.chip.SetBus(5 * physic.Volt)
	b.chip.SetCurrent(250 * physic.MilliAmpere)
	const period = 1064 * time.Microsecond // 12-bit shunt and bus at power-on
	cnvr := func() bool { return b.read(regBus)&bus219CNVR != 0 }
	steps := []struct {
		what string
		do   func()
		want bool
	}{
		{"at power-on", func() {}, false},
		{"after one period", func() { b.clk.Sleep(period) }, true},
		{"reading the bus register", func() {}, true},
		{"reading power", func() { b.read(regPower) }, false},
		{"next period", func() { b.clk.Sleep(period) }, true},
		{"writing a converting mode", func() { b.write(regConfig, porConfig219) }, false},
		{"its conversion done", func() { b.clk.Sleep(period) }, true},
		{"power-down keeps the flag", func() { b.write(regConfig, porConfig219&^cfgMode) }, true},
		{"reading power while down", func() { b.read(regPower) }, false},
		{"no conversions while down", func() { b.clk.Sleep(time.Second) }, false},
		{"triggered", func() { b.write(regConfig, porConfig219&^cfgMode|modeBothTrig) }, false},
		{"triggered conversion done", func() { b.clk.Sleep(period) }, true},
		{"reading power after it", func() { b.read(regPower) }, false},
		{"triggered converts once", func() { b.clk.Sleep(time.Second) }, false},
	}
	for _, s := range steps {
		s.do()
		if got := cnvr(); got != s.want {
			t.Fatalf("%s: CNVR %v, want %v", s.what, got, s.want)
		}
	}
	if got := b.read(regCurrent); got != 2500 {
		t.Fatalf("current register %d, want 25 mV × 4096 / 4096 / 10 µV = 2500", got)
	}
	b.chip.SetCurrent(-250 * physic.MilliAmpere)
	b.clk.Sleep(time.Second)
	if got := int16(b.read(regCurrent)); got != 2500 {
		t.Fatalf("triggered mode converted again without a trigger: %d", got)
	}
	b.write(regConfig, porConfig219&^cfgMode|modeBothTrig)
	b.clk.Sleep(period)
	if got := int16(b.read(regCurrent)); got != -2500 {
		t.Fatalf("after a trigger current is %d, want -2500", got)
	}
}

func TestEmulatorLimits(t *testing.T) {
	tests := []struct {
		name      string
		config    uint16
		cal       uint16
		i         physic.ElectricCurrent
		bus       physic.ElectricPotential
		shunt     int16
		busReg    uint16
		overflown bool
	}{
		{"in range", 0x399F, 4096, physic.Ampere, 12 * physic.Volt, 10000, 3000<<3 | bus219CNVR, false},
		{"shunt clipped by PGA /1", 0x219F, 4096, physic.Ampere, 12 * physic.Volt, 4000, 3000<<3 | bus219CNVR, false},
		{"shunt clipped by PGA /8", 0x399F, 4096, -4 * physic.Ampere, 12 * physic.Volt, -32000, 3000<<3 | bus219CNVR, false},
		{"bus clipped by the 16 V range", 0x199F, 4096, physic.Ampere, 20 * physic.Volt, 10000, 4000<<3 | bus219CNVR, false},
		{"current overflows", 0x399F, 0xFFFE, 3 * physic.Ampere, 5 * physic.Volt, 30000, 1250<<3 | bus219CNVR | bus219OVF, true},
		{"no calibration, no current", 0x399F, 0, physic.Ampere, 5 * physic.Volt, 10000, 1250<<3 | bus219CNVR, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBench(t, INA219, 100*physic.MilliOhm)
			b.write(regCalibration, tt.cal)
			b.write(regConfig, tt.config)
			b.chip.SetCurrent(tt.i)
			b.chip.SetBus(tt.bus)
			b.clk.Sleep(time.Second)
			if got := int16(b.read(regShunt)); got != tt.shunt {
				t.Errorf("shunt %d, want %d", got, tt.shunt)
			}
			if got := b.read(regBus); got != tt.busReg {
				t.Errorf("bus 0x%04x, want 0x%04x", got, tt.busReg)
			}
			cur := int64(int16(b.read(regCurrent)))
			if want := int64(tt.shunt) * int64(tt.cal&^1) / 4096; !tt.overflown && cur != want {
				t.Errorf("current %d, want %d", cur, want)
			}
		})
	}
}
