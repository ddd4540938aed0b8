package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/firmware/power"
	"github.com/microretail/kioskd/firmware/printing"
	"github.com/microretail/kioskd/firmware/till"
	"github.com/microretail/kioskd/telemetry"
)

// errReboot is the cause of a shutdown the fleet's reboot command asked for.
var errReboot = errors.New("reboot requested by the fleet")

// fleet is the running MQTT session and what stops it.
type fleet struct {
	s    *telemetry.Session
	stop context.CancelFunc
	done chan struct{}
}

// fleetThresholds are the policy's thresholds with the fleet's in place
// of the config file's; base gives what the fleet does not set.
func fleetThresholds(base power.Thresholds, p *telemetry.PowerThresholds) power.Thresholds {
	if p == nil {
		return base
	}
	base.Debounce, base.LowSoC, base.CriticalSoC = time.Duration(p.Debounce), p.LowSoC, p.CriticalSoC
	base.CriticalCellVolts, base.CriticalRuntime = p.CriticalCellVolts, time.Duration(p.CriticalRuntime)
	base.RestoreHysteresisSoC = p.RestoreHysteresisSoC
	return base
}

// startFleet starts the MQTT session, or returns nil with no broker. The
// till never waits on it: the session connects in the background and the
// till sells offline meanwhile.
func startFleet(started time.Time, cfg Config, profile boards.Profile, l *ledger.Ledger, t *till.Till, ps *peripherals, otaInstall telemetry.CommandFunc,
	auto *power.Automation, hub *events.Hub, reboot context.CancelCauseFunc, log zerolog.Logger) (*fleet, error) {
	if cfg.MQTT == "" {
		return nil, nil
	}
	dir := filepath.Join(cfg.Data, "telemetry")
	// The fleet's config applies over the menu and power thresholds of the
	// kiosk's own config file, the same way when it arrives and at every
	// start.
	base := t.Catalog().Menu()
	baseTh := cfg.Power.thresholds()
	store, err := telemetry.OpenConfigStore(filepath.Join(dir, "config.json"), func(d telemetry.DesiredConfig) (func(), error) {
		m, err := d.Menu(base)
		if err != nil {
			return nil, err
		}
		c, err := till.BuildCatalog(m)
		if err != nil {
			return nil, err
		}
		th := fleetThresholds(baseTh, d.Power)
		if err := th.Check(); err != nil {
			return nil, err
		}
		return func() {
			t.SetCatalog(c)
			_ = auto.SetThresholds(th) // checked above
			log.Info().Uint64("version", d.Version).Int("products", len(m.Products)).Msg("fleet config applied")
		}, nil
	})
	if err != nil {
		// A bad persisted config must not keep the kiosk off the fleet:
		// run with the local catalog, and let the fleet send a new one.
		log.Error().Err(err).Msg("the fleet's config is not applied")
	}
	s, err := telemetry.New(telemetry.Options{
		Broker: cfg.MQTT, KioskID: cfg.KioskID, Version: Version, Board: profile.Name,
		TLS:      telemetry.TLSFiles{CA: cfg.Fleet.CA, Cert: cfg.Fleet.Cert, Key: cfg.Fleet.Key},
		Username: cfg.Fleet.Username, Password: cfg.Fleet.Password,
		StateDir: dir, Ledger: l, Events: hub, Started: started,
		Power:   func() telemetry.Power { return powerReport(ps) },
		Devices: ps.DeviceStates,
		CanSell: func() bool { return t.Ready() == nil },

		PowerEvery: every(cfg.Fleet.PowerEvery), BatteryPowerEvery: every(cfg.Fleet.BatteryPowerEvery),
		HealthEvery: every(cfg.Fleet.HealthEvery),
		BatchMax:    cfg.Fleet.BatchMax, BatchBytes: cfg.Fleet.BatchBytes, AckTimeout: every(cfg.Fleet.AckTimeout),
		Config: store,
		Commands: map[string]telemetry.CommandFunc{
			"lights":     ps.lightsCommand,
			"print_test": func(ctx context.Context, _ json.RawMessage) (any, error) { return ps.printTest(cfg.KioskID) },
			"reboot": func(context.Context, json.RawMessage) (any, error) {
				// The result goes out first; the clean shutdown follows.
				time.AfterFunc(500*time.Millisecond, func() { reboot(errReboot) })
				return map[string]any{"rebooting": true}, nil
			},
			"ota_install": otaInstall,
		},
		Log: log,
	})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	f := &fleet{s: s, stop: stop, done: make(chan struct{})}
	go func() { defer close(f.done); s.Run(ctx) }()
	ps.fleet.Store(s)
	log.Info().Str("broker", cfg.MQTT).Uint64("boot", s.Boot()).Msg("fleet link started")
	return f, nil
}

// close stops the session and says goodbye with the reason.
func (f *fleet) close(reason string) {
	if f == nil {
		return
	}
	f.stop()
	// A stalled link can hold a publish for paho's write timeout; the
	// shutdown budget cannot wait that long, and the ledger is safe
	// whatever the session is doing.
	select {
	case <-f.done:
	case <-time.After(time.Second):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	f.s.Report(ctx)
	f.s.Stop(ctx, reason)
}

// powerReport is tele/power from the sensors' latest readings.
func powerReport(ps *peripherals) telemetry.Power {
	st := ps.powerStatus()
	p := telemetry.Power{Mains: st.Mains == nil || *st.Mains, Mode: st.Mode, MainsSource: string(st.MainsSource)}
	b := st.Battery
	if b.Volts != nil || b.SOC != nil {
		p.Battery = &telemetry.Battery{}
		if b.Volts != nil {
			p.Battery.Volts = *b.Volts
		}
		if b.Amps != nil {
			p.Battery.Amps = *b.Amps
		}
		if b.SOC != nil {
			p.Battery.SoC = *b.SOC
		}
		if b.RuntimeS != nil {
			p.Battery.RuntimeS = *b.RuntimeS
		}
		if e := st.Estimate; e != nil {
			p.Battery.RuntimeSource, p.Battery.RuntimeNote = e.Source, e.Note
		}
	}
	return p
}

// lightsCommand sets a lighting scene: {"scene":"open"}.
func (ps *peripherals) lightsCommand(_ context.Context, args json.RawMessage) (any, error) {
	var a struct {
		Scene string `json:"scene"`
	}
	if err := strictArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Scene == "" {
		return nil, fmt.Errorf("lights: want {\"scene\":…}, one of %s", strings.Join(ps.lights.Scenes(), ", "))
	}
	if err := ps.lights.SetScene(a.Scene); err != nil {
		return nil, fmt.Errorf("lights: %w (scenes: %s)", err, strings.Join(ps.lights.Scenes(), ", "))
	}
	return map[string]any{"scene": a.Scene}, nil
}

// printTest queues a test page behind the receipts.
func (ps *peripherals) printTest(kioskID string) (any, error) {
	q := ps.receipts.Load()
	if q == nil {
		return nil, errors.New("print_test: receipt printing is not running")
	}
	now := time.Now()
	b, err := ps.layout.TestPage(kioskID, Version, now.UTC().Format(time.RFC3339), now)
	if err != nil {
		return nil, err
	}
	if err := q.Print(printing.Document{Name: "test page", Data: b}); err != nil {
		return nil, err
	}
	return map[string]any{"queued": true, "printer": q.State()}, nil
}

// strictArgs decodes a command's args, refusing fields it does not know.
func strictArgs(args json.RawMessage, v any) error {
	if len(args) == 0 {
		return nil
	}
	d := json.NewDecoder(strings.NewReader(string(args)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: args: %v", telemetry.ErrMalformed, err)
	}
	return nil
}
