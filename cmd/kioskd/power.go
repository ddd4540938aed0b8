package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/lighting"
	"github.com/microretail/kioskd/firmware/power"
	"github.com/microretail/kioskd/firmware/till"
	"github.com/microretail/kioskd/internal/atomicfile"
)

// powerShutdown is the cause of a shutdown the battery-mode automation
// latched; reason says which threshold.
type powerShutdown struct{ reason string }

func (p powerShutdown) Error() string { return "battery critical: " + p.reason }

// powerActions is what the battery-mode automation does to this kiosk.
// Its methods run on the automation's goroutine and return at once.
type powerActions struct {
	cfg    Config
	log    zerolog.Logger
	hub    *events.Hub
	lights *lighting.Lights
	// background is held while load is shed: OTA downloads wait on it.
	background *power.Gate

	trading  func() bool         // the till is open for the day
	changed  func()              // the power mode changed: tell the fleet now
	sync     func()              // flush the ledger and push the outbox
	shutdown func(reason string) // start the shutdown sequence

	mu   sync.Mutex
	mode power.Mode
	shed bool
	// resting: the boot after a battery shutdown, waiting for mains with
	// the till closed; unrest reopens it and forgets the shutdown.
	resting bool
	unrest  func()

	syncs   sync.WaitGroup // the ledger syncs started, waited for at shutdown
	syncing atomic.Bool    // one at a time…
	again   atomic.Bool    // …and one more after it when asked meanwhile

	// restFile records a battery shutdown for the next boot, written when
	// the shutdown latches.
	restFile string
}

// The line's edges are published by the sensors as they see them; the
// policy's copies of those are only logged. Edges the battery's trend saw,
// while the line is stuck or unreadable, are published here.
func (a *powerActions) MainsLost(at time.Time, src power.Source) {
	a.mainsEdge(at, src, false)
}
func (a *powerActions) MainsRestored(at time.Time, src power.Source) {
	a.mainsEdge(at, src, true)
}

func (a *powerActions) mainsEdge(at time.Time, src power.Source, present bool) {
	typ := events.MainsLost
	if present {
		typ = events.MainsRestored
	}
	if src == power.SourceLine {
		a.log.Debug().Time("at", at).Msg("policy: " + typ)
		return
	}
	a.log.Warn().Bool("mains", present).Str("source", string(src)).Msg(typ)
	a.hub.Publish(typ, map[string]any{"mains": present, "source": src})
}

func (a *powerActions) MainsLine(stuck bool, reason string) {
	ev := a.log.Info()
	if stuck {
		ev = a.log.Error()
	}
	ev.Bool("stuck", stuck).Msg(reason)
	a.hub.Publish(events.MainsLine, map[string]any{"stuck": stuck, "reason": reason})
}

func (a *powerActions) Enter(mode power.Mode, reason string) {
	a.mu.Lock()
	a.mode = mode
	unrest := a.resting && (mode == power.ModeMains || mode == power.ModeBattery)
	if unrest {
		a.resting = false
	}
	a.mu.Unlock()
	if unrest {
		a.unrest()
	}
	a.log.Warn().Str("mode", string(mode)).Str("reason", reason).Msg("power mode")
	a.hub.Publish(events.Power, map[string]string{"mode": string(mode), "reason": reason})
	if a.changed != nil {
		a.changed()
	}
	a.light()
}

func (a *powerActions) ShedLoad() {
	a.mu.Lock()
	a.shed = true
	a.mu.Unlock()
	a.background.Hold("low battery: load shed")
	a.light()
}

func (a *powerActions) RestoreLoad() {
	a.mu.Lock()
	a.shed = false
	a.mu.Unlock()
	a.background.Release()
	a.light()
}

func (a *powerActions) SyncLedger() {
	a.again.Store(true)
	if !a.syncing.CompareAndSwap(false, true) {
		return // the one running goes round again
	}
	a.syncs.Add(1)
	go func() {
		defer a.syncs.Done()
		for {
			for a.again.Swap(false) {
				a.sync()
			}
			a.syncing.Store(false)
			// An ask that came after the last round but saw syncing
			// still set must not be lost.
			if !a.again.Load() || !a.syncing.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}

// wait waits for the ledger syncs started.
func (a *powerActions) wait() { a.syncs.Wait() }

// Shutdown records the battery shutdown for the next boot at once (a
// crash or a SIGKILL in the sequence must not cost the record), then
// starts the sequence.
func (a *powerActions) Shutdown(reason string) {
	if a.restFile != "" {
		err := os.MkdirAll(filepath.Dir(a.restFile), 0o750)
		if err == nil {
			err = atomicfile.Write(a.restFile, []byte(powerShutdown{reason}.Error()+"\n"), 0o640)
		}
		if err != nil {
			a.log.Error().Err(err).Msg("cannot record the battery shutdown: the next boot will not wait for mains")
		}
	}
	a.shutdown(reason)
}

// rest starts the boot after a battery shutdown closed, waiting for mains,
// with the low scene and background work held: t says why on the screen.
// When mains returns the till reopens and restFile, the record of the
// shutdown, goes.
func (a *powerActions) rest(t *till.Till) {
	a.mu.Lock()
	a.resting = true
	a.unrest = func() {
		a.mu.Lock()
		shed := a.shed
		a.mu.Unlock()
		if !shed {
			a.background.Release()
		}
		t.Reopen()
		if err := os.Remove(a.restFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Error().Err(err).Msg("cannot forget the battery shutdown: the next boot will wait for mains")
		}
	}
	a.mu.Unlock()
	a.background.Hold("waiting for mains after a battery shutdown")
	t.Closing("waiting for mains: the kiosk shut down on a nearly empty battery")
	a.light()
}

// restingReason is the reason to rest, from the record a battery shutdown
// left, or "" without one.
func restingReason(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	return "waiting for mains after a battery shutdown (" + strings.TrimSpace(string(b)) + ")"
}

// light sets the scene the power mode asks for: on mains the till's own
// (open while trading), on battery the battery scene, shedding load the
// low scene. Critical and shutdown leave the lights to the shutdown.
func (a *powerActions) light() {
	a.mu.Lock()
	mode, shed, resting := a.mode, a.shed, a.resting
	a.mu.Unlock()
	scene := ""
	switch {
	case resting:
		scene = a.cfg.Power.LowScene
	case mode == power.ModeMains:
		scene = a.cfg.Lights.ClosedScene
		if a.trading() {
			scene = a.cfg.Lights.Scene
		}
	case shed:
		scene = a.cfg.Power.LowScene
	case mode == power.ModeBattery:
		scene = a.cfg.Power.BatteryScene
	default:
		return
	}
	_ = a.lights.SetScene(scene) // checked with the config
}

// onMains reports whether the power mode lets the till choose the lights.
func (a *powerActions) onMains() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mode == "" || a.mode == power.ModeMains
}

// powerOff ends the board's power after the shutdown sequence: on the sim
// board, or with poweroff = "exit", kioskd only exits 0.
type powerOff struct {
	reason string
	exit   bool
	sp     *systemPower
}

func (p powerOff) Error() string { return "power off: " + p.reason }

func (p powerOff) do(log zerolog.Logger) error {
	if p.exit {
		p.sp.close()
		log.Warn().Str("reason", p.reason).Msg("battery shutdown complete; exiting")
		return nil
	}
	log.Warn().Str("reason", p.reason).Msg("battery shutdown complete; powering off")
	return p.sp.act("poweroff")
}
