package boards

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProfilesLoad(t *testing.T) {
	want := []string{"cm4", "rpi4b", "rpi5", "rpizero2w", "sim"}
	if got := strings.Join(Names(), ","); got != strings.Join(want, ",") {
		t.Fatalf("boards %s, want %s", got, strings.Join(want, ","))
	}
	for _, name := range want {
		t.Run(name, func(t *testing.T) {
			p, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := p.LineFor(RoleMainsDetect); !ok {
				t.Error("no mains-detect line")
			}
			if d, ok := p.Device(RoleNFC); !ok || d.Addr != 0x24 || d.Chip != ChipPN532 {
				t.Errorf("nfc: %+v", d)
			}
			if d, ok := p.Device(RoleBatteryShunt); !ok || d.Chip != ChipINA219 {
				t.Errorf("battery shunt: %+v", d)
			}
			if p.Printer.Device == "" || p.Scanner == "" {
				t.Errorf("printer %q scanner %q", p.Printer.Device, p.Scanner)
			}
			if p.IsSim() != (name == Sim) {
				t.Errorf("IsSim %v", p.IsSim())
			}
		})
	}
	if _, err := Load("rpi3"); err == nil {
		t.Fatal("Load(rpi3) succeeded")
	}
}

func TestCheckFindsClashes(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *Profile)
		want string
	}{
		{"same address", func(p *Profile) {
			p.I2C = append(p.I2C, I2CDevice{Role: "current_monitor", Chip: ChipINA219, Bus: "/dev/i2c-1", Addr: 0x40})
		}, "share address 0x40 on /dev/i2c-1"},
		{"reserved address", func(p *Profile) { p.I2C[0].Addr = 0x03 }, "outside the 7-bit range"},
		{"pin twice", func(p *Profile) {
			p.Lines = append(p.Lines, Line{Role: "buzzer", Name: "GPIO6"})
		}, "share GPIO6"},
		{"role twice", func(p *Profile) {
			p.I2C = append(p.I2C, I2CDevice{Role: RoleNFC, Chip: ChipPN532, Bus: "/dev/i2c-3", Addr: 0x24})
		}, "two devices have the role nfc"},
		{"bad flow", func(p *Profile) { p.Printer.Flow = "dtr" }, "flow control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load("rpi4b")
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(&p)
			err = p.Check()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v, want %q", err, tc.want)
			}
		})
	}
	// The same address on two different buses is fine.
	p, _ := Load("rpi4b")
	p.I2C = append(p.I2C, I2CDevice{Role: "second_shunt", Chip: ChipINA219, Bus: "/dev/i2c-3", Addr: 0x42})
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	// Editing a loaded profile leaves the table alone.
	if q, _ := Load("rpi4b"); len(q.I2C) != 4 {
		t.Fatalf("table changed: %d devices", len(q.I2C))
	}
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		model, want string
	}{
		{"Raspberry Pi 4 Model B Rev 1.4\x00", "rpi4b"},
		{"Raspberry Pi 400 Rev 1.0\x00", "rpi4b"},
		{"Raspberry Pi 5 Model B Rev 1.0\x00", "rpi5"},
		{"Raspberry Pi Zero 2 W Rev 1.0\x00", "rpizero2w"},
		{"Raspberry Pi Compute Module 4 Rev 1.0\x00", "cm4"},
		{"Raspberry Pi Compute Module 4S Rev 1.0\x00", Sim},
		{"Raspberry Pi 3 Model B Plus Rev 1.3\x00", Sim},
		{"QEMU Virtual Machine\x00", Sim},
	} {
		path := filepath.Join(dir, "model")
		if err := os.WriteFile(path, []byte(tc.model), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, reason := Detect(path); got != tc.want || reason == "" {
			t.Errorf("Detect(%q) = %s (%s), want %s", tc.model, got, reason, tc.want)
		}
	}
	if got, reason := Detect(filepath.Join(dir, "absent")); got != Sim || !strings.Contains(reason, "no device-tree") {
		t.Errorf("no model file: %s (%s)", got, reason)
	}
}
