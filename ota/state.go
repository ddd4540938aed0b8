package ota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"
)

// Installer puts a release on the kiosk and decides what boots:
// BinarySlots for the kioskd binary; a Raspberry Pi tryboot backend for
// full images fits the same steps (Install writes the inactive boot and
// root partitions, Switch arms tryboot, Commit rewrites autoboot.txt).
// Every method is idempotent, so the Updater can redo any step a power
// cut interrupted.
type Installer interface {
	// Inactive names the slot Install writes into; ErrBusy while a trial
	// runs.
	Inactive() (string, error)
	// Install writes the verified artifact of m into the inactive slot
	// and checks it there. Nothing switches.
	Install(ctx context.Context, artifact string, m Manifest) error
	// Switch makes the installed m the trial of job, in one atomic step.
	Switch(job string, m Manifest) error
	// Commit makes job's trial the committed release.
	Commit(job, reason string) error
	// Rollback ends job's trial; the committed release boots again.
	Rollback(job, reason string) error
	// Boot reports what boots: committed, trial, last outcome.
	Boot() (Boot, error)
}

// State is where an update job stands. A job moves
//
//	downloading → downloaded → installing → installed → switching → trial → committed
//
// and ends in committed, rolled_back (it was switched to and did not
// commit) or failed (it never was switched to). Each state is persisted
// in job.json before its step runs, so after a power cut Resume redoes
// the step (every step is idempotent) or, past the switch, learns from
// the Installer's boot state whether the trial committed or rolled back.
type State string

// The states of a job.
const (
	// StateIdle: no job. Job reports it when there is no job.json.
	StateIdle = State("idle")
	// StateDownloading: the artifact is being fetched (resumable).
	StateDownloading = State("downloading")
	// StateDownloaded: the artifact is on disk, verified; the slot to
	// install into is chosen next.
	StateDownloaded = State("downloaded")
	// StateInstalling: the artifact is being copied into the slot.
	StateInstalling = State("installing")
	// StateInstalled: the slot holds the release, checked; next is the
	// check that it is still wanted.
	StateInstalled = State("installed")
	// StateSwitching: the switch, the one irreversible step, is next or
	// was made.
	StateSwitching = State("switching")
	// StateTrial: switched; the new release runs on trial, counted by the
	// launcher, until its health check commits or fails it.
	StateTrial = State("trial")
	// StateCommitted: the release passed its trial and stays.
	StateCommitted = State("committed")
	// StateRolledBack: the release was switched to and taken back: a
	// crash loop, a failed health check, a bad binary. Reason says which.
	StateRolledBack = State("rolled_back")
	// StateFailed: the job stopped before the switch; nothing changed
	// on the kiosk. Reason says why.
	StateFailed = State("failed")
)

// Final reports whether a job in s is over.
func (s State) Final() bool {
	return s == StateIdle || s == StateCommitted || s == StateRolledBack || s == StateFailed
}

// switched reports whether a job in s may have been switched to, so that
// ending it needs a rollback.
func (s State) switched() bool { return s == StateSwitching || s == StateTrial }

func (s State) valid() bool {
	switch s {
	case StateDownloading, StateDownloaded, StateInstalling, StateInstalled, StateSwitching,
		StateTrial, StateCommitted, StateRolledBack, StateFailed:
		return true
	}
	return false
}

// DefaultMaxStateEntries bounds the states a job enters. A job enters
// about six; every restart in the middle of one re-enters a state, and
// so does every Resume after a transient failure. Past the bound the job
// is looping (a step that crashes kioskd, a disk that fails every write):
// it fails, and is rolled back if it was switched to.
const DefaultMaxStateEntries = 100

const maxJobID = 128

// Job is one update, from the fleet command that started it to its
// outcome: job.json. Layout, JSON, format 1:
//
//	format    1
//	id        the fleet command's job id
//	state     a State
//	manifest  the verified Manifest being installed (version, sha256, size, url, …)
//	from      the version that ran when the job started
//	slot      the slot it is installed into, once chosen
//	artifact  the downloaded artifact's path, once downloaded
//	reason    why it failed or rolled back, or what committed it
//	attempts  runs of the current state's step (1 on the first)
//	entries   state entries of the whole job: the loop guard's count
//	created, updated  timestamps
//	history   each state entered, with when, in order
type Job struct {
	Format   int          `json:"format"`
	ID       string       `json:"id"`
	State    State        `json:"state"`
	Manifest Manifest     `json:"manifest"`
	From     Version      `json:"from"`
	Slot     string       `json:"slot,omitempty"`
	Artifact string       `json:"artifact,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	Attempts int          `json:"attempts"`
	Entries  int          `json:"entries"`
	Created  time.Time    `json:"created"`
	Updated  time.Time    `json:"updated"`
	History  []Transition `json:"history"`
}

// Transition is one state a job entered, and when.
type Transition struct {
	State State     `json:"state"`
	At    time.Time `json:"at"`
}

// Updater runs update jobs through their states, one at a time, with the
// job persisted in Dir/job.json. One Updater owns Dir; the trial's
// CommitTrial and FailTrial and the launcher's Decide may run beside it.
type Updater struct {
	// Dir holds job.json; the same directory as BinarySlots.Dir.
	Dir       string
	Installer Installer
	// Fetch downloads m's artifact and returns its path, verified
	// (Downloader.Fetch with m.URL, m.Size, m.SHA256). It is run again
	// after a restart and must resume. Errors wrapping ErrCorrupt or
	// ErrUnavailable fail the job; any other leaves it downloading for
	// the next Resume.
	Fetch func(ctx context.Context, m Manifest) (string, error)
	// Running is the version of the kioskd that runs: a job's from, and
	// what a release must still be newer than at the switch.
	Running Version
	// Clock stamps the job; nil is the wall clock.
	Clock func() time.Time
	// MaxStateEntries is the loop guard's bound; 0 is
	// DefaultMaxStateEntries.
	MaxStateEntries int

	fs fileSystem // nil is the OS; tests inject faults
}

// step is one state's work: it does its I/O through the Installer and
// Fetch, may note results in j, and names the next state.
type step func(u *Updater, ctx context.Context, j *Job) (State, error)

var steps = map[State]step{
	StateDownloading: (*Updater).download,
	StateDownloaded:  (*Updater).chooseSlot,
	StateInstalling:  (*Updater).install,
	StateInstalled:   (*Updater).stillWanted,
	StateSwitching:   (*Updater).switchTo,
}

func (u *Updater) download(ctx context.Context, j *Job) (State, error) {
	if u.Fetch == nil {
		return "", errors.New("ota: updater has no Fetch")
	}
	path, err := u.Fetch(ctx, j.Manifest)
	if err != nil {
		return "", err
	}
	j.Artifact = path
	return StateDownloaded, nil
}

func (u *Updater) chooseSlot(ctx context.Context, j *Job) (State, error) {
	slot, err := u.Installer.Inactive()
	if err != nil {
		return "", err
	}
	j.Slot = slot
	return StateInstalling, nil
}

func (u *Updater) install(ctx context.Context, j *Job) (State, error) {
	if err := u.Installer.Install(ctx, j.Artifact, j.Manifest); err != nil {
		return "", err
	}
	return StateInstalled, nil
}

// stillWanted checks, just before the switch, that the release is still
// newer than what runs: a restart may have brought a newer packaged
// kioskd since the job was checked.
func (u *Updater) stillWanted(ctx context.Context, j *Job) (State, error) {
	m := j.Manifest
	if u.Running != (Version{}) && !m.Force && Compare(m.Version, u.Running) <= 0 {
		return "", fmt.Errorf("%w: %s already runs, not switching to %s", ErrDowngrade, u.Running, m.Version)
	}
	return StateSwitching, nil
}

func (u *Updater) switchTo(ctx context.Context, j *Job) (State, error) {
	if err := u.Installer.Switch(j.ID, j.Manifest); err != nil {
		return "", err
	}
	if b, err := u.Installer.Boot(); err == nil && b.Trial != nil && b.Trial.Job == j.ID {
		j.Slot = b.Trial.Slot
	}
	return StateTrial, nil
}

// fatal sorts a step's error: true ends the job, false leaves it for the
// next Resume.
func fatal(err error) bool {
	for _, e := range []error{ErrCorrupt, ErrUnavailable, ErrSlotCorrupt, ErrDowngrade, ErrMalformed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Job returns the current or last job; with none, a Job in StateIdle.
func (u *Updater) Job() (Job, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	j, err := readJob(u.fsys(), u.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Job{State: StateIdle}, nil
	}
	return j, err
}

// Start begins job id for the verified, checked manifest m, persisted as
// downloading; Resume then runs it. Starting the job that runs already
// returns it; while another job or a trial runs it is ErrBusy. A finished
// job is replaced.
func (u *Updater) Start(id string, m Manifest) (Job, error) {
	if err := checkJobID(id); err != nil {
		return Job{}, err
	}
	if _, err := checkSHA256("sha256", m.SHA256); err != nil || m.Size <= 0 {
		return Job{}, fmt.Errorf("ota: job %s: manifest without sha256 and size", id)
	}
	// The boot state first: Boot takes stateMu itself.
	b, err := u.Installer.Boot()
	if err != nil {
		return Job{}, err
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	fsys := u.fsys()
	old, err := readJob(fsys, u.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, ErrBadState):
		// Nothing can be learnt from it; the boot state, not job.json,
		// decides what boots.
		if err := moveAside(fsys, filepath.Join(u.Dir, jobFile)); err != nil {
			return Job{}, err
		}
	case err != nil:
		return Job{}, err
	case !old.State.Final() && old.ID == id && old.Manifest.SHA256 == m.SHA256:
		return old, nil
	case !old.State.Final():
		return Job{}, fmt.Errorf("%w: job %s is %s", ErrBusy, old.ID, old.State)
	}
	if b.Trial != nil {
		return Job{}, fmt.Errorf("%w: job %s is on trial", ErrBusy, b.Trial.Job)
	}
	now := u.now()
	j := Job{
		Format: stateFormat, ID: id, State: StateDownloading, Manifest: m, From: u.Running,
		Created: now, Updated: now, History: []Transition{{StateDownloading, now}},
	}
	if err := makeDirs(fsys, u.Dir, filepath.Dir(u.Dir)); err != nil {
		return Job{}, err
	}
	return j, writeJob(fsys, u.Dir, j)
}

// Resume runs the job from its persisted state as far as it can go here:
// to the trial (after the switch the caller restarts, unless it is the
// binary on trial: see TrialStatus), to its end, or to a failure worth
// retrying. Call it at every start and after Start.
//
// A job that failed (a corrupt artifact, a bad copy, a loop) or rolled
// back is returned with its reason and a nil error: that is its outcome,
// to report. An error means the job stopped where it is (ctx, the link,
// the disk) and the next Resume goes on from there.
func (u *Updater) Resume(ctx context.Context) (Job, error) {
	j, err := u.Job()
	if errors.Is(err, ErrBadState) {
		stateMu.Lock()
		merr := moveAside(u.fsys(), filepath.Join(u.Dir, jobFile))
		stateMu.Unlock()
		return Job{State: StateIdle}, errors.Join(err, merr)
	}
	if err != nil || j.State.Final() {
		return j, err
	}
	if j.State.switched() {
		b, err := u.Installer.Boot()
		if err != nil {
			return j, err
		}
		switch st, why := b.JobState(j.ID); {
		case st == StateCommitted || st == StateRolledBack:
			return u.finish(j, st, why)
		case st == StateTrial && j.State == StateTrial:
			return j, nil
		case st == StateTrial:
			// Switched, and cut off before the trial was persisted.
			return u.advance(j, StateTrial)
		case j.State == StateTrial:
			return u.finish(j, StateRolledBack, "the trial is no longer in the boot state")
		}
		// Switching, not switched yet: switch.
	}
	for !j.State.Final() && j.State != StateTrial {
		if j, err = u.advance(j, j.State); err != nil || j.State.Final() {
			return j, err
		}
		next, err := steps[j.State](u, ctx, &j)
		if err != nil {
			if fatal(err) {
				return u.fail(j, err.Error())
			}
			return j, fmt.Errorf("ota: job %s %s: %w", j.ID, j.State, err)
		}
		j.State = next
		if next == StateTrial {
			return u.advance(j, next)
		}
	}
	return j, nil
}

// advance enters s, or ends the job if the loop guard says so.
func (u *Updater) advance(j Job, s State) (Job, error) {
	err := u.enter(&j, s)
	if errors.Is(err, errLoop) {
		return u.fail(j, err.Error())
	}
	return j, err
}

var errLoop = errors.New("ota: loop guard")

// enter persists j in state s before s's step runs: the loop guard's
// count, the attempt, the history.
func (u *Updater) enter(j *Job, s State) error {
	limit := u.MaxStateEntries
	if limit <= 0 {
		limit = DefaultMaxStateEntries
	}
	if j.Entries >= limit {
		return fmt.Errorf("%w: %d state entries, stuck %s", errLoop, j.Entries, j.State)
	}
	now := u.now()
	if n := len(j.History); n == 0 || j.History[n-1].State != s {
		j.History = append(j.History, Transition{s, now})
		j.Attempts = 0
	}
	j.State = s
	j.Attempts++
	j.Entries++
	j.Updated = now
	stateMu.Lock()
	defer stateMu.Unlock()
	return writeJob(u.fsys(), u.Dir, *j)
}

// fail ends j with reason: rolled back if it was switched to, failed
// otherwise.
func (u *Updater) fail(j Job, reason string) (Job, error) {
	if j.State.switched() {
		b, err := u.Installer.Boot()
		if err != nil {
			return j, err
		}
		if st, _ := b.JobState(j.ID); st == StateTrial {
			if err := u.Installer.Rollback(j.ID, reason); err != nil {
				return j, err
			}
			return u.finish(j, StateRolledBack, reason)
		}
	}
	return u.finish(j, StateFailed, reason)
}

func (u *Updater) finish(j Job, s State, reason string) (Job, error) {
	end(&j, s, reason, u.now())
	stateMu.Lock()
	defer stateMu.Unlock()
	return j, writeJob(u.fsys(), u.Dir, j)
}

func end(j *Job, s State, reason string, now time.Time) {
	j.State, j.Reason, j.Updated = s, reason, now
	j.History = append(j.History, Transition{s, now})
}

// settleJob brings a switched job in line with b, which was just
// written: committed or rolled back as b says, or, for a job on trial
// that b no longer knows, rolled back with gone as the reason. A job
// before the switch, or over, is left alone. stateMu is held.
func settleJob(fsys fileSystem, dir string, b Boot, gone string, now time.Time) error {
	j, err := readJob(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if errors.Is(err, ErrBadState) {
		// The boot state was written and is what counts; an unreadable
		// job is kept aside for a look.
		return moveAside(fsys, filepath.Join(dir, jobFile))
	}
	if err != nil || !j.State.switched() {
		return err
	}
	switch st, why := b.JobState(j.ID); {
	case st == StateCommitted || st == StateRolledBack:
		end(&j, st, why, now)
	case st == "" && j.State == StateTrial:
		if gone == "" {
			gone = "the trial is no longer in the boot state"
		}
		end(&j, StateRolledBack, gone, now)
	default:
		return nil
	}
	return writeJob(fsys, dir, j)
}

func readJob(fsys fileSystem, dir string) (Job, error) {
	raw, err := readSmall(fsys, filepath.Join(dir, jobFile))
	if err != nil {
		return Job{}, fmt.Errorf("ota: %w", err)
	}
	var j Job
	if err := json.Unmarshal(raw, &j); err != nil {
		return Job{}, fmt.Errorf("%w: %s: %v", ErrBadState, jobFile, err)
	}
	switch {
	case j.Format != stateFormat:
		err = fmt.Errorf("format %d, want %d", j.Format, stateFormat)
	case checkJobID(j.ID) != nil:
		err = checkJobID(j.ID)
	case !j.State.valid():
		err = fmt.Errorf("state %.20q", j.State)
	}
	if err != nil {
		return Job{}, fmt.Errorf("%w: %s: %v", ErrBadState, jobFile, err)
	}
	return j, nil
}

func writeJob(fsys fileSystem, dir string, j Job) error {
	j.Format = stateFormat
	raw, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	return writeAtomic(fsys, filepath.Join(dir, jobFile), raw)
}

// checkJobID accepts the printable ASCII ids the fleet sends.
func checkJobID(id string) error {
	if id == "" || len(id) > maxJobID {
		return fmt.Errorf("ota: job id %.40q: want 1 to %d characters", id, maxJobID)
	}
	for _, c := range []byte(id) {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("ota: job id %.40q: want printable ASCII without spaces", id)
		}
	}
	return nil
}

func (u *Updater) fsys() fileSystem { return orOS(u.fs) }

func (u *Updater) now() time.Time { return utcNow(u.Clock) }
