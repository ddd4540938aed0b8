package max17048

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/microretail/kioskd/drivers/emu"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

// newOps is what New sends a freshly powered gauge with DefaultOpts.
func newOps() []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: 0x36, W: []byte{0x08}, R: []byte{0x00, 0x12}}, // VERSION 0x0012: a MAX17048/MAX17049
		{Addr: 0x36, W: []byte{0x1A}, R: []byte{0x01, 0x00}}, // STATUS: RI, just powered up
		{Addr: 0x36, W: []byte{0x0C}, R: []byte{0x97, 0x1C}}, // CONFIG: power-on value, alert at 4 %
		{Addr: 0x36, W: []byte{0x0C, 0x97, 0x16}},            // CONFIG: RCOMP 0x97, alert at 32 - 22 = 10 %
		{Addr: 0x36, W: []byte{0x1A, 0x00, 0x00}},            // STATUS: RI cleared
	}
}

func TestNewPlayback(t *testing.T) {
	tests := []struct {
		name string
		opts Opts
		ops  []i2ctest.IO
		want error
	}{
		{"fresh gauge", DefaultOpts, newOps(), nil},
		{"configured before, alert pending", Opts{Cells: 2, AlertThreshold: 20}, []i2ctest.IO{
			{Addr: 0x36, W: []byte{0x08}, R: []byte{0x00, 0x11}}, // VERSION 0x0011
			{Addr: 0x36, W: []byte{0x1A}, R: []byte{0x10, 0x00}}, // STATUS: HD, no RI
			{Addr: 0x36, W: []byte{0x0C}, R: []byte{0x97, 0x2C}}, // CONFIG: ALRT raised, alert at 20 %
			{Addr: 0x36, W: []byte{0x0C, 0x97, 0x2C}},            // CONFIG: alert at 20 %, ALRT kept
		}, nil},
		{"quick-start", Opts{Cells: 1, AlertThreshold: 10, QuickStart: true}, append(newOps(),
			i2ctest.IO{Addr: 0x36, W: []byte{0x06, 0x40, 0x00}}, // MODE: Quick-Start
		), nil},
		{"a MAX17043", DefaultOpts, []i2ctest.IO{
			{Addr: 0x36, W: []byte{0x08}, R: []byte{0x00, 0x03}}, // VERSION 0x0003: an older gauge
		}, ErrIdentity},
		{"SDA stuck high", DefaultOpts, []i2ctest.IO{
			{Addr: 0x36, W: []byte{0x08}, R: []byte{0xFF, 0xFF}}, // VERSION reads all ones
		}, ErrIdentity},
		{"garbled STATUS", DefaultOpts, []i2ctest.IO{
			{Addr: 0x36, W: []byte{0x08}, R: []byte{0x00, 0x12}}, // VERSION 0x0012
			{Addr: 0x36, W: []byte{0x1A}, R: []byte{0x81, 0x00}}, // STATUS with the reserved bit 15 set
			{Addr: 0x36, W: []byte{0x0C}, R: []byte{0x97, 0x1C}}, // CONFIG
		}, ErrGarbled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			d, err := New(pb, Addr, &tt.opts)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) || (d == nil) == (err == nil) {
				t.Fatalf("New = %v, %v; want error %v", d, err, tt.want)
			}
			if err := pb.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
	for name, o := range map[string]Opts{"3 cells": {Cells: 3, AlertThreshold: 4}, "0 %": {Cells: 1}, "33 %": {Cells: 1, AlertThreshold: 33}} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(&i2ctest.Playback{DontPanic: true}, Addr, &o); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := New(&i2ctest.Playback{DontPanic: true}, 0x37, nil); err == nil {
		t.Fatal("accepted address 0x37")
	}
}

func TestSensePlayback(t *testing.T) {
	steady := Reading{Cell: 3800 * physic.MilliVolt, SOC: 57*256 + 128, Rate: -10}
	tests := []struct {
		name      string
		ops       []i2ctest.IO
		want      Reading
		err       error
		reconfigs int
	}{
		{"discharging", []i2ctest.IO{
			{Addr: 0x36, W: []byte{0x02}, R: []byte{0xBE, 0x00}}, // VCELL 48640 × 78.125 µV = 3.8 V
			{Addr: 0x36, W: []byte{0x04}, R: []byte{0x39, 0x80}}, // SOC 57.5 %
			{Addr: 0x36, W: []byte{0x16}, R: []byte{0xFF, 0xF6}}, // CRATE -10 × 0.208 %/h
			{Addr: 0x36, W: []byte{0x1A}, R: []byte{0x00, 0x00}}, // STATUS: no flags
			{Addr: 0x36, W: []byte{0x0C}, R: []byte{0x97, 0x16}}, // CONFIG as configured
		}, steady, nil, 0},
		{"empty alert", []i2ctest.IO{
			{Addr: 0x36, W: []byte{0x02}, R: []byte{0xAB, 0x00}}, // VCELL 43776 × 78.125 µV = 3.42 V
			{Addr: 0x36, W: []byte{0x04}, R: []byte{0x09, 0x80}}, // SOC 9.5 %
			{Addr: 0x36, W: []byte{0x16}, R: []byte{0xFF, 0xE7}}, // CRATE -25 × 0.208 %/h
			{Addr: 0x36, W: []byte{0x1A}, R: []byte{0x10, 0x00}}, // STATUS: HD
			{Addr: 0x36, W: []byte{0x0C}, R: []byte{0x97, 0x36}}, // CONFIG with ALRT
		}, Reading{Cell: 3420 * physic.MilliVolt, SOC: 9*256 + 128, Rate: -25, Status: HD, Alert: true}, nil, 0},
		{"reset since configured", []i2ctest.IO{
			{Addr: 0x36, W: []byte{0x02}, R: []byte{0xBE, 0x00}}, // VCELL 3.8 V
			{Addr: 0x36, W: []byte{0x04}, R: []byte{0x39, 0x80}}, // SOC 57.5 %: the fresh estimate
			{Addr: 0x36, W: []byte{0x16}, R: []byte{0xFF, 0xF6}}, // CRATE
			{Addr: 0x36, W: []byte{0x1A}, R: []byte{0x01, 0x00}}, // STATUS: RI
			{Addr: 0x36, W: []byte{0x0C}, R: []byte{0x97, 0x1C}}, // CONFIG back at its power-on value
			{Addr: 0x36, W: []byte{0x0C, 0x97, 0x16}},            // CONFIG: alert at 10 % again
			{Addr: 0x36, W: []byte{0x1A, 0x00, 0x00}},            // STATUS: RI cleared
		}, Reading{Cell: 3800 * physic.MilliVolt, SOC: 57*256 + 128, Rate: -10, Status: RI}, nil, 1},
		{"garbled once", []i2ctest.IO{
			{Addr: 0x36, W: []byte{0x02}, R: []byte{0xBE, 0x00}}, // VCELL
			{Addr: 0x36, W: []byte{0x04}, R: []byte{0x39, 0x80}}, // SOC
			{Addr: 0x36, W: []byte{0x16}, R: []byte{0xFF, 0xF6}}, // CRATE
			{Addr: 0x36, W: []byte{0x1A}, R: []byte{0x00, 0x00}}, // STATUS
			{Addr: 0x36, W: []byte{0x0C}, R: []byte{0x17, 0x16}}, // CONFIG with RCOMP's top bit lost
			{Addr: 0x36, W: []byte{0x02}, R: []byte{0xBE, 0x00}}, // VCELL
			{Addr: 0x36, W: []byte{0x04}, R: []byte{0x39, 0x80}}, // SOC
			{Addr: 0x36, W: []byte{0x16}, R: []byte{0xFF, 0xF6}}, // CRATE
			{Addr: 0x36, W: []byte{0x1A}, R: []byte{0x00, 0x00}}, // STATUS
			{Addr: 0x36, W: []byte{0x0C}, R: []byte{0x97, 0x16}}, // CONFIG as configured
		}, steady, nil, 0},
		{"SDA stuck high", []i2ctest.IO{
			{Addr: 0x36, W: []byte{0x02}, R: []byte{0xFF, 0xFF}}, // VCELL
			{Addr: 0x36, W: []byte{0x04}, R: []byte{0xFF, 0xFF}}, // SOC
			{Addr: 0x36, W: []byte{0x16}, R: []byte{0xFF, 0xFF}}, // CRATE
			{Addr: 0x36, W: []byte{0x1A}, R: []byte{0xFF, 0xFF}}, // STATUS with the reserved bit set
			{Addr: 0x36, W: []byte{0x0C}, R: []byte{0xFF, 0xFF}}, // CONFIG
			{Addr: 0x36, W: []byte{0x02}, R: []byte{0xFF, 0xFF}}, // VCELL, again
			{Addr: 0x36, W: []byte{0x04}, R: []byte{0xFF, 0xFF}}, // SOC
			{Addr: 0x36, W: []byte{0x16}, R: []byte{0xFF, 0xFF}}, // CRATE
			{Addr: 0x36, W: []byte{0x1A}, R: []byte{0xFF, 0xFF}}, // STATUS
			{Addr: 0x36, W: []byte{0x0C}, R: []byte{0xFF, 0xFF}}, // CONFIG
		}, Reading{}, ErrGarbled, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := &i2ctest.Playback{Ops: append(newOps(), tt.ops...), DontPanic: true}
			d, err := New(pb, Addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Sense()
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Sense: %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("Sense = %+v, want %+v", got, tt.want)
			}
			if d.Reconfigurations() != tt.reconfigs {
				t.Fatalf("%d reconfigurations, want %d", d.Reconfigurations(), tt.reconfigs)
			}
			if err := pb.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestClearAlertPlayback(t *testing.T) {
	pb := &i2ctest.Playback{Ops: append(newOps(),
		i2ctest.IO{Addr: 0x36, W: []byte{0x1A}, R: []byte{0x52, 0x00}}, // STATUS: EnVR, HD, VH
		i2ctest.IO{Addr: 0x36, W: []byte{0x1A, 0x00, 0x00}},            // STATUS: flags cleared, EnVR off
		i2ctest.IO{Addr: 0x36, W: []byte{0x0C, 0x97, 0x16}},            // CONFIG: ALRT cleared
		i2ctest.IO{Addr: 0x36, W: []byte{0x06, 0x40, 0x00}},            // MODE: Quick-Start
	), DontPanic: true}
	d, err := New(pb, Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ClearAlert(); err != nil {
		t.Fatal(err)
	}
	if err := d.QuickStart(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := d.Halt(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
	if got := d.String(); got != "MAX17048{playback(54)}" {
		t.Fatalf("String() = %q", got)
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{0: "none", RI: "RI", HD | SC: "HD|SC", VH | VL | VR: "VH|VL|VR", 0xC1: "RI|0xc0"} {
		if got := s.String(); got != want {
			t.Errorf("Status(0x%02x) = %q, want %q", uint8(s), got, want)
		}
	}
	if got := SOC(76*256 + 128).String(); got != "76.50%" {
		t.Errorf("SOC = %q", got)
	}
	if got := Rate(-20).String(); got != "-4.16%/h" {
		t.Errorf("Rate = %q", got)
	}
}

type rig struct {
	bus   *emu.Bus
	gauge *Emulator
	dev   *Dev
}

func newRig(t *testing.T, o Opts) *rig {
	t.Helper()
	r := &rig{bus: emu.NewBus("i2c-1", 3), gauge: NewEmulator(o.Cells)}
	r.bus.Attach(Addr, r.gauge)
	var err error
	if r.dev, err = New(r.bus, Addr, &o); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) configured(t *testing.T) {
	t.Helper()
	if cfg := r.gauge.Register(byte(regConfig)); cfg&^cfgALRT != r.dev.config {
		t.Fatalf("gauge CONFIG 0x%04x, want 0x%04x", cfg, r.dev.config)
	}
	if st := r.gauge.Register(byte(regStatus)); st&stRI != 0 {
		t.Fatalf("gauge STATUS 0x%04x still has RI", st)
	}
}

func TestSenseEmulated(t *testing.T) {
	tests := []struct {
		name  string
		cells int
		v     physic.ElectricPotential
		soc   float64
		rate  float64
	}{
		{"MAX17048 charging", 1, 4100 * physic.MilliVolt, 88.25, 12.48},
		{"MAX17048 flat", 1, 3300 * physic.MilliVolt, 2, -0.208},
		{"MAX17049", 2, 7600 * physic.MilliVolt, 57.5, -2.08},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Opts{Cells: tt.cells, AlertThreshold: 1})
			r.configured(t)
			r.gauge.SetCell(tt.v)
			r.gauge.SetSOC(tt.soc)
			r.gauge.SetRate(tt.rate)
			got, err := r.dev.Sense()
			if err != nil {
				t.Fatal(err)
			}
			if d := got.Cell - tt.v; d > 80*physic.MicroVolt || d < -80*physic.MicroVolt {
				t.Errorf("Cell %s, want %s", got.Cell, tt.v)
			}
			if got.SOC.Percent() != tt.soc || got.Rate.PercentPerHour() != tt.rate || got.Status != 0 || got.Alert {
				t.Errorf("Sense = %+v", got)
			}
		})
	}
}

func TestNoBattery(t *testing.T) {
	bus := emu.NewBus("i2c-1", 1)
	gauge := NewEmulator(1)
	gauge.SetBattery(false)
	bus.Attach(Addr, gauge)
	d, err := New(bus, Addr, nil)
	if !errors.Is(err, ErrNoBattery) || !errors.Is(err, emu.ErrNACK) || d != nil {
		t.Fatalf("New without a battery = %v, %v", d, err)
	}
	gauge.SetBattery(true)
	if d, err = New(bus, Addr, nil); err != nil {
		t.Fatal(err)
	}
	gauge.SetBattery(false) // pulled out while running
	if _, err := d.Sense(); !errors.Is(err, ErrNoBattery) {
		t.Fatalf("Sense without a battery: %v", err)
	}
	if err := d.ClearAlert(); !errors.Is(err, ErrNoBattery) {
		t.Fatalf("ClearAlert without a battery: %v", err)
	}
	gauge.SetBattery(true) // a fresh battery powers the gauge up again
	got, err := d.Sense()
	if err != nil || got.Status != RI {
		t.Fatalf("Sense with a fresh battery = %+v, %v", got, err)
	}
	if d.Reconfigurations() != 1 {
		t.Fatalf("%d reconfigurations, want 1", d.Reconfigurations())
	}
	r := &rig{bus: bus, gauge: gauge, dev: d}
	r.configured(t)
}

// sysfsBus fails as periph.io/x/host/v3's sysfs-i2c does on a NACK: it
// formats the errno with %v.
type sysfsBus struct{}

func (sysfsBus) String() string { return "I2C1" }
func (sysfsBus) Tx(uint16, []byte, []byte) error {
	return fmt.Errorf("sysfs-i2c: %v", syscall.EREMOTEIO)
}
func (sysfsBus) SetSpeed(physic.Frequency) error { return nil }

func TestNoBatteryOnSysfsBus(t *testing.T) {
	if _, err := New(sysfsBus{}, Addr, nil); !errors.Is(err, ErrNoBattery) {
		t.Fatalf("New on a bus that NACKs: %v", err)
	}
}

func TestResetMidRun(t *testing.T) {
	r := newRig(t, Opts{Cells: 1, AlertThreshold: 15})
	r.gauge.SetSOC(40)
	if _, err := r.dev.Sense(); err != nil {
		t.Fatal(err)
	}
	r.bus.Reset(Addr)
	if cfg := r.gauge.Register(byte(regConfig)); cfg != porConfig {
		t.Fatalf("CONFIG 0x%04x after a reset", cfg)
	}
	got, err := r.dev.Sense()
	if err != nil || got.Status&RI == 0 {
		t.Fatalf("Sense after a reset = %+v, %v", got, err)
	}
	r.configured(t)
	if got, err := r.dev.Sense(); err != nil || got.Status != 0 {
		t.Fatalf("next Sense = %+v, %v", got, err)
	}
	// The threshold is back: crossing 15 % raises the empty alert.
	r.gauge.SetSOC(14.5)
	if got, err := r.dev.Sense(); err != nil || got.Status != HD || !got.Alert {
		t.Fatalf("Sense at 14.5 %% = %+v, %v", got, err)
	}
	if r.dev.Reconfigurations() != 1 {
		t.Fatalf("%d reconfigurations, want 1", r.dev.Reconfigurations())
	}
}

func TestNACKStorm(t *testing.T) {
	r := newRig(t, DefaultOpts)
	r.bus.Inject(Addr, emu.FaultNACK, -1)
	for n := 0; n < 20; n++ {
		if _, err := r.dev.Sense(); !errors.Is(err, ErrNoBattery) {
			t.Fatalf("Sense %d in the storm: %v", n, err)
		}
	}
	r.bus.Clear(Addr)
	r.gauge.SetSOC(63)
	if got, err := r.dev.Sense(); err != nil || got.SOC.Percent() != 63 {
		t.Fatalf("after the storm: %+v, %v", got, err)
	}
	r.bus.Inject(Addr, emu.FaultBusError, 1)
	if _, err := r.dev.Sense(); !errors.Is(err, emu.ErrBusError) || errors.Is(err, ErrNoBattery) {
		t.Fatalf("a bus error is not a missing battery: %v", err)
	}
}

func TestNoisyBus(t *testing.T) {
	r := newRig(t, DefaultOpts)
	r.bus.Inject(Addr, emu.FaultGarbage, -1)
	for n := 0; n < 100; n++ {
		if got, err := r.dev.Sense(); !errors.Is(err, ErrGarbled) {
			t.Fatalf("Sense %d on a noisy bus = %+v, %v", n, got, err)
		}
	}
	if err := r.dev.ClearAlert(); err == nil && r.gauge.Register(byte(regStatus))&stEnVR != 0 {
		t.Fatal("a garbled STATUS read turned EnVR on")
	}
	r.bus.Inject(Addr, emu.FaultStuck, -1)
	if _, err := r.dev.Sense(); !errors.Is(err, ErrGarbled) {
		t.Fatalf("SDA stuck high: %v", err)
	}
	r.bus.Clear(Addr)
	if _, err := r.dev.Sense(); err != nil {
		t.Fatalf("clean bus again: %v", err)
	}
	r.configured(t)
}

func TestAlerts(t *testing.T) {
	r := newRig(t, Opts{Cells: 1, AlertThreshold: 10})
	steps := []struct {
		what   string
		do     func()
		status Status
		alert  bool
	}{
		{"50 %", func() { r.gauge.SetSOC(50) }, 0, false},
		{"below 10 %", func() { r.gauge.SetSOC(9.5) }, HD, true},
		{"cleared", func() {
			if err := r.dev.ClearAlert(); err != nil {
				t.Fatal(err)
			}
		}, 0, false},
		{"still below: no new crossing", func() { r.gauge.SetSOC(8) }, 0, false},
		{"charged back up", func() { r.gauge.SetSOC(30) }, 0, false},
		{"crossing again", func() { r.gauge.SetSOC(9.9) }, HD, true},
	}
	for _, s := range steps {
		s.do()
		got, err := r.dev.Sense()
		if err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		if got.Status != s.status || got.Alert != s.alert {
			t.Fatalf("%s: status %s, alert %v; want %s, %v", s.what, got.Status, got.Alert, s.status, s.alert)
		}
	}
	if err := r.dev.ClearAlert(); err != nil {
		t.Fatal(err)
	}
	if st, cfg := r.gauge.Register(byte(regStatus)), r.gauge.Register(byte(regConfig)); st&stFlags != 0 || cfg&cfgALRT != 0 {
		t.Fatalf("after ClearAlert STATUS 0x%04x, CONFIG 0x%04x", st, cfg)
	}
}

func TestQuickStart(t *testing.T) {
	r := newRig(t, Opts{Cells: 1, AlertThreshold: 4, QuickStart: true})
	if err := r.dev.QuickStart(); err != nil {
		t.Fatal(err)
	}
	if n := r.gauge.QuickStarts(); n != 2 {
		t.Fatalf("%d quick-starts, want 2", n)
	}
	if m := r.gauge.Register(byte(regMode)); m&modeQuickStart != 0 {
		t.Fatalf("MODE 0x%04x: Quick-Start did not clear itself", m)
	}
}

func TestConcurrentUse(t *testing.T) {
	r := newRig(t, DefaultOpts)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 50; n++ {
				r.gauge.SetSOC(float64(g*20 + n%20))
				if _, err := r.dev.Sense(); err != nil {
					t.Error(err)
					return
				}
				if n%10 == 0 {
					if err := r.dev.ClearAlert(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
}

// TestForeignConfigRewritten: a CONFIG write garbled on the bus leaves the
// gauge holding a value the driver never wrote, with no reset flag to say
// so. Sense fails once, writes CONFIG again, and reads on.
func TestForeignConfigRewritten(t *testing.T) {
	r := newRig(t, DefaultOpts)
	want := r.gauge.Register(byte(regConfig))
	// ATHD 0x1F instead of ours: the alert threshold a flipped bit makes.
	if err := r.bus.Tx(Addr, []byte{byte(regConfig), byte(want >> 8), 0x1F}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.dev.Sense(); !errors.Is(err, ErrGarbled) {
		t.Fatalf("Sense with a foreign CONFIG: %v, want ErrGarbled", err)
	}
	if got := r.gauge.Register(byte(regConfig)); got != want {
		t.Fatalf("CONFIG 0x%04x after Sense, want ours 0x%04x back", got, want)
	}
	if _, err := r.dev.Sense(); err != nil {
		t.Fatalf("Sense after the rewrite: %v", err)
	}
}
