package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/ota"
	"github.com/microretail/kioskd/telemetry"
)

// launcherEnv carries the launcher's own path to the binary it execs, so
// that binary can restart through the launcher (into a trial, or back
// from one).
const launcherEnv = "KIOSKD_OTA_LAUNCHER"

// otaDir is where updates live: slots, the job, downloads.
func otaDir(cfg Config) string { return filepath.Join(cfg.Data, "ota") }

// selfVersion is this binary's version for OTA decisions; a build that is
// not a release (Version "dev", a bare commit) is a dev build, older than
// every release.
func selfVersion() ota.Version {
	v, err := ota.ParseVersion(Version)
	if err != nil {
		v, _ = ota.ParseVersion("dev")
	}
	return v
}

// launch is the OTA launcher: a kioskd started by systemd, not exec'd by a
// launcher, asks the persisted update state which binary runs, and execs
// it in place (same PID: systemd's notify and watchdog follow). With no
// installed release it returns and this binary runs.
func launch(cfg Config, log zerolog.Logger) error {
	if os.Getenv(ota.LaunchEnv) != "" {
		return nil // launched already: deciding again would count a trial boot twice
	}
	d, err := ota.Decide(otaDir(cfg), selfVersion())
	if err != nil {
		log.Warn().Err(err).Msg("ota: launcher")
	}
	if d.Exec == "" {
		if d.Reason != "" {
			log.Info().Str("reason", d.Reason).Msg("ota: running the packaged kioskd")
		}
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("ota: launcher: %w", err)
	}
	job := d.Job
	if job == "" {
		job = "-"
	}
	log.Info().Str("exec", d.Exec).Str("version", d.Version.String()).Bool("trial", d.Trial).Str("reason", d.Reason).
		Msg("ota: starting the installed release")
	env := append(os.Environ(), ota.LaunchEnv+"="+job, launcherEnv+"="+self)
	return syscall.Exec(d.Exec, append([]string{d.Exec}, os.Args[1:]...), env)
}

// otaRestart is serve's answer when the update needs a new start: into a
// release just switched to (on trial), or out of a trial that failed. run
// execs the launcher once everything is closed.
type otaRestart struct{ why string }

func (r otaRestart) Error() string { return "ota: restart: " + r.why }

// restart execs the launcher in place, without the mark of a launched
// binary, so it decides afresh.
func (r otaRestart) restart(log zerolog.Logger) error {
	exe := os.Getenv(launcherEnv)
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, ota.LaunchEnv+"=") && !strings.HasPrefix(kv, launcherEnv+"=") {
			env = append(env, kv)
		}
	}
	log.Info().Str("launcher", exe).Str("why", r.why).Msg("ota: restarting through the launcher")
	return syscall.Exec(exe, append([]string{exe}, os.Args[1:]...), env)
}

// otaAgent runs the kiosk's side of an update: the fleet's ota_install
// command, the job through its states (resumed at every start), progress
// on kiosk/<id>/ota, and, when this binary is on trial, its health check.
type otaAgent struct {
	log     zerolog.Logger
	cfg     OTAConfig
	board   string
	self    ota.Version
	store   *ota.TrustStore
	up      *ota.Updater
	slots   *ota.BinarySlots
	fleet   func() *telemetry.Session // nil while there is no link
	restart context.CancelCauseFunc   // ends serve with an otaRestart
	kick    chan struct{}
	trial   atomic.Bool // this process is a release on trial
}

func newOTAAgent(cfg Config, board string, gate interface {
	Wait(context.Context) error
	Held() (bool, string)
}, fleet func() *telemetry.Session, restart context.CancelCauseFunc, log zerolog.Logger) *otaAgent {
	dir := otaDir(cfg)
	a := &otaAgent{log: log.With().Str("component", "ota").Logger(), cfg: cfg.OTA, board: board, self: selfVersion(),
		slots: &ota.BinarySlots{Dir: dir}, fleet: fleet, restart: restart, kick: make(chan struct{}, 1)}
	store, err := ota.LoadTrustStore(cfg.OTA.Keys)
	if err != nil {
		// Updates are refused until a key is installed; the till sells.
		a.log.Warn().Err(err).Str("keys", cfg.OTA.Keys).Msg("ota: trust store")
	}
	a.store = store
	dl := &ota.Downloader{Dir: filepath.Join(dir, "download"), RateBytesPerSec: cfg.OTA.Rate, Wait: gate.Wait, Held: gate.Held}
	a.up = &ota.Updater{Dir: dir, Installer: a.slots, Running: a.self,
		Fetch: func(ctx context.Context, m ota.Manifest) (string, error) {
			if path, ok := a.fetchDelta(ctx, dl, m); ok {
				return path, nil
			}
			return dl.Fetch(ctx, m.URL, m.Size, m.SHA256)
		}}
	dl.Progress = func(p ota.Progress) {
		j, err := a.up.Job()
		if err != nil || p.Size <= 0 {
			return
		}
		st := a.status(j)
		st.Progress = float64(p.Offset) * 100 / float64(p.Size)
		if p.Waiting != "" {
			st.Error = "paused: " + p.Waiting
		}
		a.publish(st)
	}
	return a
}

// fetchDelta builds m's artifact from its delta when this kiosk runs the
// delta's base: the patch is downloaded (resumably, like a full artifact)
// and applied to the running binary, and the result verified against m's
// sha256. Anything else (another base, a patch that does not rebuild the
// release) falls back to the full artifact: ok is false.
func (a *otaAgent) fetchDelta(ctx context.Context, dl *ota.Downloader, m ota.Manifest) (string, bool) {
	d := m.Delta
	if d == nil {
		return "", false
	}
	base, err := os.Executable()
	if err == nil {
		var sum string
		if sum, err = ota.FileSHA256(base); err == nil && sum != d.BaseSHA256 {
			return "", false // not the base: the full artifact
		}
	}
	if err != nil {
		a.log.Warn().Err(err).Msg("ota: delta: the running binary; fetching the full artifact")
		return "", false
	}
	patch, err := dl.Fetch(ctx, d.URL, d.Size, d.SHA256)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn().Err(err).Msg("ota: delta download failed; fetching the full artifact")
		}
		return "", false
	}
	defer func() { _ = dl.Discard(d.SHA256); _ = os.Remove(patch) }()
	out := filepath.Join(dl.Dir, m.SHA256+".artifact")
	if err := ota.ApplyDelta(ctx, base, patch, out, m.Size, m.SHA256); err != nil {
		a.log.Warn().Err(err).Msg("ota: the delta does not rebuild the release; fetching the full artifact")
		return "", false
	}
	a.log.Info().Int64("delta_bytes", d.Size).Int64("artifact_bytes", m.Size).Msg("ota: rebuilt the release from its delta")
	return out, true
}

// status is the job as kiosk/<id>/ota shows it.
func (a *otaAgent) status(j ota.Job) telemetry.OTAStatus {
	st := telemetry.OTAStatus{Job: j.ID, State: string(j.State), Running: a.self.String()}
	if j.ID != "" {
		st.Version = j.Manifest.Version.String()
	}
	switch j.State {
	case ota.StateFailed, ota.StateRolledBack:
		st.Error = j.Reason
	}
	if j.State != ota.StateDownloading && j.State != ota.StateIdle {
		st.Progress = 100
	}
	return st
}

func (a *otaAgent) publish(st telemetry.OTAStatus) {
	if s := a.fleet(); s != nil {
		s.SetOTA(st)
	}
}

// install is the ota_install command: {"envelope": the signed manifest
// (the JSON kioskctl ota sign writes), "job"?: an id}. The release is
// checked (signature, board, version) before anything is fetched; the
// answer says the job started, and kiosk/<id>/ota follows it.
func (a *otaAgent) install(_ context.Context, args json.RawMessage) (any, error) {
	var req struct {
		Envelope json.RawMessage `json:"envelope"`
		Job      string          `json:"job"`
	}
	if err := strictArgs(args, &req); err != nil {
		return nil, err
	}
	if len(req.Envelope) == 0 {
		return nil, errors.New(`ota_install wants {"envelope": the signed manifest}`)
	}
	if a.store == nil || a.store.Len() == 0 {
		return nil, fmt.Errorf("no trusted OTA keys in %s", a.cfg.Keys)
	}
	m, _, keyID, err := ota.Open(req.Envelope, a.store)
	if err != nil {
		return nil, err
	}
	if err := ota.Check(m, a.board, a.self); err != nil {
		return nil, err
	}
	if m.Kind != ota.KindBinary {
		return nil, fmt.Errorf("ota: this kiosk installs kioskd binaries, not %s releases", m.Kind)
	}
	id := req.Job
	if id == "" {
		id = fmt.Sprintf("ota-%s-%s", m.Version, m.SHA256[:8])
	}
	j, err := a.up.Start(id, m)
	if err != nil {
		return nil, err
	}
	a.log.Info().Str("job", id).Str("version", m.Version.String()).Str("key", keyID).Msg("ota: update started")
	a.publish(a.status(j))
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return map[string]any{"job": j.ID, "version": m.Version.String(), "state": j.State}, nil
}

// run resumes the job at start and whenever the fleet starts one, until
// ctx ends; after a switch it restarts kioskd into the trial.
func (a *otaAgent) run(ctx context.Context) {
	backoff := 30 * time.Second
	for {
		j, err := a.up.Resume(ctx)
		if ctx.Err() != nil {
			return
		}
		a.publish(a.status(j))
		if err != nil {
			a.log.Warn().Err(err).Str("job", j.ID).Msg("ota: job stopped; resuming later")
		}
		if j.Artifact != "" && (j.State == ota.StateTrial || j.State.Final()) {
			_ = os.Remove(j.Artifact) // installed, or given up: the slot holds it
		}
		if j.State == ota.StateTrial && !a.trial.Load() {
			a.log.Info().Str("job", j.ID).Str("version", j.Manifest.Version.String()).Msg("ota: switched; restarting into the trial")
			a.restart(otaRestart{why: "trial of " + j.Manifest.Version.String()})
			return
		}
		var retry <-chan time.Time
		if err != nil {
			retry = time.After(backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-retry:
		}
	}
}

// checkTrial, when this process is a release on trial, watches its health
// until it commits or fails: the till ready, and the fleet link up or the
// offline grace passed, continuously for trial_uptime; not healthy by
// health_timeout, it fails the trial and restarts into the previous
// release. A crash or a watchdog reset before that counts as a failed
// boot in the launcher.
func (a *otaAgent) checkTrial(ctx context.Context, ready func() error, started time.Time) {
	tr, on, err := a.slots.TrialStatus()
	if err != nil {
		a.log.Warn().Err(err).Msg("ota: trial status")
	}
	exe, _ := os.Executable()
	if !on || !samePath(tr.Path, exe) {
		return
	}
	a.trial.Store(true)
	a.log.Info().Str("job", tr.Job).Str("version", tr.Version.String()).Int("boot", tr.Boots).Msg("ota: on trial")
	uptime, timeout, grace := every(a.cfg.TrialUptime), every(a.cfg.HealthTimeout), every(a.cfg.OfflineGrace)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var healthySince time.Time
	why := "starting"
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			healthy := true
			switch s := a.fleet(); {
			case ready() != nil:
				healthy, why = false, "the till is not ready: "+ready().Error()
			case s != nil && !s.Connected() && now.Sub(started) < grace:
				healthy, why = false, "waiting for the fleet link (or the offline grace)"
			}
			if !healthy {
				healthySince = time.Time{}
			} else if healthySince.IsZero() {
				healthySince = now
			}
			if healthy && now.Sub(healthySince) >= uptime {
				reason := fmt.Sprintf("healthy for %s: the till ready", uptime)
				if s := a.fleet(); s != nil && s.Connected() {
					reason += ", the fleet link up"
				}
				if err := a.slots.CommitTrial(reason); err != nil {
					a.log.Error().Err(err).Msg("ota: commit")
					continue
				}
				a.trial.Store(false)
				a.log.Info().Str("job", tr.Job).Str("reason", reason).Msg("ota: committed")
				j, _ := a.up.Resume(ctx) // the job learns its outcome
				a.publish(a.status(j))
				return
			}
			if now.Sub(started) >= timeout {
				reason := fmt.Sprintf("not healthy %s after start: %s", timeout, why)
				if err := a.slots.FailTrial(reason); err != nil {
					a.log.Error().Err(err).Msg("ota: failing the trial")
				}
				a.log.Error().Str("job", tr.Job).Str("reason", reason).Msg("ota: trial failed; back to the previous release")
				a.restart(otaRestart{why: "trial failed"})
				return
			}
		}
	}
}

// samePath reports whether a and b name the same file.
func samePath(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}
