package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"periph.io/x/conn/v3/i2c"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/ina219"
	"github.com/microretail/kioskd/drivers/mains"
	"github.com/microretail/kioskd/drivers/max17048"
	"github.com/microretail/kioskd/drivers/pca9685"
	"github.com/microretail/kioskd/drivers/pn532"
	"github.com/microretail/kioskd/firmware/cards"
	"github.com/microretail/kioskd/firmware/devices"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/lighting"
	"github.com/microretail/kioskd/firmware/power"
)

// How often each kind of device is worked.
const (
	shuntEvery = time.Second            // battery current changes with every print
	gaugeEvery = 2 * time.Second        // ModelGauge updates SOC slowly
	nfcEvery   = 150 * time.Millisecond // a card held to the reader is seen within a blink
)

// peripherals are the kiosk's devices, wired from a board profile and
// supervised. It implements till.Peripherals.
type peripherals struct {
	sup     *devices.Supervisor
	sensors *power.Sensors
	lights  *lighting.Lights
	cards   *cards.Reader
}

// startPeripherals opens every device the profile wires, each under
// supervision. Nothing here waits for a device: the till comes up with
// whatever answers, and the rest follow as they do.
func startPeripherals(p boards.Profile, hw hardware, cfg Config, hub *events.Hub, log zerolog.Logger) (*peripherals, error) {
	lights, err := lighting.New(lighting.Options{
		Scenes: cfg.Lights.Scenes, Fade: cfg.Lights.fade(), Start: lighting.Off, Logger: log, Events: hub,
	})
	if err != nil {
		return nil, err
	}
	ps := &peripherals{
		sup:     devices.New(devices.Options{Logger: log, Events: hub}),
		sensors: power.NewSensors(power.Options{Logger: log, Events: hub}),
		lights:  lights,
		cards:   cards.NewReader(cards.Options{Logger: log, Events: hub}),
	}
	for _, d := range p.I2C {
		spec := devices.Spec{Name: d.Role, Chip: d.Chip}
		switch d.Chip {
		case boards.ChipMAX17048:
			spec.Every = gaugeEvery
			spec.Device = ps.sensors.GaugeDevice(onBus(hw, d, func(b i2c.Bus, a uint16) (*max17048.Dev, error) {
				return max17048.New(b, a, &max17048.DefaultOpts)
			}))
		case boards.ChipINA219:
			spec.Every = shuntEvery
			spec.Device = ps.sensors.ShuntDevice(onBus(hw, d, func(b i2c.Bus, a uint16) (*ina219.Dev, error) {
				return ina219.New(b, a, &ina219.DefaultOpts)
			}))
		case boards.ChipPN532:
			spec.Every = nfcEvery
			spec.Device = ps.cards.Device(onBus(hw, d, func(b i2c.Bus, a uint16) (*pn532.Dev, error) {
				// Without its IRQ or reset line the reader still works: it
				// polls the status byte and is reset by power only.
				opts := pn532.DefaultOpts
				if l, ok := p.LineFor(boards.RoleNFCIRQ); ok {
					if pin, err := hw.Line(l.Name); err == nil {
						opts.IRQ = pin
					}
				}
				if l, ok := p.LineFor(boards.RoleNFCReset); ok {
					if pin, err := hw.Line(l.Name); err == nil {
						opts.Reset = pin
					}
				}
				return pn532.New(b, a, &opts)
			}))
		case boards.ChipPCA9685:
			// The lights pace their own frames: Every stays 0.
			spec.Device = lights.Device(onBus(hw, d, func(b i2c.Bus, a uint16) (lighting.Output, error) {
				dev, err := pca9685.New(b, a, &pca9685.DefaultOpts)
				if err != nil {
					return nil, err
				}
				return lighting.PWMBoard{Dev: dev}, nil
			}))
		default:
			ps.Close() // the devices started so far
			return nil, fmt.Errorf("no driver for chip %q (%s)", d.Chip, d.Role)
		}
		ps.sup.Start(spec)
	}

	if l, ok := p.LineFor(boards.RoleMainsDetect); ok {
		ps.sup.Start(devices.Spec{Name: l.Role, Chip: "mains", Device: ps.sensors.MainsDevice(func(context.Context) (*mains.Dev, error) {
			pin, err := hw.Line(l.Name)
			if err != nil {
				return nil, err
			}
			opts := mains.DefaultOpts
			opts.ActiveHigh = l.ActiveHigh
			return mains.New(pin, &opts)
		})})
	}
	if l, ok := p.LineFor(boards.RoleLights); ok {
		ps.sup.Start(devices.Spec{Name: l.Role, Chip: "gpio", Device: lights.Device(func(context.Context) (lighting.Output, error) {
			pin, err := hw.Line(l.Name)
			if err != nil {
				return nil, err
			}
			return &lighting.Strip{Pin: pin, ActiveHigh: l.ActiveHigh}, nil
		})})
	}
	return ps, nil
}

// onBus returns an opener for a chip: it finds the chip's bus, then makes
// its driver there. A bus that is missing now is looked for again at the
// next open.
func onBus[D any](hw hardware, d boards.I2CDevice, newDev func(i2c.Bus, uint16) (D, error)) func(context.Context) (D, error) {
	return func(context.Context) (D, error) {
		b, err := hw.I2C(d.Bus)
		if err != nil {
			var none D
			return none, err
		}
		return newDev(b, d.Addr)
	}
}

// DeviceStates implements till.Peripherals.
func (ps *peripherals) DeviceStates() map[string]string { return ps.sup.States() }

// StateExtras implements till.Peripherals.
func (ps *peripherals) StateExtras() map[string]any {
	m := map[string]any{
		"power":         ps.sensors.Status(),
		"device_health": ps.sup.Health(),
		"lights":        map[string]any{"scene": ps.lights.Scene(), "levels": ps.lights.Shown(), "scenes": ps.lights.Scenes()},
	}
	if t, ok := ps.cards.Last(); ok {
		m["last_tap"] = t
	}
	return m
}

// devicesBudget bounds how long stopping the devices may take at shutdown.
const devicesBudget = 2 * time.Second

// Close stops every device, within devicesBudget. It may be called twice.
func (ps *peripherals) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), devicesBudget)
	defer cancel()
	ps.sup.Close(ctx)
}
