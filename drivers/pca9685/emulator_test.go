package pca9685

import (
	"bytes"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"
)

// tx writes w to the emulator and reads n bytes back.
func tx(t *testing.T, e *Emulator, n int, w ...byte) []byte {
	t.Helper()
	r := make([]byte, n)
	if err := e.Tx(w, r); err != nil {
		t.Fatalf("Tx(% x): %v", w, err)
	}
	return r
}

// wake clears SLEEP with AI set and waits out the oscillator start-up.
func wake(t *testing.T, e *Emulator) {
	t.Helper()
	tx(t, e, 0, 0x00, mode1AI)
	time.Sleep(oscStartup)
}

func TestEmulatorPowerOn(t *testing.T) {
	e := NewEmulator()
	want := map[byte]byte{0x00: 0x11, 0x01: 0x04, 0x02: 0xE2, 0x03: 0xE4, 0x04: 0xE8, 0x05: 0xE0, 0xFE: 0x1E}
	for ch := range Channels {
		want[byte(ledReg(ch))+3] = 0x10 // LEDn_OFF_H: full off
	}
	for r := range 256 {
		if got := e.Register(byte(r)); got != want[byte(r)] {
			t.Errorf("register 0x%02x = 0x%02x, want 0x%02x", r, got, want[byte(r)])
		}
	}
	if f := e.Frequency(); f.String() != "196.888Hz" {
		t.Errorf("power-on frequency %s", f)
	}
	// Scribble, then reset: back to the same map.
	wake(t, e)
	tx(t, e, 0, 0x06, 1, 2, 3, 4)
	e.PowerOnReset()
	if got := e.Register(0x06); got != 0 || e.Register(0x00) != 0x11 {
		t.Fatal("PowerOnReset left state behind")
	}
}

func TestEmulatorPointer(t *testing.T) {
	e := NewEmulator()
	tests := []struct {
		name string
		w    []byte
		n    int
		want []byte
	}{
		{"no AI: the pointer stays", []byte{0x00}, 3, []byte{0x11, 0x11, 0x11}},
		{"set AI through MODE1, then read on", []byte{0x00, 0x21}, 0, nil},
		{"a read starts where the write left the pointer", nil, 1, []byte{0x04}},
		{"LED15_OFF_H rolls over to MODE1", []byte{0x44}, 4, []byte{0x00, 0x10, 0x21, 0x04}},
		{"ALL_LED read 0, PRE_SCALE rolls over to MODE1", []byte{0xFA}, 6, []byte{0, 0, 0, 0, 0x1E, 0x21}},
		{"TestMode rolls over to MODE1", []byte{0xFF}, 2, []byte{0x00, 0x21}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tx(t, e, tt.n, tt.w...); !bytes.Equal(got, tt.want) && tt.n > 0 {
				t.Fatalf("read % x, want % x", got, tt.want)
			}
		})
	}
	for _, r := range []byte{0x46, 0x80, 0xF9} {
		if err := e.Tx([]byte{r}, nil); err == nil {
			t.Errorf("reserved register 0x%02x acknowledged", r)
		}
	}
}

func TestEmulatorWrites(t *testing.T) {
	tests := []struct {
		name string
		w    []byte
		reg  byte
		want byte
	}{
		{"MODE2 bits 7:5 read only", []byte{0x01, 0xFF}, 0x01, 0x1F},
		{"SUBADR1 bit 0 read only", []byte{0x02, 0xFF}, 0x02, 0xFE},
		{"ALLCALLADR bit 0 read only", []byte{0x05, 0x91}, 0x05, 0x90},
		{"LEDn_ON_H bits 7:5 read only", []byte{0x07, 0xFF}, 0x07, 0x1F},
		{"LEDn_OFF_L all writable", []byte{0x08, 0xFF}, 0x08, 0xFF},
		{"PRE_SCALE written asleep", []byte{0xFE, 0x79}, 0xFE, 0x79},
		{"PRE_SCALE floor of 3", []byte{0xFE, 0x01}, 0xFE, 0x03},
		{"ALL_LED_ON_H reads 0", []byte{0xFB, 0x10}, 0xFB, 0x00},
		{"ALL_LED_ON_H loads LED9_ON_H", []byte{0xFB, 0xFF}, 0x2B, 0x1F},
		{"EXTCLK set asleep", []byte{0x00, 0x51}, 0x00, 0x51},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEmulator()
			tx(t, e, 0, tt.w...)
			if got := e.Register(tt.reg); got != tt.want {
				t.Fatalf("register 0x%02x = 0x%02x, want 0x%02x", tt.reg, got, tt.want)
			}
		})
	}

	e := NewEmulator()
	wake(t, e)
	tx(t, e, 0, 0xFE, 0x05)
	if ps := e.Register(0xFE); ps != 0x1E {
		t.Errorf("PRE_SCALE written awake: %d, want 0x1E kept", ps)
	}
	tx(t, e, 0, 0x00, mode1AI|mode1ExtClk)
	if m := e.Register(0x00); m != mode1AI {
		t.Errorf("EXTCLK set awake: MODE1 0x%02x", m)
	}
	tx(t, e, 0, 0x00, mode1Sleep)
	tx(t, e, 0, 0x00, mode1Sleep|mode1ExtClk) // set asleep, as Adafruit's setExtClk does
	tx(t, e, 0, 0x00, 0x00)
	if m := e.Register(0x00); m != mode1ExtClk {
		t.Errorf("EXTCLK not sticky: MODE1 0x%02x", m)
	}
}

func TestEmulatorDuty(t *testing.T) {
	tests := []struct {
		name  string
		mode2 byte
		led   []byte // LED0_ON_L, ON_H, OFF_L, OFF_H
		want  float64
	}{
		{"ON < OFF", 0x04, []byte{0xFF, 0x01, 0xFF, 0x0B}, 0.625},        // 511 to 3071, datasheet Fig 9 example 1
		{"ON > OFF wraps", 0x04, []byte{0xFF, 0x07, 0xFF, 0x02}, 0.6875}, // 2047 to 767, example 2
		{"full on", 0x04, []byte{0xFE, 0x13, 0, 0}, 1},                   // example 3
		{"full off wins", 0x04, []byte{0, 0x10, 0, 0x10}, 0},
		{"ON equal to OFF", 0x04, []byte{0xFF, 0x03, 0xFF, 0x03}, 0}, // example 4
		{"inverted", 0x14, []byte{0, 0, 0, 0x04}, 0.75},
		{"inverted full off", 0x14, []byte{0, 0, 0, 0x10}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEmulator()
			if e.Duty(0) != 0 {
				t.Fatal("power-on output not off")
			}
			tx(t, e, 0, 0x01, tt.mode2)
			wake(t, e)
			tx(t, e, 0, append([]byte{0x06}, tt.led...)...)
			if got := e.Duty(0); got != tt.want {
				t.Fatalf("Duty = %v, want %v", got, tt.want)
			}
		})
	}
	if e := NewEmulator(); e.Duty(-1) != 0 || e.Duty(Channels) != 0 {
		t.Fatal("channel out of range")
	}
}

func TestEmulatorRestart(t *testing.T) {
	e := NewEmulator()
	wake(t, e)
	tx(t, e, 0, 0x06, 0, 0, 0, 0x08) // LED0 at half
	tx(t, e, 0, 0x00, mode1AI|mode1Sleep)
	if m, d := e.Register(0x00), e.Duty(0); m != 0xB0 || d != 0 {
		t.Fatalf("asleep with a channel running: MODE1 0x%02x duty %v, want RESTART set, output stopped", m, d)
	}
	tx(t, e, 0, 0x00, mode1AI)
	tx(t, e, 0, 0x00, mode1AI|mode1Restart) // too soon after waking: ignored
	if m, d := e.Register(0x00), e.Duty(0); m != 0xA0 || d != 0 {
		t.Fatalf("RESTART within 500 µs: MODE1 0x%02x duty %v, want still pending", m, d)
	}
	time.Sleep(oscStartup)
	tx(t, e, 0, 0x00, mode1AI|mode1Restart)
	if m, d := e.Register(0x00), e.Duty(0); m != 0x20 || d != 0.5 {
		t.Fatalf("after RESTART: MODE1 0x%02x duty %v, want 0x20, 0.5", m, d)
	}

	// A PWM write clears RESTART too; with OCH set only a whole channel does.
	tx(t, e, 0, 0x01, mode2OutDrv|mode2OCH)
	tx(t, e, 0, 0x00, mode1AI|mode1Sleep)
	wake(t, e)
	tx(t, e, 0, 0x0A, 0)
	if m := e.Register(0x00); m&mode1Restart == 0 {
		t.Fatal("OCH set: one PWM register cleared RESTART")
	}
	tx(t, e, 0, 0x0A, 0, 0, 0, 0x04)
	if m, d := e.Register(0x00), e.Duty(1); m != 0x20 || d != 0.25 {
		t.Fatalf("OCH set, whole channel written: MODE1 0x%02x duty %v", m, d)
	}

	// Orderly shutdown: all channels full off before SLEEP leaves RESTART clear.
	tx(t, e, 0, 0xFD, ledFull)
	tx(t, e, 0, 0x00, mode1AI|mode1Sleep)
	if m := e.Register(0x00); m != 0x30 {
		t.Fatalf("orderly shutdown: MODE1 0x%02x, want 0x30", m)
	}
}

func TestEmulatorFrequency(t *testing.T) {
	e := NewEmulator()
	for _, tt := range []struct {
		ps   byte
		want physic.Frequency
	}{{3, 1525878906}, {0xFF, 23841857}, {121, 50028816}} { // µHz
		tx(t, e, 0, 0xFE, tt.ps)
		if got := e.Frequency(); got != tt.want*physic.MicroHertz {
			t.Errorf("PRE_SCALE %d: %s, want %s", tt.ps, got, tt.want)
		}
	}
}
