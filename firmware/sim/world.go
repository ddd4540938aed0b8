// Package sim is the physical world of the sim board: the emulated chips
// on an emulated I2C bus and GPIO lines, and a small model of the battery
// and mains behind them. kioskd's drivers talk to these emulators exactly
// as they talk to the real chips, so every reading on the sim board has
// travelled through real driver code.
//
// The /api/sim endpoints change only what the chips sense: mains present
// or not, the battery's charge and how fast it drains, a card in the NFC
// field. They never set a reading directly. Fault injection (a NACK storm,
// a chip reset, garbage on the bus) reaches the drivers the same way.
package sim

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/drivers/ina219"
	"github.com/microretail/kioskd/drivers/max17048"
	"github.com/microretail/kioskd/drivers/pca9685"
	"github.com/microretail/kioskd/drivers/pn532"
	"github.com/microretail/kioskd/drivers/scanner"
)

// The battery model: one 18650-class cell, as on a Geekworm or Waveshare
// UPS HAT, seen by both the fuel gauge and the shunt.
const (
	CapacityAh      = 3.0  // cell capacity
	InternalOhms    = 0.08 // cell internal resistance: the voltage sags under load
	DefaultDrain    = 0.5  // %/min on battery: a Pi 4, the screen and an idle printer, about 200 minutes
	ChargePerMinute = 1.0  // %/min while mains charges the cell
	ShuntMilliOhms  = 100  // the HAT's shunt resistor
	MaxTimeScale    = 3600 // the fastest the battery's clock may run
)

// LightAmps is what each of the PWM board's channels draws from the cell
// at full duty: 12 V LED strips (a counter strip, the sign, a shelf) behind
// the board's MOSFETs, fed through the UPS HAT's boost converter. The draw
// follows the duty cycle, so a dimmer scene is a longer runtime.
var LightAmps = []float64{0.6, 0.4, 0.3}

// ocv is the resting voltage of a Li-ion cell by state of charge.
var ocv = []struct{ soc, volts float64 }{
	{0, 3.00}, {5, 3.45}, {10, 3.60}, {20, 3.69}, {40, 3.79}, {60, 3.88}, {80, 4.00}, {100, 4.20},
}

// OCV interpolates the open-circuit voltage at soc percent.
func OCV(soc float64) float64 {
	soc = math.Max(0, math.Min(100, soc))
	for i := 1; i < len(ocv); i++ {
		if soc <= ocv[i].soc {
			a, b := ocv[i-1], ocv[i]
			return a.volts + (b.volts-a.volts)*(soc-a.soc)/(b.soc-a.soc)
		}
	}
	return ocv[len(ocv)-1].volts
}

// World is the sim board's hardware. It is safe for concurrent use.
type World struct {
	Bus   *emu.Bus
	Gauge *max17048.Emulator
	Shunt *ina219.Emulator
	NFC   *pn532.Emulator
	PWM   *pca9685.Emulator
	// Printer is the receipt printer, on a board whose profile names the
	// "sim" printer device.
	Printer *escpos.Emulator
	lines   map[string]*emu.Pin
	addrs   map[string]uint16 // role → address
	mains   boards.Line

	clock func() time.Time

	mu      sync.Mutex
	mainsOn bool
	present bool    // a battery is fitted
	soc     float64 // percent
	drain   float64 // %/min the base load (board, screen, idle printer) takes on battery
	scale   float64 // the battery's clock against the wall clock: 60 runs an hour a minute
	amps    float64 // battery current, negative discharging
	last    time.Time
	tapGen  int               // which tap the pending removal belongs to
	faults  map[string]string // the GPIO lines' faults, by role

	scanIn, scanOut *os.File // the emulated scanner's pipe: driver end, emulator end
	keyboard        *scanner.KeyboardEmulator
}

// Options configures a World.
type Options struct {
	Clock func() time.Time
	Seed  uint64 // for the bus's injected garbage
	// Paper is the emulated printer's paper width; default 58 mm.
	Paper escpos.Paper
}

// New builds the world a board profile describes: an emulator for every
// chip and line the profile wires.
func New(p boards.Profile, opts Options) (*World, error) {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	w := &World{
		Bus:   emu.NewBus(boards.SimBus, opts.Seed),
		lines: map[string]*emu.Pin{},
		addrs: map[string]uint16{},
		clock: opts.Clock,
		// A kiosk on the bench: mains on, battery fitted and 80% full.
		mainsOn: true, present: true, soc: 80, drain: DefaultDrain, scale: 1,
	}
	w.last = w.clock()
	for _, d := range p.I2C {
		var c emu.Chip
		switch d.Chip {
		case boards.ChipMAX17048:
			w.Gauge = max17048.NewEmulator(1)
			c = w.Gauge
		case boards.ChipINA219:
			w.Shunt = ina219.NewEmulator(ina219.INA219, ShuntMilliOhms*physic.MilliOhm)
			w.Shunt.SetClock(opts.Clock) // its conversions take the world's time
			c = w.Shunt
		case boards.ChipPN532:
			w.NFC = pn532.NewEmulator()
			c = w.NFC
		case boards.ChipPCA9685:
			w.PWM = pca9685.NewEmulator()
			c = w.PWM
		default:
			return nil, fmt.Errorf("sim: no emulator for chip %q", d.Chip)
		}
		w.Bus.Attach(d.Addr, c)
		w.addrs[d.Role] = d.Addr
	}
	for _, l := range p.Lines {
		var num int
		_, _ = fmt.Sscanf(l.Name, "GPIO%d", &num)
		// An idle line rests at its inactive level.
		w.lines[l.Name] = emu.NewPin(l.Name, num, gpio.Level(!l.ActiveHigh))
		switch l.Role {
		case boards.RoleMainsDetect:
			w.mains = l
		case boards.RoleNFCIRQ:
			if w.NFC != nil {
				w.NFC.SetIRQ(w.lines[l.Name])
			}
		case boards.RoleNFCReset:
			if w.NFC != nil {
				w.lines[l.Name].OnOut(w.NFC.ResetLine())
			}
		}
	}
	if p.Printer.Device == "sim" || p.Scanner == "sim" {
		paper := opts.Paper
		if paper.Columns == 0 {
			paper = escpos.Paper58
		}
		if err := w.newPeripherals(paper); err != nil {
			return nil, err
		}
	}
	w.mu.Lock()
	w.applyLocked()
	w.mu.Unlock()
	return w, nil
}

// I2C returns the bus the profile names; the sim board has one.
func (w *World) I2C(name string) (i2c.Bus, error) {
	if name != boards.SimBus {
		return nil, fmt.Errorf("sim: no I2C bus %q", name)
	}
	return w.Bus, nil
}

// Line returns the GPIO line with the given BCM name.
func (w *World) Line(name string) (gpio.PinIO, error) {
	if p, ok := w.lines[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("sim: no GPIO line %q", name)
}

// Pin is Line for tests that drive the line's emulator.
func (w *World) Pin(name string) *emu.Pin { return w.lines[name] }

// Addr returns the address of the chip with the given role.
func (w *World) Addr(role string) (uint16, bool) {
	a, ok := w.addrs[role]
	return a, ok
}

// Advance runs the battery model up to now: charge drains on battery by
// the load (the base load plus the lights as the PWM board drives them)
// and fills on mains; the chips then sense the new cell voltage and
// current. The battery's clock runs at the time scale; the currents the
// chips sense stay those of the real load.
func (w *World) Advance() {
	now := w.clock()
	w.mu.Lock()
	defer w.mu.Unlock()
	dt := now.Sub(w.last).Minutes() * w.scale
	w.last = now
	if dt > 0 && w.present {
		if w.mainsOn {
			w.soc = math.Min(100, w.soc+ChargePerMinute*dt)
		} else {
			w.soc = math.Max(0, w.soc-ampsToPctPerMin(w.loadAmpsLocked())*dt)
		}
	}
	w.applyLocked()
}

// Percent per minute and amps: 1 %/min of 3 Ah is 1.8 A.
func pctPerMinToAmps(p float64) float64 { return p * 60 / 100 * CapacityAh }
func ampsToPctPerMin(a float64) float64 { return a / CapacityAh * 100 / 60 }

// lightsAmps is what the lights draw from the cell, by the PWM board's
// output duty on each channel.
func (w *World) lightsAmps() float64 {
	if w.PWM == nil {
		return 0
	}
	a := 0.0
	for ch, full := range LightAmps {
		a += full * w.PWM.Duty(ch)
	}
	return a
}

// loadAmpsLocked is what the kiosk draws from the cell on battery.
func (w *World) loadAmpsLocked() float64 { return pctPerMinToAmps(w.drain) + w.lightsAmps() }

// applyLocked sets what the chips sense from the model's state.
func (w *World) applyLocked() {
	w.amps = 0
	switch {
	case !w.present:
	case !w.mainsOn && w.soc > 0:
		w.amps = -w.loadAmpsLocked()
	case w.mainsOn && w.soc < 100:
		w.amps = pctPerMinToAmps(ChargePerMinute)
	}
	pctPerMin := ampsToPctPerMin(w.amps)
	volts := OCV(w.soc) + w.amps*InternalOhms
	if !w.present {
		volts = 0
	}
	if w.Gauge != nil {
		w.Gauge.SetBattery(w.present)
		w.Gauge.SetCell(physic.ElectricPotential(volts * float64(physic.Volt)))
		w.Gauge.SetSOC(w.soc)
		w.Gauge.SetRate(pctPerMin * 60)
	}
	if w.Shunt != nil {
		w.Shunt.SetBus(physic.ElectricPotential(volts * float64(physic.Volt)))
		w.Shunt.SetCurrent(physic.ElectricCurrent(w.amps * float64(physic.Ampere)))
	}
	if p := w.lines[w.mains.Name]; p != nil {
		p.Drive(gpio.Level(w.mainsOn == w.mains.ActiveHigh))
	}
}

// Run advances the model every second until ctx ends.
func (w *World) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Advance()
		}
	}
}

// SetMains plugs mains in or pulls it.
func (w *World) SetMains(on bool) {
	w.Advance()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mainsOn = on
	w.applyLocked()
}

// StickMains sticks the mains-detect line at the level it is at now (a
// failed optocoupler): pulling or plugging mains no longer moves it. false
// frees it.
func (w *World) StickMains(stuck bool) {
	p := w.lines[w.mains.Name]
	if p == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !stuck {
		p.Unstick()
		w.faults = nil
		return
	}
	p.Stick(p.Level())
	w.faults = map[string]string{boards.RoleMainsDetect: "stuck"}
}

// SetBattery sets the charge (percent, if soc is not nil), the base
// load's drain on battery (percent per minute, if drain is not nil) and
// whether a battery is fitted (if present is not nil).
func (w *World) SetBattery(soc, drain *float64, present *bool) {
	w.Advance()
	w.mu.Lock()
	defer w.mu.Unlock()
	if soc != nil {
		w.soc = *soc
	}
	if drain != nil {
		w.drain = *drain
	}
	if present != nil {
		w.present = *present
	}
	w.applyLocked()
}

// SetTimeScale runs the battery's clock scale times the wall clock, so a
// test drains a pack in seconds at a physical current; 1 is real time.
func (w *World) SetTimeScale(scale float64) error {
	if scale < 1 || scale > MaxTimeScale {
		return fmt.Errorf("sim: time_scale %v is not 1-%d", scale, MaxTimeScale)
	}
	w.Advance()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scale = scale
	return nil
}

// Tap holds a card in the NFC field for hold, then takes it away. A new
// tap replaces a card still in the field.
func (w *World) Tap(c pn532.Card, hold time.Duration) error {
	if w.NFC == nil {
		return fmt.Errorf("sim: this board has no NFC reader")
	}
	w.mu.Lock()
	w.tapGen++
	gen := w.tapGen
	w.mu.Unlock()
	w.NFC.Place(c)
	time.AfterFunc(hold, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.tapGen == gen {
			w.NFC.Remove()
		}
	})
	return nil
}

// Physics is the model's state, for GET /api/sim/world.
type Physics struct {
	Mains   bool    `json:"mains"`
	Battery bool    `json:"battery_fitted"`
	SOC     float64 `json:"soc"`
	Drain   float64 `json:"drain_pct_per_min"` // the base load's
	Amps    float64 `json:"amps"`
	// LightsAmps is the lights' share of the load on battery.
	LightsAmps float64           `json:"lights_amps"`
	TimeScale  float64           `json:"time_scale"`
	CellVolts  float64           `json:"cell_volts"`
	Lights     []float64         `json:"lights,omitempty"` // the PWM board's output duty per channel, 0-1
	Faults     map[string]string `json:"faults"`
}

// State returns the model's state now.
func (w *World) State() Physics {
	w.Advance()
	w.mu.Lock()
	ph := Physics{Mains: w.mainsOn, Battery: w.present, SOC: math.Round(w.soc*100) / 100, Drain: w.drain,
		Amps: math.Round(w.amps*1000) / 1000, LightsAmps: math.Round(w.lightsAmps()*1000) / 1000, TimeScale: w.scale,
		Faults: map[string]string{}}
	if w.present {
		ph.CellVolts = math.Round((OCV(w.soc)+w.amps*InternalOhms)*1000) / 1000
	}
	w.mu.Unlock()
	if w.PWM != nil {
		for ch := 0; ch < pca9685.Channels; ch++ {
			ph.Lights = append(ph.Lights, math.Round(w.PWM.Duty(ch)*1000)/1000)
		}
	}
	for role, a := range w.addrs {
		ph.Faults[role] = w.Bus.Fault(a).String()
	}
	if w.lines[w.mains.Name] != nil {
		w.mu.Lock()
		ph.Faults[boards.RoleMainsDetect] = "none"
		if f := w.faults[boards.RoleMainsDetect]; f != "" {
			ph.Faults[boards.RoleMainsDetect] = f
		}
		w.mu.Unlock()
	}
	return ph
}
