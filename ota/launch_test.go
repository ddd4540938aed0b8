package ota

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// slOnTrial brings e to a trial of 1.2.0 (job "new") in slot b over
// 1.1.0 committed in slot a, or over the packaged binary if fromPackaged.
func slOnTrial(t *testing.T, e *slEnv, fromPackaged bool) (old, nu slBuild) {
	t.Helper()
	running := slSelf
	if !fromPackaged {
		old = e.build("1.1.0")
		e.install(old, "old", slSelf)
		running = old.v
	}
	nu = e.build("1.2.0")
	u := e.updater(e.fs, running)
	if _, err := u.Start("new", nu.m); err != nil {
		t.Fatal(err)
	}
	if j, err := u.Resume(context.Background()); err != nil || j.State != StateTrial {
		t.Fatalf("Resume = %s %q, %v", j.State, j.Reason, err)
	}
	return old, nu
}

func (e *slEnv) job() Job {
	e.t.Helper()
	j, err := e.updater(e.fs, Version{}).Job()
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

func (e *slEnv) bin(slot string) string { return filepath.Join(e.dir, "slots", slot, "kioskd") }

func TestDecideWithoutState(t *testing.T) {
	e := slNewEnv(t)
	d, err := Decide(e.dir, slSelf)
	if err != nil || d.Exec != "" || d.Trial || !strings.Contains(d.Reason, "no OTA state") {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	if _, ok, err := TrialStatus(e.dir); ok || err != nil {
		t.Fatalf("TrialStatus = %v, %v", ok, err)
	}
	if err := CommitTrial(e.dir, "x"); !errors.Is(err, ErrNoTrial) {
		t.Fatalf("CommitTrial = %v", err)
	}
	if err := FailTrial(e.dir, "x"); !errors.Is(err, ErrNoTrial) {
		t.Fatalf("FailTrial = %v", err)
	}
}

// A build that crashes at every start (or is reset by the watchdog) never
// commits: the launcher counts its starts and brings the previous release
// back after MaxTrialBoots.
func TestDecideCrashLoopRollsBack(t *testing.T) {
	for _, fromPackaged := range []bool{false, true} {
		name := map[bool]string{false: "from slot a", true: "from the packaged binary"}[fromPackaged]
		t.Run(name, func(t *testing.T) {
			e := slNewEnv(t)
			_, nu := slOnTrial(t, e, fromPackaged)
			trialSlot, backTo := SlotB, e.bin(SlotA)
			if fromPackaged {
				trialSlot, backTo = SlotA, ""
			}
			for boot := 1; boot <= DefaultMaxTrialBoots; boot++ {
				e.clock.Advance(30 * time.Second)
				d, err := Decide(e.dir, slSelf)
				if err != nil || d.Exec != e.bin(trialSlot) || !d.Trial || d.Job != "new" || d.Version != nu.v {
					t.Fatalf("start %d: %+v, %v", boot, d, err)
				}
				tr, ok, _ := TrialStatus(e.dir)
				if !ok || tr.Boots != boot {
					t.Fatalf("start %d: trial %+v", boot, tr)
				}
				// The new build crashes here, before its health check.
			}
			d, err := Decide(e.dir, slSelf)
			if err != nil || d.Exec != backTo || d.Trial || !strings.Contains(d.Reason, "crashed 3 times in trial") {
				t.Fatalf("start %d: %+v, %v", DefaultMaxTrialBoots+1, d, err)
			}
			if j := e.job(); j.State != StateRolledBack || j.Reason != "crashed 3 times in trial" {
				t.Fatalf("job %s %q", j.State, j.Reason)
			}
			boot, _ := e.slots(nil).Boot()
			if boot.Trial != nil || boot.Last == nil || boot.Last.Job != "new" || boot.Last.State != StateRolledBack {
				t.Fatalf("boot %+v", boot)
			}
			// It stays rolled back.
			if d2, err := Decide(e.dir, slSelf); err != nil || d2.Exec != backTo || d2.Trial {
				t.Fatalf("next start: %+v, %v", d2, err)
			}
			if j, err := e.updater(nil, slSelf).Resume(context.Background()); err != nil || j.State != StateRolledBack {
				t.Fatalf("Resume = %s, %v", j.State, err)
			}
		})
	}
}

func TestFailTrialRollsBack(t *testing.T) {
	e := slNewEnv(t)
	slOnTrial(t, e, false)
	if d, _ := Decide(e.dir, slSelf); !d.Trial {
		t.Fatalf("no trial: %+v", d)
	}
	const why = "health check failed: MQTT not connected within 5m"
	if err := FailTrial(e.dir, why); err != nil {
		t.Fatal(err)
	}
	if j := e.job(); j.State != StateRolledBack || j.Reason != why {
		t.Fatalf("job %s %q", j.State, j.Reason)
	}
	d, err := Decide(e.dir, slSelf)
	if err != nil || d.Exec != e.bin(SlotA) || d.Trial {
		t.Fatalf("Decide after FailTrial = %+v, %v", d, err)
	}
	if err := CommitTrial(e.dir, "late"); !errors.Is(err, ErrNoTrial) {
		t.Fatalf("CommitTrial after FailTrial = %v", err)
	}
}

func TestCommitTrial(t *testing.T) {
	e := slNewEnv(t)
	_, nu := slOnTrial(t, e, false)
	d, _ := Decide(e.dir, slSelf)
	tr, ok, err := TrialStatus(e.dir)
	if !ok || err != nil || tr.Path != d.Exec || tr.Job != "new" {
		t.Fatalf("TrialStatus = %+v %v %v", tr, ok, err)
	}
	if err := CommitTrial(e.dir, "till ready, MQTT connected, up 10m"); err != nil {
		t.Fatal(err)
	}
	if j := e.job(); j.State != StateCommitted || j.Reason != "till ready, MQTT connected, up 10m" {
		t.Fatalf("job %s %q", j.State, j.Reason)
	}
	for range DefaultMaxTrialBoots + 2 {
		d, err := Decide(e.dir, slSelf)
		if err != nil || d.Exec != e.bin(SlotB) || d.Trial || d.Version != nu.v {
			t.Fatalf("Decide after the commit = %+v, %v", d, err)
		}
	}
}

// slDamage breaks a slot binary in the ways a card or a person can.
var slDamage = map[string]func(path string) error{
	"missing": os.Remove,
	"truncated": func(p string) error {
		return os.Truncate(p, 100)
	},
	"flipped byte": func(p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b[len(b)-1] ^= 1
		return os.WriteFile(p, b, 0o755)
	},
	"empty": func(p string) error { return os.WriteFile(p, nil, 0o755) },
}

func TestDecideRefusesBadTrialBinary(t *testing.T) {
	for name, damage := range slDamage {
		t.Run(name, func(t *testing.T) {
			e := slNewEnv(t)
			slOnTrial(t, e, false)
			if err := damage(e.bin(SlotB)); err != nil {
				t.Fatal(err)
			}
			d, err := Decide(e.dir, slSelf)
			if err != nil || d.Exec != e.bin(SlotA) || d.Trial || !strings.Contains(d.Reason, "slot b") {
				t.Fatalf("Decide = %+v, %v", d, err)
			}
			if j := e.job(); j.State != StateRolledBack || !strings.Contains(j.Reason, "slot b") {
				t.Fatalf("job %s %q", j.State, j.Reason)
			}
		})
	}
}

func TestDecideRefusesBadCommittedBinary(t *testing.T) {
	for name, damage := range slDamage {
		t.Run(name, func(t *testing.T) {
			e := slNewEnv(t)
			b1, b2 := e.build("1.1.0"), e.build("1.2.0")
			e.install(b1, "one", slSelf)
			e.install(b2, "two", b1.v)
			if err := damage(e.bin(SlotB)); err != nil {
				t.Fatal(err)
			}
			d, err := Decide(e.dir, slSelf)
			if err != nil || d.Exec != e.bin(SlotA) || d.Version != b1.v || !strings.Contains(d.Reason, "slot b") {
				t.Fatalf("Decide = %+v, %v", d, err)
			}
			boot, _ := e.slots(nil).Boot()
			if boot.Committed.Slot != SlotA || boot.Previous != nil || boot.Last.Job != "two" || boot.Last.State != StateRolledBack {
				t.Fatalf("boot %+v", boot)
			}
			// Slot a goes bad too: only the packaged binary is left.
			if err := damage(e.bin(SlotA)); err != nil {
				t.Fatal(err)
			}
			d, err = Decide(e.dir, slSelf)
			if err != nil || d.Exec != "" || !strings.Contains(d.Reason, "packaged") {
				t.Fatalf("Decide = %+v, %v", d, err)
			}
			if d, err = Decide(e.dir, slSelf); err != nil || d.Exec != "" {
				t.Fatalf("Decide = %+v, %v", d, err)
			}
		})
	}
}

// The operator installed a newer .deb: the packaged binary runs and the
// OTA state goes.
func TestDecidePackagedNewer(t *testing.T) {
	newer := Version{Major: 2}
	t.Run("committed", func(t *testing.T) {
		e := slNewEnv(t)
		b := e.build("1.1.0")
		e.install(b, "one", slSelf)
		for _, v := range []Version{{Dev: true}, slSelf, b.v} {
			if d, err := Decide(e.dir, v); err != nil || d.Exec != e.bin(SlotA) {
				t.Fatalf("packaged %s: Decide = %+v, %v", v, d, err)
			}
		}
		d, err := Decide(e.dir, newer)
		if err != nil || d.Exec != "" || !strings.Contains(d.Reason, "newer") || !strings.Contains(d.Reason, "cleared") {
			t.Fatalf("Decide = %+v, %v", d, err)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "boot.json")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("boot.json kept: %v", err)
		}
		if j := e.job(); j.State != StateCommitted {
			t.Fatalf("a committed job changed: %s", j.State)
		}
	})
	t.Run("trial", func(t *testing.T) {
		e := slNewEnv(t)
		slOnTrial(t, e, false)
		d, err := Decide(e.dir, newer)
		if err != nil || d.Exec != "" || !strings.Contains(d.Reason, "newer") {
			t.Fatalf("Decide = %+v, %v", d, err)
		}
		if j := e.job(); j.State != StateRolledBack || !strings.Contains(j.Reason, "newer") {
			t.Fatalf("job %s %q", j.State, j.Reason)
		}
	})
}

func TestDecideUnreadableState(t *testing.T) {
	e := slNewEnv(t)
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "boot.json"), []byte(`{"format":1,"comm`), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Decide(e.dir, slSelf)
	if !errors.Is(err, ErrBadState) || d.Exec != "" {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "boot.json.corrupt")); err != nil {
		t.Fatalf("not moved aside: %v", err)
	}
	if d, err := Decide(e.dir, slSelf); err != nil || d.Exec != "" {
		t.Fatalf("next Decide = %+v, %v", d, err)
	}
}

// A trial start that cannot be counted is not made: it could crash
// forever uncounted.
func TestDecideWithoutCountRunsCommitted(t *testing.T) {
	e := slNewEnv(t)
	slOnTrial(t, e, false)
	s := e.slots(&slFailFS{fileSystem: osFS{}, suffix: "boot.json.tmp"})
	d, err := s.Decide(slSelf)
	if err == nil || d.Exec != e.bin(SlotA) || d.Trial || !strings.Contains(d.Reason, "cannot be saved") {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	if tr, ok, _ := TrialStatus(e.dir); !ok || tr.Boots != 0 {
		t.Fatalf("trial %+v %v", tr, ok)
	}
	// With the disk back, the trial starts.
	if d, err := Decide(e.dir, slSelf); err != nil || !d.Trial {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
}

func TestDecideMaxTrialBoots(t *testing.T) {
	e := slNewEnv(t)
	slOnTrial(t, e, false)
	s := e.slots(nil)
	s.MaxTrialBoots = 1
	if d, _ := s.Decide(slSelf); !d.Trial {
		t.Fatalf("first start not a trial: %+v", d)
	}
	if d, _ := s.Decide(slSelf); d.Trial || !strings.Contains(d.Reason, "crashed 1 time in trial") {
		t.Fatalf("second start: %+v", d)
	}
}
