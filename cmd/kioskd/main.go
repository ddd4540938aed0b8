// Command kioskd is the firmware of a point-of-sale kiosk: it boots into
// the till, drives the stall's peripherals, keeps every sale durable in the
// ledger and reports to the fleet. See ../../README.md and DESIGN.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
	_ "time/tzdata" // a kiosk image may lack /usr/share/zoneinfo

	"github.com/coreos/go-systemd/v22/daemon"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/firmware/lighting"
	"github.com/microretail/kioskd/firmware/power"
	"github.com/microretail/kioskd/firmware/sim"
	"github.com/microretail/kioskd/firmware/till"
)

// Version is set at build time: -ldflags "-X main.Version=…".
var Version = "dev"

// shutdownBudget is how long a SIGTERM may take, end to end. DESIGN.md
// promises an exit within 5 s; the rest of the budget is slack.
const shutdownBudget = 4 * time.Second

// devBrokerAddr is where --dev's embedded broker listens.
const devBrokerAddr = "127.0.0.1:1883"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "probe" {
		return probe(args[1:], stdout, stderr)
	}
	cfg, err := loadConfig(args, stderr)
	switch {
	case errors.Is(err, errVersion):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "kioskd:", err)
		return 2
	}
	log := newLogger(cfg, stdout)
	// The OTA launcher: an installed release, or a trial, runs in place
	// of this binary (Exec does not return).
	if err := launch(cfg, log); err != nil {
		log.Error().Err(err).Msg("ota: launcher; running the packaged kioskd")
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = serve(ctx, cfg, log)
	var rb rebootRequest
	var po powerOff
	var or otaRestart
	switch {
	case errors.As(err, &or):
		err = or.restart(log)
	case errors.As(err, &rb):
		err = rb.reboot(log)
	case errors.As(err, &po):
		err = po.do(log)
	}
	if err != nil {
		log.Error().Err(err).Msg("kioskd stopped")
		return 1
	}
	return 0
}

// rebootRequest is serve's answer when the fleet asked for a reboot: it
// has shut down cleanly, and run reboots once everything is closed.
type rebootRequest struct {
	sim bool
	sp  *systemPower
}

func (r rebootRequest) Error() string { return errReboot.Error() }

// reboot restarts the board, or on the sim board, which must never touch
// the host, kioskd itself in place: the same process id, a new boot.
func (r rebootRequest) reboot(log zerolog.Logger) error {
	if r.sim {
		// Through the launcher, as a board's boot would: a release on
		// trial counts the boot, a newer packaged binary wins.
		log.Info().Msg("sim board: rebooting kioskd in place")
		return otaRestart{why: "reboot"}.restart(log)
	}
	log.Info().Msg("rebooting the board")
	return r.sp.act("reboot")
}

func newLogger(cfg Config, stdout io.Writer) zerolog.Logger {
	w := stdout
	console := cfg.Log.Format == "console"
	if cfg.Log.Format == "auto" {
		if f, ok := stdout.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				console = true
			}
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: stdout, TimeFormat: time.TimeOnly}
	}
	level, _ := zerolog.ParseLevel(cfg.Log.Level)
	return zerolog.New(w).Level(level).With().Timestamp().Str("kiosk_id", cfg.KioskID).Logger()
}

// serve runs the kiosk until ctx ends, then shuts it down cleanly: no new
// sales, in-flight checkouts finished and synced, the ledger closed.
func serve(ctx context.Context, cfg Config, log zerolog.Logger) error {
	started := time.Now()
	signals := ctx // SIGTERM and SIGINT, also heard during the closing grace
	ctx, reboot := context.WithCancelCause(ctx)
	defer reboot(nil)
	boardName, why := cfg.Board, "configured"
	if boardName == "" {
		boardName, why = boards.Detect(boards.ModelPath)
	}
	profile, err := boards.Load(boardName)
	if err != nil {
		return err
	}
	if cfg.Board == "" && profile.IsSim() {
		log.Warn().Str("reason", why).Msg("no supported board detected: running the sim board, every peripheral emulated")
	}
	// logind's delay lock holds an outside shutdown back until the ledger
	// is closed; run takes sp over when it powers off or reboots.
	useLogind := cfg.Power.Logind == "on" || cfg.Power.Logind == "auto" && !profile.IsSim()
	sp := openSystemPower(!useLogind, log)
	handed := false
	defer func() {
		if !handed {
			sp.close()
		}
	}()
	sp.watch(signals, reboot)
	log.Info().Str("board", profile.Name).Str("model", profile.Model).Str("why", why).Str("version", Version).Msg("kioskd starting")

	menu := till.Menu{Products: cfg.Catalog, Drops: cfg.Drops, Plans: cfg.Plans}
	if len(menu.Products) == 0 && profile.IsSim() {
		menu = till.SimMenu(time.Now())
		if len(cfg.Plans) > 0 {
			menu.Plans = cfg.Plans
		}
	}
	catalog, err := till.BuildCatalog(menu)
	if err != nil {
		return err
	}
	if len(menu.Products) == 0 {
		log.Warn().Msg("the catalog is empty: add [[catalog]] entries to the config")
	}
	loc, _ := time.LoadLocation(cfg.Shop.Timezone) // checked with the config
	dayStart, _ := cfg.dayStart()

	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("till listener: %w", err)
	}
	// The peripherals come up beside the till, never in its way: each is
	// opened and supervised in the background.
	hub := events.NewHub(0, nil)
	var world *sim.World
	if profile.IsSim() {
		paper, _ := cfg.Printer.paper() // checked with the config
		if world, err = sim.New(profile, sim.Options{Seed: uint64(time.Now().UnixNano()), Paper: paper}); err != nil {
			return err
		}
		defer world.Close()
	}
	hw := openHardware(profile, world)
	defer hw.Close()
	periph, err := startPeripherals(profile, hw, world, cfg, hub, log)
	if err != nil {
		return err
	}
	defer periph.Close()
	opts := till.ServerOptions{
		Identity: till.Identity{KioskID: cfg.KioskID, Board: profile.Name, Version: Version, Currency: cfg.Shop.Currency,
			Shop: cfg.Shop.Name},
		Logger:      log,
		Events:      hub,
		Peripherals: periph,
	}
	if cfg.Printer.Enabled {
		opts.PrintReport = periph.printReport
	}
	if world != nil {
		opts.Sim = world.Handler()
		worldCtx, stopWorld := context.WithCancel(context.Background())
		worldDone := make(chan struct{})
		go func() { defer close(worldDone); world.Run(worldCtx) }()
		defer func() { stopWorld(); <-worldDone }()
	}
	api := till.NewServer(opts)
	api.SetWaiting("opening the ledger")
	httpSrv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	httpSrv.RegisterOnShutdown(hub.Close) // event streams never go idle by themselves
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpSrv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Msg("till listening")

	if cfg.Dev {
		broker, err := startDevBroker()
		if err != nil {
			return err
		}
		defer broker.Close()
		log.Info().Str("addr", devBrokerAddr).Msg("dev MQTT broker up")
	}

	// A release on trial is judged from its start: one whose till never
	// comes up (a ledger it cannot open) fails its trial too.
	var tillUp atomic.Pointer[till.Till]
	agent := newOTAAgent(cfg, profile.Name, &periph.background, periph.fleet.Load, reboot, log)
	otaCtx, stopOTA := context.WithCancel(context.Background())
	defer stopOTA()
	trialDone := make(chan struct{})
	go func() {
		defer close(trialDone)
		agent.checkTrial(otaCtx, func() error {
			if t := tillUp.Load(); t != nil {
				return t.Ready()
			}
			return errors.New("the till is not up yet")
		}, started)
	}()

	l, err := openLedger(ctx, filepath.Join(cfg.Data, "ledger"), ledger.Options{
		KioskID:  cfg.KioskID,
		Currency: cfg.Shop.Currency,
		Location: loc,
		DayStart: dayStart,
		Logger:   log,
		// Only a kiosk that enforces a wallet offline limit pays for
		// keeping the spending it is measured by.
		SpendLimits: cfg.offlineLimit() > 0,
	}, api, log)
	if err != nil { // ctx ended before the ledger opened
		stopOTA()
		<-trialDone
		herr := shutdownHTTP(httpSrv, httpDone, log)
		var restart otaRestart
		if errors.As(context.Cause(ctx), &restart) && herr == nil {
			return restart // a trial that never got its ledger: back to the previous release
		}
		return herr
	}
	if err := periph.startReceipts(ctx, l, profile, world, cfg, log); err != nil {
		// Sales go on without receipts; the jobs wait in the ledger.
		log.Error().Err(err).Msg("receipt printing not started")
	}
	var powerActs atomic.Pointer[powerActions]
	t := till.New(till.Options{Ledger: l, Catalog: catalog, Logger: log, Events: hub, Location: loc,
		Receipts: cfg.Printer.Enabled, Drawer: cfg.Printer.Drawer, OfflineLimit: cfg.offlineLimit(),
		TradingFile: filepath.Join(cfg.Data, "trading"),
		OnTrading: func(open bool) {
			// The lights follow the till: the open scene while trading,
			// unless the power mode has the lights.
			if pa := powerActs.Load(); pa != nil && !pa.onMains() {
				return
			}
			scene := cfg.Lights.ClosedScene
			if open {
				scene = cfg.Lights.Scene
			}
			_ = periph.lights.SetScene(scene) // checked with the config
		}})
	api.SetTill(t)
	periph.setTill(t)
	tillUp.Store(t)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS=selling")
	log.Info().Uint64("head", l.Head()).Uint64("outbox", l.OutboxLen()).Msg("till ready")
	// The automation exists before the fleet link, which hands it the
	// fleet's power thresholds; it runs once the link is up or not.
	var fl *fleet
	pa := &powerActions{cfg: cfg, log: log, hub: hub, lights: periph.lights, background: &periph.background, trading: t.Trading,
		sync: func() {
			if err := l.Flush(); err != nil {
				log.Error().Err(err).Msg("ledger flush on battery")
			}
			if fl != nil {
				fl.s.SyncNow()
			}
		},
		shutdown: func(reason string) { reboot(powerShutdown{reason}) },
		changed: func() {
			if fl != nil {
				fl.s.PowerChanged()
			}
		}}
	// A boot after a battery shutdown waits for mains with the till
	// closed, rather than trade on to the next latch and go down again.
	pa.restFile = filepath.Join(cfg.Data, "power", "battery-shutdown")
	resting := restingReason(pa.restFile)
	if resting != "" {
		pa.rest(t)
	}
	powerActs.Store(pa)
	capacity := cfg.Power.CapacityAh
	if capacity == 0 && profile.IsSim() {
		capacity = sim.CapacityAh // the emulated pack's
	}
	auto, err := power.NewAutomation(periph.sensors, power.AutomationOptions{
		Thresholds: cfg.Power.thresholds(), CapacityAh: capacity, Actions: pa, Resting: resting})
	if err != nil {
		return err // checked with the config
	}
	periph.auto.Store(auto)
	fl, err = startFleet(started, cfg, profile, l, t, periph, agent.install, auto, hub, reboot, log)
	if err != nil {
		// The till sells offline; the outbox waits for a fixed config.
		log.Error().Err(err).Msg("fleet link not started")
	}
	autoCtx, stopAuto := context.WithCancel(context.Background())
	autoDone := make(chan struct{})
	go func() { defer close(autoDone); auto.Run(autoCtx) }()
	// Updates: the job resumed, and the health check when this binary
	// is a release on trial.
	otaDone := make(chan struct{})
	go func() { defer close(otaDone); agent.run(otaCtx) }()

	// The watchdog is petted through the shutdown too (the closing grace
	// can outlast WatchdogSec), and stopped only before the ledger closes.
	wdCtx, stopWatchdog := context.WithCancel(context.Background())
	defer stopWatchdog()
	wdDone := make(chan struct{})
	go func() { defer close(wdDone); watchdog(wdCtx, l, log) }()

	select {
	case <-ctx.Done():
	case err := <-httpDone:
		log.Error().Err(err).Msg("till listener failed")
		httpDone <- err // for shutdownHTTP, which waits on it
	}
	var ps powerShutdown
	if errors.As(context.Cause(ctx), &ps) {
		// The battery is nearly empty: the screen says so, the sale on
		// the counter may still be paid for, nothing new starts.
		_, _ = daemon.SdNotify(false, "STATUS=closing: "+ps.Error())
		t.Closing(ps.Error())
		finishCounter(signals, sp.begun, t, every(cfg.Power.ClosingGrace), log)
	}
	log.Info().Msg("shutting down: no new sales")
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping+"\nSTATUS=shutting down")
	t.Close()
	_ = periph.lights.FadeTo(lighting.Off, 0)
	stopAuto()
	<-autoDone
	stopOTA()
	<-otaDone
	<-trialDone
	pa.wait() // a ledger sync it started
	reason := "stop"
	var restartOTA otaRestart
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errReboot):
		reason = "reboot"
	case errors.As(cause, &ps):
		reason = "shutdown: " + ps.Error()
	case errors.Is(cause, errSystemShutdown):
		reason = "system shutdown"
	case errors.As(cause, &restartOTA):
		reason = "ota restart: " + restartOTA.why
	}
	if ps.reason != "" {
		auto.ShutdownDone() // the fleet's last tele/power says shutdown
	}
	fl.close(reason)
	// The devices stop beside the HTTP drain, each within its own budget.
	devDone := make(chan struct{})
	go func() { defer close(devDone); periph.Close() }()
	herr := shutdownHTTP(httpSrv, httpDone, log)
	<-devDone
	stopWatchdog() // also when the listener failed and ctx is still live
	<-wdDone
	if err := l.Close(); err != nil {
		log.Error().Err(err).Msg("closing the ledger")
		if ps.reason == "" {
			return err
		}
		// Every sale was synced to disk as it was made; a battery that is
		// nearly empty must still power the board off, not restart kioskd.
	} else {
		log.Info().Uint64("head", l.Head()).Msg("ledger closed; bye")
	}
	sp.release() // a shutdown waiting on kioskd may go on
	if herr == nil && restartOTA.why != "" {
		return restartOTA
	}
	if herr == nil && reason == "reboot" {
		handed = true
		return rebootRequest{sim: profile.IsSim(), sp: sp}
	}
	if ps.reason != "" {
		if herr != nil {
			log.Error().Err(herr).Msg("till listener; powering off all the same")
		}
		handed = true
		return powerOff{reason: ps.Error(), exit: profile.IsSim() || cfg.Power.Poweroff == "exit", sp: sp}
	}
	return herr
}

// finishCounter waits, at most grace, for the sale on the counter to be
// paid for or cleared. A SIGTERM (signals ends) or a system shutdown
// (begun closes) cuts the wait short: they have budgets of their own.
func finishCounter(signals context.Context, begun <-chan struct{}, t *till.Till, grace time.Duration, log zerolog.Logger) {
	timeout := time.NewTimer(grace)
	defer timeout.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !t.CounterClear() {
		select {
		case <-timeout.C:
			log.Warn().Dur("grace", grace).Msg("closing: the sale on the counter was not finished in time; it is not recorded")
			return
		case <-signals.Done():
			log.Warn().Msg("closing: stopped before the sale on the counter was finished; it is not recorded")
			return
		case <-begun:
			log.Warn().Msg("closing: the system is shutting down before the sale on the counter was finished; it is not recorded")
			return
		case <-tick.C:
		}
	}
}

// openLedger opens the ledger, retrying with backoff while /healthz says why
// it cannot. It gives up only when ctx ends.
func openLedger(ctx context.Context, dir string, opts ledger.Options, api *till.Server, log zerolog.Logger) (*ledger.Ledger, error) {
	backoff, last := 250*time.Millisecond, ""
	for {
		l, err := ledger.Open(dir, opts)
		if err == nil {
			return l, nil
		}
		if msg := err.Error(); msg != last {
			log.Error().Err(err).Msg("cannot open the ledger; retrying")
			last = msg
		}
		api.SetWaiting("ledger: " + err.Error())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func shutdownHTTP(srv *http.Server, done <-chan error, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownBudget)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error().Err(err).Msg("till listener did not drain in time")
		_ = srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// watchdog pets systemd's watchdog while the ledger works. Two things stop
// the pets, and systemd then restarts kioskd, which is the one recovery
// left: a storage device that stops answering (a sync stalled past half the
// interval), and a store the ledger could not close after a failure
// (ledger.ErrNeedsRestart).
func watchdog(ctx context.Context, l *ledger.Ledger, log zerolog.Logger) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	tick := time.NewTicker(interval / 3)
	defer tick.Stop()
	var withheld string // why the last pet was withheld; "" while petting
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			why := ""
			if d := l.SyncStalled(now); d > interval/2 {
				why = fmt.Sprintf("ledger sync stalled for %s", d.Round(time.Millisecond))
			} else if err := l.Health(); errors.Is(err, ledger.ErrNeedsRestart) {
				why = err.Error()
			}
			if why != "" {
				if withheld == "" {
					log.Error().Str("why", why).Msg("no longer petting the watchdog: systemd will restart kioskd")
				}
				withheld = why
				continue
			}
			if withheld != "" {
				log.Warn().Msg("ledger working again: petting the watchdog")
				withheld = ""
			}
			_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
	}
}

// startDevBroker runs an embedded MQTT broker for development, so kioskctl
// works with no setup. It allows every client: never use it in the field.
func startDevBroker() (*mqtt.Server, error) {
	b := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err := b.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("dev broker: %w", err)
	}
	if err := b.AddListener(listeners.NewTCP(listeners.Config{ID: "dev", Address: devBrokerAddr})); err != nil {
		return nil, fmt.Errorf("dev broker: %w", err)
	}
	if err := b.Serve(); err != nil {
		return nil, fmt.Errorf("dev broker: %w", err)
	}
	return b, nil
}
