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
	err = syscall.Exec(d.Exec, append([]string{d.Exec}, os.Args[1:]...), env)
	if d.Trial {
		// A release this board cannot run at all (another CPU, a
		// noexec mount): its trial ends now, with the real reason,
		// rather than after three counted boots.
		if ferr := ota.FailTrial(otaDir(cfg), fmt.Sprintf("cannot start %s: %v", d.Exec, err)); ferr != nil {
			log.Error().Err(ferr).Msg("ota: failing the trial that cannot start")
		}
	}
	return fmt.Errorf("ota: exec %s: %w", d.Exec, err)
}

// otaRestart is serve's answer when the update needs a new start: into a
// release just switched to (on trial), or out of a trial that failed. run
// execs the launcher once everything is closed.
type otaRestart struct{ why string }

func (r otaRestart) Error() string { return "ota: restart: " + r.why }

// restart starts the launcher afresh. Under systemd kioskd exits and
// Restart= starts the unit again: once a stop has begun (STOPPING=1),
// systemd would ignore an exec'd process's READY and watchdog, and kill
// it. Elsewhere it execs the launcher in place, without the mark of a
// launched binary, so it decides afresh.
func (r otaRestart) restart(log zerolog.Logger) error {
	if os.Getenv("NOTIFY_SOCKET") != "" {
		log.Info().Str("why", r.why).Msg("ota: exiting for systemd to start the launcher again")
		return nil
	}
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
	dlDir   string
	trial   atomic.Bool // this process is a release on trial
	onTrial ota.Trial   // which, when it is
	// pending: at start a trial was due that this process is not: the
	// launcher could not start it (it logged why), so it is failed,
	// not restarted into again and again.
	pending bool
	// lastPub throttles the download's progress reports.
	lastPub struct {
		at      time.Time
		percent float64
		waiting string
	}
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
	a.dlDir = filepath.Join(dir, "download")
	dl := &ota.Downloader{Dir: a.dlDir, RateBytesPerSec: cfg.OTA.Rate, Wait: gate.Wait, Held: gate.Held}
	a.up = &ota.Updater{Dir: dir, Installer: a.slots, Running: a.self,
		Fetch: func(ctx context.Context, m ota.Manifest) (string, error) {
			path, ok, err := a.fetchDelta(ctx, dl, m)
			if ok || err != nil {
				return path, err
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
		// Retained at QoS 1 on the broker for every kiosk of a
		// rollout: every 5%, a change of the pause, or half a minute.
		now := time.Now()
		if st.Progress < 100 && p.Waiting == a.lastPub.waiting && st.Progress-a.lastPub.percent < 5 && now.Sub(a.lastPub.at) < 30*time.Second {
			return
		}
		a.lastPub.at, a.lastPub.percent, a.lastPub.waiting = now, st.Progress, p.Waiting
		a.publish(st)
	}
	// Whether this process is the release on trial is settled here, once,
	// before the job runs or the health check starts.
	if tr, on, err := a.slots.TrialStatus(); err != nil {
		a.log.Warn().Err(err).Msg("ota: trial status")
	} else if on {
		exe, _ := os.Executable()
		if samePath(tr.Path, exe) || tr.Job != "" && os.Getenv(ota.LaunchEnv) == tr.Job {
			a.trial.Store(true)
			a.onTrial = tr
		} else {
			a.pending = true
		}
	}
	return a
}

// fetchDelta builds m's artifact from its delta when this kiosk runs the
// delta's base: the patch is downloaded (resumably, like a full artifact)
// and applied to the running binary, and the result verified against m's
// sha256. Another base, or a patch the server refuses or that does not
// rebuild the release, falls back to the full artifact (ok false, no
// error); a link that fails is an error, so the job waits for it rather
// than turning a small download into a full one.
func (a *otaAgent) fetchDelta(ctx context.Context, dl *ota.Downloader, m ota.Manifest) (string, bool, error) {
	d := m.Delta
	if d == nil {
		return "", false, nil
	}
	if sum, err := ota.FileSHA256(filepath.Join(dl.Dir, m.SHA256+".artifact")); err == nil && sum == m.SHA256 {
		return filepath.Join(dl.Dir, m.SHA256+".artifact"), true, nil // rebuilt before a restart
	}
	base, err := os.Executable()
	if err == nil {
		var sum string
		if sum, err = ota.FileSHA256(base); err == nil && sum != d.BaseSHA256 {
			return "", false, nil // not the base: the full artifact
		}
	}
	if err != nil {
		a.log.Warn().Err(err).Msg("ota: delta: the running binary; fetching the full artifact")
		return "", false, nil
	}
	patch, err := dl.Fetch(ctx, d.URL, d.Size, d.SHA256)
	switch {
	case err == nil:
	case errors.Is(err, ota.ErrCorrupt), errors.Is(err, ota.ErrUnavailable):
		a.log.Warn().Err(err).Msg("ota: the delta cannot be had; fetching the full artifact")
		_ = dl.Discard(d.SHA256)
		return "", false, nil
	default:
		return "", false, err // the link: the job waits and resumes the delta
	}
	defer func() { _ = dl.Discard(d.SHA256); _ = os.Remove(patch) }()
	out := filepath.Join(dl.Dir, m.SHA256+".artifact")
	if err := ota.ApplyDelta(ctx, base, patch, out, m.Size, m.SHA256); err != nil {
		if ctx.Err() != nil {
			return "", false, err
		}
		a.log.Warn().Err(err).Msg("ota: the delta does not rebuild the release; fetching the full artifact")
		return "", false, nil
	}
	a.log.Info().Int64("delta_bytes", d.Size).Int64("artifact_bytes", m.Size).Msg("ota: rebuilt the release from its delta")
	return out, true, nil
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
	// The download, the artifact and the slot copy share the ledger's
	// disk: a release that would fill it must not stop the till selling.
	if free, err := freeBytes(filepath.Dir(a.dlDir)); err == nil && free < 3*m.Size+otaHeadroom {
		return nil, fmt.Errorf("ota: not enough free space for %s: %d MiB free, want %d MiB (three times the artifact plus %d MiB for the ledger)",
			m.Version, free>>20, (3*m.Size+otaHeadroom)>>20, otaHeadroom>>20)
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

// otaHeadroom is free space an update must leave for the ledger.
const otaHeadroom = 256 << 20

// freeBytes is the space free to kioskd on dir's filesystem, or on the
// nearest existing parent's.
func freeBytes(dir string) (int64, error) {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			return int64(st.Bavail) * int64(st.Bsize), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return 0, err
		}
		dir = parent
	}
}

// cleanDownloads removes what the download directory holds but the job
// does not need: parts of a job that failed or was replaced, artifacts
// installed already.
func (a *otaAgent) cleanDownloads(j ota.Job) {
	entries, err := os.ReadDir(a.dlDir)
	if err != nil {
		return
	}
	keep := func(name string) bool {
		if j.State.Final() || j.State == ota.StateTrial || j.ID == "" {
			return false
		}
		m := j.Manifest
		return strings.HasPrefix(name, m.SHA256) || m.Delta != nil && strings.HasPrefix(name, m.Delta.SHA256)
	}
	for _, e := range entries {
		if !keep(e.Name()) {
			_ = os.Remove(filepath.Join(a.dlDir, e.Name()))
		}
	}
}

// run resumes the job at start and whenever the fleet starts one, until
// ctx ends; after a switch it restarts kioskd into the trial.
func (a *otaAgent) run(ctx context.Context) {
	backoff := 30 * time.Second
	if a.pending {
		// A trial was due and this is not it: the launcher could not
		// start it or count its boot (it logged why). Restarting into it
		// again would loop; it is failed, with that said.
		if err := a.slots.FailTrial("the launcher did not start the trial (see kioskd's log at the start before this one)"); err != nil {
			a.log.Error().Err(err).Msg("ota: failing a trial that did not start")
		}
	}
	for {
		j, err := a.up.Resume(ctx)
		if ctx.Err() != nil {
			return
		}
		a.publish(a.status(j))
		if err != nil {
			a.log.Warn().Err(err).Str("job", j.ID).Msg("ota: job stopped; resuming later")
		}
		a.cleanDownloads(j)
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
	if !a.trial.Load() {
		return
	}
	tr := a.onTrial
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
				healthySince, why = now, "healthy only since "+now.Format(time.TimeOnly)
			}
			if healthy && now.Sub(healthySince) >= uptime {
				reason := fmt.Sprintf("healthy for %s: the till ready", uptime)
				if s := a.fleet(); s != nil && s.Connected() {
					reason += ", the fleet link up"
				}
				if err := a.slots.CommitTrial(reason); errors.Is(err, ota.ErrNoTrial) {
					// Rolled back meanwhile (by the launcher, or by
					// hand): nothing left to judge.
					a.trial.Store(false)
					j, _ := a.up.Resume(ctx)
					a.publish(a.status(j))
					return
				} else if err != nil {
					// Tried again each second until the health timeout.
					a.log.Error().Err(err).Msg("ota: commit")
					why = "the commit failed: " + err.Error()
				} else {
					a.trial.Store(false)
					a.log.Info().Str("job", tr.Job).Str("reason", reason).Msg("ota: committed")
					j, _ := a.up.Resume(ctx) // the job learns its outcome
					a.publish(a.status(j))
					return
				}
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

// samePath reports whether a and b name the same file (a relative --data
// makes one of them relative).
func samePath(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}
