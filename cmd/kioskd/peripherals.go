package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"periph.io/x/conn/v3/i2c"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/drivers/ina219"
	"github.com/microretail/kioskd/drivers/mains"
	"github.com/microretail/kioskd/drivers/max17048"
	"github.com/microretail/kioskd/drivers/pca9685"
	"github.com/microretail/kioskd/drivers/pn532"
	"github.com/microretail/kioskd/drivers/scanner"
	"github.com/microretail/kioskd/firmware/cards"
	"github.com/microretail/kioskd/firmware/devices"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/firmware/lighting"
	"github.com/microretail/kioskd/firmware/power"
	"github.com/microretail/kioskd/firmware/printing"
	"github.com/microretail/kioskd/firmware/receipt"
	"github.com/microretail/kioskd/firmware/sim"
	"github.com/microretail/kioskd/firmware/till"
	"github.com/microretail/kioskd/telemetry"
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
	hub     *events.Hub
	till    atomic.Pointer[till.Till] // where scans go, once the ledger is open

	hid         *scanner.HID // a keyboard-wedge scanner, running on its own
	stopScanner context.CancelFunc
	scannerDone chan struct{}

	receipts atomic.Pointer[printing.Queue]
	// layout, kioskID and currency print Z-reports; set before receipts.
	layout            receipt.Layout
	kioskID, currency string

	broker string                            // the configured broker; "" runs offline
	fleet  atomic.Pointer[telemetry.Session] // the fleet link once it is started
	auto   atomic.Pointer[power.Automation]  // battery-mode automation once it runs
	// background holds work that can wait (OTA downloads) while the
	// battery-mode automation sheds load.
	background power.Gate
}

// powerStatus is the power as the screen and the fleet see it: the
// sensors' readings, with the automation's mode and runtime estimate.
func (ps *peripherals) powerStatus() power.Status {
	st := ps.sensors.Status()
	if a := ps.auto.Load(); a != nil {
		st.Mode = string(a.Mode())
		m, src := a.Mains()
		if st.MainsSource = src; src != power.SourceLine {
			st.Mains = m // the battery's trend stands in for the line
		}
		if e, ok := a.Estimate(); ok {
			st.Battery.RuntimeS = &e.RuntimeS
			st.Estimate = &e
		}
		if held, why := ps.background.Held(); held {
			st.BackgroundHeld = why
		}
	}
	return st
}

// startPeripherals opens every device the profile wires, each under
// supervision. Nothing here waits for a device: the till comes up with
// whatever answers, and the rest follow as they do.
func startPeripherals(p boards.Profile, hw hardware, world *sim.World, cfg Config, hub *events.Hub, log zerolog.Logger) (*peripherals, error) {
	lights, err := lighting.New(lighting.Options{
		Scenes: cfg.Lights.Scenes, Fade: cfg.Lights.fade(), Start: lighting.Off, Logger: log, Events: hub,
	})
	if err != nil {
		return nil, err
	}
	ps := &peripherals{
		sup:     devices.New(devices.Options{Logger: log, Events: hub}),
		sensors: power.NewSensors(power.Options{Logger: log, Events: hub, Cells: cfg.Power.Cells}),
		lights:  lights,
		cards:   cards.NewReader(cards.Options{Logger: log, Events: hub}),
		hub:     hub,
		broker:  cfg.MQTT,
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
	if err := ps.startScanner(p, cfg.Scanner, world, log); err != nil {
		ps.Close()
		return nil, err
	}
	return ps, nil
}

// startReceipts starts the receipt printer and its queue on the ledger.
// Jobs a crash left half sent are marked in doubt before anything prints.
func (ps *peripherals) startReceipts(ctx context.Context, l *ledger.Ledger, p boards.Profile, world *sim.World, cfg Config, log zerolog.Logger) error {
	if !cfg.Printer.Enabled {
		return nil
	}
	paper, _ := cfg.Printer.paper()                      // checked with the config
	cp, _ := escpos.CodePageByName(cfg.Printer.CodePage) // checked with the config
	loc, _ := time.LoadLocation(cfg.Shop.Timezone)
	ps.layout = receipt.Layout{
		Paper: paper, CodePage: cp, Location: loc,
		Shop: receipt.Shop{Name: cfg.Shop.Name, Address: cfg.Shop.Address, Phone: cfg.Shop.Phone, Footer: cfg.Shop.Footer, Offer: cfg.Shop.Offer},
	}
	ps.kioskID, ps.currency = cfg.KioskID, cfg.Shop.Currency
	q := printing.New(printing.Options{Ledger: l, Events: ps.hub, Logger: log, Layout: ps.layout})
	if err := q.Recover(ctx); err != nil {
		return err
	}
	link, err := newPrinterLink(p, cfg.Printer, world, log)
	if err != nil {
		return err
	}
	ps.receipts.Store(q)
	ps.sup.Start(devices.Spec{Name: "printer", Chip: "escpos", Every: printerEvery,
		Device: &printerDevice{link: link, queue: q, log: log, clock: time.Now}})
	return nil
}

// setTill sends scans to t from now on.
func (ps *peripherals) setTill(t *till.Till) { ps.till.Store(t) }

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
func (ps *peripherals) DeviceStates() map[string]string {
	m := ps.sup.States()
	if s, ok := ps.scannerState(); ok {
		m["scanner"] = s
	}
	return m
}

// StateExtras implements till.Peripherals.
func (ps *peripherals) StateExtras() map[string]any {
	m := map[string]any{
		"power":         ps.powerStatus(),
		"device_health": ps.sup.Health(),
		"lights":        map[string]any{"scene": ps.lights.Scene(), "levels": ps.lights.Shown(), "scenes": ps.lights.Scenes()},
	}
	if t, ok := ps.cards.Last(); ok {
		m["last_tap"] = t
	}
	if q := ps.receipts.Load(); q != nil {
		m["printer"] = q.State()
	}
	m["mqtt"] = ps.fleetState()
	return m
}

// fleetState is the fleet link as the status bar shows it.
func (ps *peripherals) fleetState() map[string]any {
	if f := ps.fleet.Load(); f != nil {
		return f.State()
	}
	if ps.broker != "" {
		return map[string]any{"state": "connecting", "broker": ps.broker}
	}
	return map[string]any{"state": "off"}
}

// printReport queues a Z-report behind the receipts.
func (ps *peripherals) printReport(r ledger.Report) error {
	q := ps.receipts.Load()
	if q == nil {
		return fmt.Errorf("%w: receipt printing has not started", ledger.ErrUnavailable)
	}
	b, err := ps.layout.ZReport(r, ps.kioskID, ps.currency, time.Now())
	if err != nil {
		return err
	}
	return q.Print(printing.Document{Name: "z-report " + r.Day.String(), Data: b})
}

// devicesBudget bounds how long stopping the devices may take at shutdown.
const devicesBudget = 2 * time.Second

// Close stops every device, within devicesBudget. It may be called twice.
func (ps *peripherals) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), devicesBudget)
	defer cancel()
	if ps.stopScanner != nil {
		ps.stopScanner()
		select {
		case <-ps.scannerDone:
		case <-time.After(scannerBudget):
		}
	}
	ps.sup.Close(ctx)
}
