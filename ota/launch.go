package ota

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// DefaultMaxTrialBoots is how many times a trial may start without
// committing before the launcher rolls it back: one crash may be bad
// luck (a power cut, a watchdog reset while the link was down), three in
// a row are the build.
const DefaultMaxTrialBoots = 3

// LaunchEnv is set in the environment of the binary the launcher execs,
// to the Decision's Job, or "-" when it has none. A kioskd that finds it
// set was launched already and must not Decide again: that would count
// its trial boot twice. Whether it is on trial TrialStatus says: its
// Path is the executable on trial.
const LaunchEnv = "KIOSKD_OTA_LAUNCHED"

// Decision is what the launcher runs.
type Decision struct {
	// Exec is the binary to exec in place of the launcher (syscall.Exec,
	// same PID, so systemd's notify and watchdog follow); "" runs the
	// launcher itself, the packaged kioskd.
	Exec string
	// Trial says Exec is on trial: it must pass its health check and
	// call CommitTrial, or it is rolled back.
	Trial bool
	// Slot, Version and Job name what Exec is; empty for the packaged
	// binary.
	Slot    string
	Version Version
	Job     string
	// Reason says why, for the log: "trial of 1.5.0 (job j-7), boot 2
	// of 3", "slot b: … has sha256 …, want …; rolled back to 1.4.0".
	Reason string
}

// Decide is BinarySlots{Dir: dir}.Decide(self).
func Decide(dir string, self Version) (Decision, error) {
	return (&BinarySlots{Dir: dir}).Decide(self)
}

// CommitTrial is BinarySlots{Dir: dir}.CommitTrial(reason).
func CommitTrial(dir, reason string) error {
	return (&BinarySlots{Dir: dir}).CommitTrial(reason)
}

// FailTrial is BinarySlots{Dir: dir}.FailTrial(reason).
func FailTrial(dir, reason string) error {
	return (&BinarySlots{Dir: dir}).FailTrial(reason)
}

// TrialStatus is BinarySlots{Dir: dir}.TrialStatus().
func TrialStatus(dir string) (Trial, bool, error) {
	return (&BinarySlots{Dir: dir}).TrialStatus()
}

// Decide is the launcher's step, run by the packaged kioskd (version
// self) at start before anything else: which binary runs, from boot.json
// alone.
//
//   - No boot.json, or one naming the packaged binary: run self.
//   - A trial: its binary is checked (size, sha256) and its boot counter
//     is incremented and persisted before it is returned, so a crash
//     loop or a watchdog reset during the trial shows as starts without
//     a commit. Past MaxTrialBoots starts, or with a bad binary, the trial
//     is rolled back (boot.json, then job.json say rolled_back and why)
//     and the committed release runs.
//   - A committed release in a slot: its binary is checked and it runs;
//     a bad one falls back to the previous release, then to self, and
//     boot.json records it.
//   - self newer than every release boot.json names (the operator
//     installed a newer .deb): run self, and boot.json is removed.
//
// A binary is never returned unless it hashes to the sha256 boot.json
// records for it. The Decision is always one to act on, also when err is
// not nil: err then reports what was worked around (unreadable state,
// moved aside; a write that failed, so a trial boot that could not be
// counted is not made) and belongs in the log.
//
// The caller execs Decision.Exec, if any, with LaunchEnv set, and runs
// itself otherwise:
//
//	if os.Getenv(ota.LaunchEnv) == "" {
//		d, err := ota.Decide(otaDir, version)
//		// log d.Reason, err
//		if d.Exec != "" {
//			env := append(os.Environ(), ota.LaunchEnv+"="+cmp.Or(d.Job, "-"))
//			err = syscall.Exec(d.Exec, os.Args, env) // returns only on failure: run self
//		}
//	}
func (s *BinarySlots) Decide(self Version) (Decision, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	fsys := s.fsys()
	b, err := s.readBoot()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Decision{Reason: "no OTA state: running the packaged kioskd"}, nil
	case err != nil:
		d := Decision{Reason: fmt.Sprintf("%v: moved aside; running the packaged kioskd", err)}
		return d, errors.Join(err, moveAside(fsys, filepath.Join(s.Dir, bootFile)))
	}
	var errs []error
	var notes []string
	if t := b.Trial; t != nil {
		newest := t.Version
		if !b.Committed.Packaged() && Compare(b.Committed.Version, newest) > 0 {
			newest = b.Committed.Version
		}
		if Compare(self, newest) > 0 {
			return s.clear(b, fmt.Sprintf("the packaged kioskd %s is newer than %s on trial", self, t.Version))
		}
		reason := ""
		if err := verifyFile(fsys, t.Path, t.Size, t.SHA256); err != nil {
			reason = fmt.Sprintf("slot %s: %v", t.Slot, err)
		} else if t.Boots >= s.maxTrialBoots() {
			reason = fmt.Sprintf("crashed %d %s in trial", t.Boots, plural(t.Boots, "time", "times"))
		}
		if reason == "" {
			t.Boots++
			t.Booted = s.now()
			err := s.writeBoot(b)
			if err == nil {
				return Decision{
					Exec: t.Path, Trial: true, Slot: t.Slot, Version: t.Version, Job: t.Job,
					Reason: fmt.Sprintf("trial of %s (job %s), boot %d of %d", t.Version, t.Job, t.Boots, s.maxTrialBoots()),
				}, nil
			}
			// A start that cannot be counted could crash forever
			// uncounted: run the committed release this time.
			errs = append(errs, err)
			notes = append(notes, fmt.Sprintf("trial of %s not started: its boot count cannot be saved", t.Version))
			b.Trial = nil
		} else {
			notes = append(notes, fmt.Sprintf("trial of %s (job %s) rolled back: %s", t.Version, t.Job, reason))
			if nb, err := s.rollback(b, t.Job, reason); err != nil {
				errs = append(errs, err)
				b.Trial = nil
			} else {
				b = nb
				errs = append(errs, settleJob(fsys, s.Dir, b, "", s.now()))
			}
		}
	}
	d, err := s.decideCommitted(b, self)
	notes = append(notes, d.Reason)
	d.Reason = strings.Join(notes, "; ")
	return d, errors.Join(append(errs, err)...)
}

// decideCommitted runs the committed release of b, or what is left when
// its binary is bad.
func (s *BinarySlots) decideCommitted(b Boot, self Version) (Decision, error) {
	fsys := s.fsys()
	c := b.Committed
	if c.Packaged() {
		return Decision{Reason: "running the packaged kioskd"}, nil
	}
	if Compare(self, c.Version) > 0 {
		return s.clear(b, fmt.Sprintf("the packaged kioskd %s is newer than %s in slot %s", self, c.Version, c.Slot))
	}
	err := verifyFile(fsys, s.binary(c.Slot), c.Size, c.SHA256)
	if err == nil {
		return Decision{Exec: s.binary(c.Slot), Slot: c.Slot, Version: c.Version, Job: c.Job,
			Reason: fmt.Sprintf("running %s from slot %s", c.Version, c.Slot)}, nil
	}
	// The committed binary went bad: fall back to the release before it
	// if it is still intact, else to the packaged binary.
	reason := fmt.Sprintf("slot %s: %v", c.Slot, err)
	var d Decision
	nb := Boot{Format: stateFormat}
	if p := b.Previous; p != nil && p.Slot != c.Slot && !p.Packaged() && Compare(self, p.Version) <= 0 &&
		verifyFile(fsys, s.binary(p.Slot), p.Size, p.SHA256) == nil {
		nb.Committed = *p
		d = Decision{Exec: s.binary(p.Slot), Slot: p.Slot, Version: p.Version, Job: p.Job,
			Reason: fmt.Sprintf("%s; back to %s from slot %s", reason, p.Version, p.Slot)}
	} else {
		d = Decision{Reason: reason + "; back to the packaged kioskd"}
	}
	nb.Last = &Outcome{Job: c.Job, State: StateRolledBack, Reason: d.Reason, At: s.now()}
	return d, s.writeBoot(nb)
}

// clear runs self and forgets the OTA state: boot.json is removed, and a
// job on trial is rolled back with reason.
func (s *BinarySlots) clear(b Boot, reason string) (Decision, error) {
	fsys := s.fsys()
	d := Decision{Reason: reason + ": OTA state cleared; running the packaged kioskd"}
	err := fsys.Remove(filepath.Join(s.Dir, bootFile))
	if err == nil {
		err = fsys.SyncDir(s.Dir)
	}
	if err != nil {
		return d, fmt.Errorf("ota: %w", err)
	}
	return d, settleJob(fsys, s.Dir, Boot{Format: stateFormat}, d.Reason, s.now())
}

// CommitTrial is called by the kioskd on trial once its health check
// passed (the till is ready, MQTT connected or the offline grace over, up
// for long enough): its release becomes the committed one and the job
// committed with reason. Without a trial it is ErrNoTrial.
func (s *BinarySlots) CommitTrial(reason string) error {
	return s.endTrial(func(b Boot, job string) (Boot, error) {
		if err := s.commit(b, job, reason); err != nil {
			return Boot{}, err
		}
		return s.readBoot()
	})
}

// FailTrial is called by the kioskd on trial when its health check
// failed: the trial is rolled back with reason, and the caller exits so
// that systemd restarts it into the committed release. Without a trial it
// is ErrNoTrial.
func (s *BinarySlots) FailTrial(reason string) error {
	return s.endTrial(func(b Boot, job string) (Boot, error) { return s.rollback(b, job, reason) })
}

// endTrial ends the trial by end (a commit or a rollback of its job),
// then settles job.json with the boot state end leaves.
func (s *BinarySlots) endTrial(end func(b Boot, job string) (Boot, error)) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	b, err := s.readBootOrZero()
	if err != nil {
		return err
	}
	if b.Trial == nil {
		return ErrNoTrial
	}
	nb, err := end(b, b.Trial.Job)
	if err != nil {
		return err
	}
	return settleJob(s.fsys(), s.Dir, nb, "", s.now())
}

// TrialStatus reports the trial, if one runs: its job, release, since
// when, how many starts, and Path, its binary. The process on trial is
// the one whose executable is Path (or that the launcher started with
// LaunchEnv set to the trial's job); it runs the health check.
func (s *BinarySlots) TrialStatus() (Trial, bool, error) {
	b, err := s.Boot()
	if err != nil || b.Trial == nil {
		return Trial{}, false, err
	}
	return *b.Trial, true, nil
}

func (s *BinarySlots) maxTrialBoots() int {
	if s.MaxTrialBoots > 0 {
		return s.MaxTrialBoots
	}
	return DefaultMaxTrialBoots
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
