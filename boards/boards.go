// Package boards describes the boards kioskd runs on: which I2C bus, address,
// GPIO line and device file each peripheral of the kiosk uses.
//
// A profile is data, checked when it is loaded. The drivers never see it;
// the wiring in cmd/kioskd reads a profile and hands each driver its bus,
// address or device. The sim profile wires the same peripherals to
// emulators, so kioskd runs on any laptop.
//
// The real profiles follow the HATs a stall operator can buy: a Geekworm
// X-series UPS (MAX17048-class fuel gauge at 0x36, power-loss detect on
// GPIO6: on the X120x for the Pi 5 high while mains is present, on the
// X728 for the Pi 4 high once it is lost), an INA219 current shunt on the
// battery rail (0x42 with A0 strapped high, as on Waveshare's UPS HAT; 0x43
// on Waveshare's UPS HAT (C) for the Zero), a PN532 NFC board in I2C mode
// (0x24), and a PCA9685 PWM board for the stall's LED lighting (0x40).
package boards

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Sim is the name of the simulated board.
const Sim = "sim"

// SimBus is the bus name the sim board's emulated I2C devices sit on.
const SimBus = "sim"

// Chip names, as the drivers under drivers/ are named.
const (
	ChipINA219   = "ina219"
	ChipMAX17048 = "max17048"
	ChipPN532    = "pn532"
	ChipPCA9685  = "pca9685"
)

// I2CDevice is a chip on an I2C bus.
type I2CDevice struct {
	Role string // what the kiosk uses it for: "battery_shunt", "fuel_gauge", "nfc", "lights"
	Chip string // driver name
	Bus  string // bus device, e.g. "/dev/i2c-1", or SimBus
	Addr uint16 // 7-bit address
}

// Line is a GPIO line, by its BCM name ("GPIO6").
type Line struct {
	Role       string // "mains_detect", "nfc_irq", "nfc_reset", "lights"
	Name       string // BCM name as periph.io's gpioreg knows it, e.g. "GPIO6"
	ActiveHigh bool   // the level that means "asserted" (mains present, IRQ, strip on)
}

// Serial is a UART the kiosk talks through.
type Serial struct {
	Device string // "/dev/serial0"
	Baud   int
	// Flow is "none", "rtscts" or "xonxoff". With "none" the printer driver
	// throttles by the printer's print and feed time.
	Flow string
}

// Profile is one board's wiring.
type Profile struct {
	Name  string // "rpi4b", "rpi5", "rpizero2w", "cm4", "sim"
	Model string // human description, including the HATs assumed
	// GPIOChip is the chip that carries the 40-pin header's lines. On a
	// Pi 5 that is the RP1, gpiochip0 on kernel 6.6.45 and later
	// (gpiochip4 before).
	GPIOChip string
	I2C      []I2CDevice
	Lines    []Line
	// Printer is the receipt printer's UART; PrinterUSB its USB printer
	// class device, used instead when present.
	Printer    Serial
	PrinterUSB string
	// Scanner is a glob for the barcode scanner's evdev device. USB HID
	// wedge scanners appear under /dev/input/by-id as *-event-kbd.
	Scanner string
}

// IsSim reports whether this profile runs on emulators.
func (p *Profile) IsSim() bool { return p.Name == Sim }

// Device returns the I2C device with the given role.
func (p *Profile) Device(role string) (I2CDevice, bool) {
	for _, d := range p.I2C {
		if d.Role == role {
			return d, true
		}
	}
	return I2CDevice{}, false
}

// LineFor returns the GPIO line with the given role.
func (p *Profile) LineFor(role string) (Line, bool) {
	for _, l := range p.Lines {
		if l.Role == role {
			return l, true
		}
	}
	return Line{}, false
}

// Roles the firmware looks for.
const (
	RoleBatteryShunt = "battery_shunt"
	RoleFuelGauge    = "fuel_gauge"
	RoleNFC          = "nfc"
	RoleLights       = "lights"
	RoleMainsDetect  = "mains_detect"
	RoleNFCIRQ       = "nfc_irq"
	RoleNFCReset     = "nfc_reset"
)

// Shared pieces of the real profiles.
var (
	i2c1       = "/dev/i2c-1" // the 40-pin header's I2C, GPIO2 (SDA) and GPIO3 (SCL)
	upsGauge   = I2CDevice{Role: RoleFuelGauge, Chip: ChipMAX17048, Bus: i2c1, Addr: 0x36}
	shunt      = I2CDevice{Role: RoleBatteryShunt, Chip: ChipINA219, Bus: i2c1, Addr: 0x42}
	nfc        = I2CDevice{Role: RoleNFC, Chip: ChipPN532, Bus: i2c1, Addr: 0x24}
	pwm        = I2CDevice{Role: RoleLights, Chip: ChipPCA9685, Bus: i2c1, Addr: 0x40}
	headerPins = []Line{
		{Role: RoleMainsDetect, Name: "GPIO6", ActiveHigh: true}, // Geekworm X120x PLD: high = mains OK
		{Role: RoleNFCIRQ, Name: "GPIO17", ActiveHigh: false},    // PN532 P32/IRQ, low when a response is ready
		{Role: RoleNFCReset, Name: "GPIO27", ActiveHigh: false},  // PN532 RSTPDN, low resets
	}
	// The X728 drives its PLD the other way: GPIO6 goes high when AC is
	// lost (Geekworm's x728-v2.x-plsd.py), and with the PLD jumper off it
	// stays low, which reads as "mains present".
	x728Pins   = append([]Line{{Role: RoleMainsDetect, Name: "GPIO6", ActiveHigh: false}}, headerPins[1:]...)
	ttlPrinter = Serial{Device: "/dev/serial0", Baud: 19200, Flow: "none"} // CSN-A2-class TTL printers ship at 19200 8N1
	hidScanner = "/dev/input/by-id/usb-*-event-kbd"
)

var profiles = map[string]Profile{
	"rpi4b": {
		Name:     "rpi4b",
		Model:    "Raspberry Pi 4 Model B / 400 with a Geekworm X728 UPS, INA219 battery shunt, PN532 and PCA9685",
		GPIOChip: "gpiochip0",
		I2C:      []I2CDevice{upsGauge, shunt, nfc, pwm},
		Lines:    x728Pins,
		Printer:  ttlPrinter, // PL011 on GPIO14/15 with dtoverlay=disable-bt
		Scanner:  hidScanner,
	},
	"rpi5": {
		Name:     "rpi5",
		Model:    "Raspberry Pi 5 with a Geekworm X1200 UPS, INA219 battery shunt, PN532 and PCA9685",
		GPIOChip: "gpiochip0", // RP1; gpiochip4 on kernels before 6.6.45
		I2C:      []I2CDevice{upsGauge, shunt, nfc, pwm},
		Lines:    headerPins,
		Printer:  Serial{Device: "/dev/ttyAMA0", Baud: 19200, Flow: "none"}, // RP1 UART0 on GPIO14/15
		Scanner:  hidScanner,
	},
	"rpizero2w": {
		Name: "rpizero2w",
		Model: "Raspberry Pi Zero 2 W with a Waveshare UPS HAT (C) (INA219 at 0x43, no fuel gauge), " +
			"PN532 and one MOSFET-switched LED strip",
		GPIOChip: "gpiochip0",
		I2C: []I2CDevice{
			{Role: RoleBatteryShunt, Chip: ChipINA219, Bus: i2c1, Addr: 0x43},
			nfc,
		},
		Lines: append(append([]Line(nil), headerPins...),
			Line{Role: RoleLights, Name: "GPIO18", ActiveHigh: true}), // MOSFET gate, PWM0-capable pin
		Printer: Serial{Device: "/dev/serial0", Baud: 9600, Flow: "none"}, // mini UART: keep the rate low
		Scanner: hidScanner,
	},
	"cm4": {
		Name:       "cm4",
		Model:      "Compute Module 4 on an IO board with a MAX17048 gauge, INA219 battery shunt, PN532, PCA9685 and a USB printer",
		GPIOChip:   "gpiochip0",
		I2C:        []I2CDevice{upsGauge, shunt, nfc, pwm},
		Lines:      headerPins,
		Printer:    ttlPrinter,
		PrinterUSB: "/dev/usb/lp0",
		Scanner:    hidScanner,
	},
	Sim: {
		Name:     Sim,
		Model:    "simulated board: every peripheral is an emulator of the real chip",
		GPIOChip: "sim",
		I2C: []I2CDevice{
			{Role: RoleFuelGauge, Chip: ChipMAX17048, Bus: SimBus, Addr: 0x36},
			{Role: RoleBatteryShunt, Chip: ChipINA219, Bus: SimBus, Addr: 0x42},
			{Role: RoleNFC, Chip: ChipPN532, Bus: SimBus, Addr: 0x24},
			{Role: RoleLights, Chip: ChipPCA9685, Bus: SimBus, Addr: 0x40},
		},
		Lines:   headerPins,
		Printer: Serial{Device: "sim", Baud: 19200, Flow: "none"},
		Scanner: "sim",
	},
}

// Names lists the known boards, sorted.
func Names() []string {
	n := make([]string, 0, len(profiles))
	for k := range profiles {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// ErrUnknownBoard is returned for a board name no profile has.
var ErrUnknownBoard = errors.New("boards: unknown board")

// Load returns the named profile, checked.
func Load(name string) (Profile, error) {
	p, ok := profiles[name]
	if !ok {
		return Profile{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownBoard, name, strings.Join(Names(), ", "))
	}
	// Copy the slices, so a caller that edits its profile cannot change the table.
	p.I2C = append([]I2CDevice(nil), p.I2C...)
	p.Lines = append([]Line(nil), p.Lines...)
	if err := p.Check(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// Check finds wiring that cannot work: two devices at one address on one
// bus, an address outside the 7-bit range I2C allows, one GPIO line used
// twice, or two devices with the same role.
func (p *Profile) Check() error {
	var errs []error
	at := map[string]string{}
	roles := map[string]bool{}
	for _, d := range p.I2C {
		if d.Addr < 0x08 || d.Addr > 0x77 {
			errs = append(errs, fmt.Errorf("%s (%s) at 0x%02x: outside the 7-bit range 0x08-0x77", d.Role, d.Chip, d.Addr))
		}
		k := fmt.Sprintf("%s@0x%02x", d.Bus, d.Addr)
		if other, dup := at[k]; dup {
			errs = append(errs, fmt.Errorf("%s and %s share address 0x%02x on %s", other, d.Role, d.Addr, d.Bus))
		}
		at[k] = d.Role
		if roles[d.Role] {
			errs = append(errs, fmt.Errorf("two devices have the role %s", d.Role))
		}
		roles[d.Role] = true
	}
	pins := map[string]string{}
	for _, l := range p.Lines {
		if other, dup := pins[l.Name]; dup {
			errs = append(errs, fmt.Errorf("%s and %s share %s", other, l.Role, l.Name))
		}
		pins[l.Name] = l.Role
		if roles[l.Role] {
			errs = append(errs, fmt.Errorf("two devices have the role %s", l.Role))
		}
		roles[l.Role] = true
	}
	switch p.Printer.Flow {
	case "none", "rtscts", "xonxoff":
	default:
		errs = append(errs, fmt.Errorf("printer flow control %q (want none, rtscts or xonxoff)", p.Printer.Flow))
	}
	if p.Printer.Baud <= 0 {
		errs = append(errs, fmt.Errorf("printer baud rate %d", p.Printer.Baud))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("boards: profile %s: %w", p.Name, err)
	}
	return nil
}

// ModelPath is where the kernel publishes the board's model string.
const ModelPath = "/proc/device-tree/model"

// Detect names the board from its device-tree model string, read from path
// (normally ModelPath). Anything it does not recognise, including a machine
// with no device tree, is the sim board; reason says why.
func Detect(path string) (name, reason string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Sim, fmt.Sprintf("no device-tree model (%v)", err)
	}
	model := strings.TrimRight(string(b), "\x00\n ")
	for _, m := range []struct{ prefix, board string }{
		{"Raspberry Pi 5", "rpi5"},
		{"Raspberry Pi 4 Model B", "rpi4b"},
		{"Raspberry Pi 400", "rpi4b"},
		{"Raspberry Pi Zero 2 W", "rpizero2w"},
		{"Raspberry Pi Compute Module 4 Rev", "cm4"},
	} {
		if strings.HasPrefix(model, m.prefix) {
			return m.board, fmt.Sprintf("device-tree model %q", model)
		}
	}
	return Sim, fmt.Sprintf("device-tree model %q has no profile", model)
}
