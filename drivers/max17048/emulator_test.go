package max17048

import (
	"errors"
	"testing"

	"github.com/microretail/kioskd/drivers/emu"
	"periph.io/x/conn/v3/physic"
)

type bench struct {
	t     *testing.T
	bus   *emu.Bus
	gauge *Emulator
}

func newBench(t *testing.T, cells int) *bench {
	b := &bench{t: t, bus: emu.NewBus("i2c-1", 1), gauge: NewEmulator(cells)}
	b.bus.Attach(Addr, b.gauge)
	return b
}

func (b *bench) write(r reg, v uint16) {
	b.t.Helper()
	if err := b.bus.Tx(Addr, []byte{byte(r), byte(v >> 8), byte(v)}, nil); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bench) read(r reg) uint16 {
	b.t.Helper()
	var v [2]byte
	if err := b.bus.Tx(Addr, []byte{byte(r)}, v[:]); err != nil {
		b.t.Fatal(err)
	}
	return uint16(v[0])<<8 | uint16(v[1])
}

func TestEmulatorPowerOn(t *testing.T) {
	b := newBench(t, 1)
	b.write(regConfig, 0x4000)
	b.bus.Reset(Addr)
	want := map[reg]uint16{
		regVCell: 0xB900, // 3.7 V
		regSOC:   0x3200, // 50 %
		regMode:  0x0000, regVersion: 0x0012, regHibRT: 0x8030, regConfig: 0x971C,
		regVAlrt: 0x00FF, regCRate: 0x0000, regVReset: 0x9600, regStatus: 0x0100, regCmd: 0xFFFF,
	}
	for r, v := range want {
		if got := b.read(r); got != v {
			t.Errorf("%s after a power-on reset: 0x%04x, want 0x%04x", r, got, v)
		}
	}
}

func TestEmulatorRegisterAccess(t *testing.T) {
	tests := []struct {
		name  string
		r     reg
		write uint16
		want  uint16
	}{
		{"VCELL read-only", regVCell, 0x1234, 0xB900},
		{"SOC read-only", regSOC, 0x1234, 0x3200},
		{"VERSION read-only", regVersion, 0x1234, 0x0012},
		{"CRATE read-only", regCRate, 0x1234, 0x0000},
		{"CONFIG: ALRT cannot be set", regConfig, 0xFFFF, 0xFFDF},
		{"STATUS: flags stay, EnVR set", regStatus, 0xFFFF, 0x4100},
		{"STATUS: writing 0 clears RI", regStatus, 0x0000, 0x0000},
		{"VRESET: ID read-only", regVReset, 0x1234, 0x1200},
		{"MODE: Quick-Start clears itself", regMode, 0x6000, 0x2000},
		{"HIBRT", regHibRT, 0x0000, 0x0000},
		{"VALRT", regVAlrt, 0xAAD2, 0xAAD2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBench(t, 1)
			b.write(tt.r, tt.write)
			if got := b.read(tt.r); got != tt.want {
				t.Fatalf("wrote 0x%04x, read 0x%04x; want 0x%04x", tt.write, got, tt.want)
			}
		})
	}
}

func TestEmulatorByteAddressing(t *testing.T) {
	b := newBench(t, 1)
	var r [4]byte
	if err := b.bus.Tx(Addr, []byte{byte(regVCell)}, r[:]); err != nil {
		t.Fatal(err)
	}
	if r != [4]byte{0xB9, 0x00, 0x32, 0x00} {
		t.Fatalf("VCELL and SOC in one read: % x", r)
	}
	if err := b.bus.Tx(Addr, []byte{byte(regConfig) + 1, 0x00}, nil); err != nil { // CONFIG's low byte alone
		t.Fatal(err)
	}
	if got := b.read(regConfig); got != 0x9700 {
		t.Fatalf("CONFIG 0x%04x after writing its low byte", got)
	}
	if err := b.bus.Tx(Addr, []byte{0x19}, r[:1]); err != nil || r[0] != 0x00 {
		t.Fatalf("ID byte 0x%02x, %v", r[0], err)
	}
}

func TestEmulatorPORCommand(t *testing.T) {
	b := newBench(t, 1)
	b.write(regConfig, 0x9716)
	b.write(regStatus, 0x0000)
	if err := b.bus.Tx(Addr, []byte{byte(regCmd), 0x54, 0x00}, nil); !errors.Is(err, emu.ErrNACK) {
		t.Fatalf("POR command: %v, want a NACK as the chip resets", err)
	}
	if cfg, st := b.read(regConfig), b.read(regStatus); cfg != porConfig || st != stRI {
		t.Fatalf("after POR CONFIG 0x%04x, STATUS 0x%04x", cfg, st)
	}
}

func TestEmulatorAlerts(t *testing.T) {
	tests := []struct {
		name  string
		cells int
		setup map[reg]uint16
		world func(*Emulator)
		want  uint16 // STATUS flags
	}{
		{"above VALRT.MAX", 1, map[reg]uint16{regVAlrt: 0x00D2}, func(e *Emulator) { e.SetCell(4250 * physic.MilliVolt) }, stVH},
		{"inside the window", 1, map[reg]uint16{regVAlrt: 0xAAD2}, func(e *Emulator) { e.SetCell(3900 * physic.MilliVolt) }, 0},
		{"below VALRT.MIN", 1, map[reg]uint16{regVAlrt: 0xAAD2}, func(e *Emulator) { e.SetCell(3300 * physic.MilliVolt) }, stVL},
		{"MAX17049 window is per cell", 2, map[reg]uint16{regVAlrt: 0x00D2}, func(e *Emulator) { e.SetCell(8300 * physic.MilliVolt) }, 0},
		{"MAX17049 above it", 2, map[reg]uint16{regVAlrt: 0x00D2}, func(e *Emulator) { e.SetCell(8500 * physic.MilliVolt) }, stVH},
		{"below VRESET with EnVR", 1, map[reg]uint16{regStatus: stEnVR}, func(e *Emulator) { e.SetCell(2900 * physic.MilliVolt) }, stVR},
		{"below VRESET without", 1, map[reg]uint16{regStatus: 0}, func(e *Emulator) { e.SetCell(2900 * physic.MilliVolt) }, 0},
		{"SOC under 4 %", 1, nil, func(e *Emulator) { e.SetSOC(3.9) }, stHD},
		{"SOC under 20 %", 1, map[reg]uint16{regConfig: 0x970C}, func(e *Emulator) { e.SetSOC(19.9) }, stHD},
		{"SOC above 20 %", 1, map[reg]uint16{regConfig: 0x970C}, func(e *Emulator) { e.SetSOC(20) }, 0},
		{"0.9 % change", 1, map[reg]uint16{regConfig: 0x975C}, func(e *Emulator) { e.SetSOC(50.9) }, 0},
		{"1 % change with ALSC", 1, map[reg]uint16{regConfig: 0x975C}, func(e *Emulator) { e.SetSOC(49.9) }, stSC},
		{"1 % change without", 1, nil, func(e *Emulator) { e.SetSOC(49.9) }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBench(t, tt.cells)
			b.write(regStatus, 0) // clear RI
			for r, v := range tt.setup {
				b.write(r, v)
			}
			tt.world(b.gauge)
			st, cfg := b.read(regStatus), b.read(regConfig)
			if st&stFlags != tt.want {
				t.Fatalf("STATUS 0x%04x, want flags 0x%04x", st, tt.want)
			}
			if alrt := cfg&cfgALRT != 0; alrt != (tt.want != 0) {
				t.Fatalf("CONFIG.ALRT %v with flags 0x%04x", alrt, tt.want)
			}
		})
	}
}

func TestEmulatorBattery(t *testing.T) {
	b := newBench(t, 1)
	b.write(regStatus, 0)
	b.write(regConfig, 0x9716)
	b.gauge.SetBattery(false)
	b.gauge.SetCell(4 * physic.Volt)
	b.gauge.SetSOC(80)
	if err := b.bus.Tx(Addr, []byte{byte(regVersion)}, make([]byte, 2)); !errors.Is(err, emu.ErrNACK) {
		t.Fatalf("without a battery: %v", err)
	}
	b.gauge.SetBattery(true)
	want := map[reg]uint16{regStatus: stRI, regConfig: porConfig, regVCell: 51200, regSOC: 80 * 256}
	for r, v := range want {
		if got := b.read(r); got != v {
			t.Errorf("%s with a fresh battery: 0x%04x, want 0x%04x", r, got, v)
		}
	}
}
