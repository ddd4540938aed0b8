package ota

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// slFakeInstaller records the calls the steps make and fails the ones
// told to.
type slFakeInstaller struct {
	calls []string
	fail  map[string]error
	boot  Boot
}

func (f *slFakeInstaller) call(name string) error {
	f.calls = append(f.calls, name)
	return f.fail[name]
}

func (f *slFakeInstaller) Inactive() (string, error) { return SlotB, f.call("Inactive") }
func (f *slFakeInstaller) Install(ctx context.Context, artifact string, m Manifest) error {
	return f.call("Install " + filepath.Base(artifact))
}
func (f *slFakeInstaller) Switch(job string, m Manifest) error {
	if err := f.call("Switch " + job); err != nil {
		return err
	}
	f.boot.Trial = &Trial{Release: Release{Slot: SlotB, Job: job}}
	return nil
}
func (f *slFakeInstaller) Commit(job, reason string) error   { return f.call("Commit " + job) }
func (f *slFakeInstaller) Rollback(job, reason string) error { return f.call("Rollback " + job) }
func (f *slFakeInstaller) Boot() (Boot, error)               { return f.boot, f.call("Boot") }

// Every transition of the job, as a table: the state, what its I/O
// answers, and the next state or how it fails.
func TestUpdaterSteps(t *testing.T) {
	m := slNewBuild(t, "1.2.0", 100).m
	errDisk := errors.New("input/output error")
	for _, tc := range []struct {
		name    string
		state   State
		fetch   error
		fail    map[string]error
		running string
		force   bool

		want      State
		wantErr   error // errors.Is
		wantFatal bool
		calls     []string
		check     func(j Job) bool
	}{
		{name: "downloaded", state: StateDownloading, want: StateDownloaded,
			check: func(j Job) bool { return j.Artifact == "/dl/"+m.SHA256 }},
		{name: "download to retry", state: StateDownloading, fetch: ErrRetriesExhausted, wantErr: ErrRetriesExhausted},
		{name: "download cancelled", state: StateDownloading, fetch: context.Canceled, wantErr: context.Canceled},
		{name: "download corrupt", state: StateDownloading, fetch: ErrCorrupt, wantErr: ErrCorrupt, wantFatal: true},
		{name: "download refused", state: StateDownloading, fetch: ErrUnavailable, wantErr: ErrUnavailable, wantFatal: true},
		{name: "slot chosen", state: StateDownloaded, want: StateInstalling, calls: []string{"Inactive"},
			check: func(j Job) bool { return j.Slot == SlotB }},
		{name: "slot busy", state: StateDownloaded, fail: map[string]error{"Inactive": ErrBusy}, wantErr: ErrBusy, calls: []string{"Inactive"}},
		{name: "installed", state: StateInstalling, want: StateInstalled, calls: []string{"Install " + m.SHA256}},
		{name: "bad copy", state: StateInstalling, fail: map[string]error{"Install " + m.SHA256: ErrSlotCorrupt},
			wantErr: ErrSlotCorrupt, wantFatal: true, calls: []string{"Install " + m.SHA256}},
		{name: "install disk error", state: StateInstalling, fail: map[string]error{"Install " + m.SHA256: errDisk},
			wantErr: errDisk, calls: []string{"Install " + m.SHA256}},
		{name: "still wanted", state: StateInstalled, running: "1.1.0", want: StateSwitching},
		{name: "dev build runs", state: StateInstalled, running: "dev", want: StateSwitching},
		{name: "superseded", state: StateInstalled, running: "1.2.0", wantErr: ErrDowngrade, wantFatal: true},
		{name: "forced", state: StateInstalled, running: "1.3.0", force: true, want: StateSwitching},
		{name: "switched", state: StateSwitching, want: StateTrial, calls: []string{"Switch j", "Boot"},
			check: func(j Job) bool { return j.Slot == SlotB }},
		{name: "switch refused", state: StateSwitching, fail: map[string]error{"Switch j": ErrSlotCorrupt},
			wantErr: ErrSlotCorrupt, wantFatal: true, calls: []string{"Switch j"}},
		{name: "switch disk error", state: StateSwitching, fail: map[string]error{"Switch j": errDisk}, wantErr: errDisk, calls: []string{"Switch j"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := &slFakeInstaller{fail: tc.fail}
			u := &Updater{Installer: inst, Fetch: func(ctx context.Context, m Manifest) (string, error) {
				return "/dl/" + m.SHA256, tc.fetch
			}}
			if tc.running != "" {
				u.Running = mustVersion(t, tc.running)
			}
			j := Job{ID: "j", State: tc.state, Manifest: m, Artifact: "/dl/" + m.SHA256}
			j.Manifest.Force = tc.force
			next, err := steps[tc.state](u, context.Background(), &j)
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && (err != nil || next != tc.want):
				t.Fatalf("next %q, %v; want %q", next, err, tc.want)
			case err != nil && fatal(err) != tc.wantFatal:
				t.Fatalf("fatal(%v) = %v", err, !tc.wantFatal)
			case !slices.Equal(inst.calls, tc.calls):
				t.Fatalf("calls %q, want %q", inst.calls, tc.calls)
			case tc.check != nil && !tc.check(j):
				t.Fatalf("job %+v", j)
			}
		})
	}
}

func TestUpdaterHappyPath(t *testing.T) {
	e := slNewEnv(t)
	nu := e.build("1.2.0")
	u := e.updater(nil, slSelf)
	j, err := u.Start("new", nu.m)
	if err != nil || j.State != StateDownloading || j.Entries != 0 {
		t.Fatalf("Start = %+v, %v", j, err)
	}
	j, err = u.Resume(context.Background())
	if err != nil || j.State != StateTrial {
		t.Fatalf("Resume = %s %q, %v", j.State, j.Reason, err)
	}
	var states []State
	for _, tr := range j.History {
		states = append(states, tr.State)
	}
	want := []State{StateDownloading, StateDownloaded, StateInstalling, StateInstalled, StateSwitching, StateTrial}
	if !slices.Equal(states, want) || j.Entries != len(want) || j.Attempts != 1 || j.Slot != SlotA ||
		j.From != slSelf || j.Artifact != nu.artifact {
		t.Fatalf("job %+v", j)
	}
	stored := e.job()
	if !reflect.DeepEqual(stored.Manifest, nu.m) || stored.State != StateTrial {
		t.Fatalf("job.json holds %+v", stored)
	}
	// The old kioskd restarts; the launcher starts the trial; the new
	// kioskd resumes: nothing to do but its health check.
	if d, _ := Decide(e.dir, slSelf); !d.Trial {
		t.Fatalf("not on trial: %+v", d)
	}
	u.Running = nu.v
	if j, err := u.Resume(context.Background()); err != nil || j.State != StateTrial || j.Entries != len(want) {
		t.Fatalf("Resume on trial = %+v, %v", j, err)
	}
	if err := CommitTrial(e.dir, "healthy"); err != nil {
		t.Fatal(err)
	}
	j, err = u.Resume(context.Background())
	if err != nil || j.State != StateCommitted || j.Reason != "healthy" || j.History[len(j.History)-1].State != StateCommitted {
		t.Fatalf("Resume after the commit = %+v, %v", j, err)
	}
}

func TestUpdaterStart(t *testing.T) {
	e := slNewEnv(t)
	b1, b2 := e.build("1.1.0"), e.build("1.2.0")
	u := e.updater(nil, slSelf)
	for _, id := range []string{"", "has space", strings.Repeat("x", 129), "tab\t"} {
		if _, err := u.Start(id, b1.m); err == nil {
			t.Errorf("Start(%q) succeeded", id)
		}
	}
	if _, err := u.Start("one", b1.m); err != nil {
		t.Fatal(err)
	}
	if j, err := u.Start("one", b1.m); err != nil || j.ID != "one" {
		t.Fatalf("the same Start again = %+v, %v", j, err)
	}
	if _, err := u.Start("two", b2.m); !errors.Is(err, ErrBusy) {
		t.Fatalf("Start during a job = %v, want ErrBusy", err)
	}
	if j, err := u.Resume(context.Background()); err != nil || j.State != StateTrial {
		t.Fatalf("Resume = %+v, %v", j, err)
	}
	if _, err := u.Start("two", b2.m); !errors.Is(err, ErrBusy) {
		t.Fatalf("Start during a trial = %v, want ErrBusy", err)
	}
	// job.json lost, the trial still in boot.json: still busy.
	if err := os.Remove(filepath.Join(e.dir, "job.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Start("two", b2.m); !errors.Is(err, ErrBusy) {
		t.Fatalf("Start during a trial without job.json = %v, want ErrBusy", err)
	}
	if err := CommitTrial(e.dir, "ok"); err != nil {
		t.Fatal(err)
	}
	u.Running = b1.v
	if j, err := u.Start("two", b2.m); err != nil || j.ID != "two" || j.From != b1.v {
		t.Fatalf("Start after the commit = %+v, %v", j, err)
	}
}

func TestUpdaterFailsBeforeTheSwitch(t *testing.T) {
	e := slNewEnv(t)
	nu := e.build("1.2.0")
	u := e.updater(nil, slSelf)
	u.Fetch = func(ctx context.Context, m Manifest) (string, error) {
		return "", fmt.Errorf("ota: download: %w: its sha256 is 00…", ErrCorrupt)
	}
	if _, err := u.Start("new", nu.m); err != nil {
		t.Fatal(err)
	}
	j, err := u.Resume(context.Background())
	if err != nil || j.State != StateFailed || !strings.Contains(j.Reason, "does not match") {
		t.Fatalf("Resume = %s %q, %v", j.State, j.Reason, err)
	}
	if boot, _ := e.slots(nil).Boot(); boot.Trial != nil || !boot.Committed.Packaged() {
		t.Fatalf("a failed job changed the boot state: %+v", boot)
	}
	// Superseded: a newer kioskd runs by the time it is installed.
	u = e.updater(nil, Version{Major: 9})
	if _, err := u.Start("again", nu.m); err != nil {
		t.Fatal(err)
	}
	if j, err := u.Resume(context.Background()); err != nil || j.State != StateFailed || !strings.Contains(j.Reason, "already runs") {
		t.Fatalf("Resume = %s %q, %v", j.State, j.Reason, err)
	}
}

func TestUpdaterLoopGuard(t *testing.T) {
	e := slNewEnv(t)
	nu := e.build("1.2.0")
	u := e.updater(nil, slSelf)
	u.MaxStateEntries = 4
	u.Fetch = func(ctx context.Context, m Manifest) (string, error) { return "", ErrRetriesExhausted }
	if _, err := u.Start("new", nu.m); err != nil {
		t.Fatal(err)
	}
	for i := 1; ; i++ {
		j, err := u.Resume(context.Background())
		if j.State == StateFailed {
			if err != nil || i != 5 || !strings.Contains(j.Reason, "loop guard: 4 state entries") {
				t.Fatalf("Resume %d = %s %q, %v", i, j.State, j.Reason, err)
			}
			break
		}
		if !errors.Is(err, ErrRetriesExhausted) || j.State != StateDownloading || j.Attempts != i || i > 5 {
			t.Fatalf("Resume %d = %+v, %v", i, j, err)
		}
	}
}

// A job that keeps being cut off after the switch is rolled back by the
// loop guard, not retried forever.
func TestUpdaterLoopGuardRollsBack(t *testing.T) {
	e := slNewEnv(t)
	slOnTrial(t, e, false)
	j := e.job()
	j.State, j.Entries = StateSwitching, DefaultMaxStateEntries
	if err := writeJob(osFS{}, e.dir, j); err != nil {
		t.Fatal(err)
	}
	j, err := e.updater(nil, slSelf).Resume(context.Background())
	if err != nil || j.State != StateRolledBack || !strings.Contains(j.Reason, "loop guard") {
		t.Fatalf("Resume = %s %q, %v", j.State, j.Reason, err)
	}
	if d, err := Decide(e.dir, slSelf); err != nil || d.Trial || d.Exec != e.bin(SlotA) {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
}

func TestUpdaterUnreadableJob(t *testing.T) {
	e := slNewEnv(t)
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{`{"format":1,"id":"j","state":"flying"}`, `{"format":7}`, `{`} {
		if err := os.WriteFile(filepath.Join(e.dir, "job.json"), []byte(raw), 0o644); err != nil {
			t.Fatal(err)
		}
		j, err := e.updater(nil, slSelf).Resume(context.Background())
		if !errors.Is(err, ErrBadState) || j.State != StateIdle {
			t.Fatalf("%s: Resume = %s, %v", raw, j.State, err)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "job.json.corrupt")); err != nil {
			t.Fatalf("not moved aside: %v", err)
		}
	}
}

// The power goes off before each filesystem step of an update in turn,
// from Start to the commit of a healthy build, or to the rollback of one
// that crashes at every start. After each cut the kiosk starts again, and
// again, as systemd would: every start must run a known good binary, the
// boot state and the job must agree, and the update must end committed
// (healthy) or rolled back (crashing), never half of each.
//
// Two kinds of cut: "kill" keeps every step done before the cut (SIGKILL
// of kioskd; the page cache survives), "power" keeps only what was
// fsynced (Pebble's crash-simulating MemFS).
func TestUpdatePowerCutAtEveryStep(t *testing.T) {
	for _, sc := range []struct {
		name                  string
		fromPackaged, healthy bool
	}{
		{"healthy over slot a", false, true},
		{"crashing over slot a", false, false},
		{"healthy over the packaged binary", true, true},
		{"crashing over the packaged binary", true, false},
	} {
		for _, model := range []string{"kill", "power"} {
			t.Run(sc.name+"/"+model, func(t *testing.T) {
				if model == "kill" && testing.Short() {
					t.Skip("fsyncs a real disk some thousand times; the power model covers the same cuts")
				}
				for at := 1; ; at++ {
					e := slNewEnv(t)
					if model == "power" {
						e = slNewMemEnv(t)
					}
					old, nu := slBuild{}, e.build("1.2.0")
					running := slSelf
					if !sc.fromPackaged {
						old = e.build("1.1.0")
						e.install(old, "old", slSelf)
						running = old.v
					}
					c := &slCrashFS{fs: e.fs, at: at}
					err := slUpdate(e, c, running, nu, sc.healthy)
					if !c.dead && err != nil {
						t.Fatalf("without a power cut: %v", err)
					}
					after := e.fs
					if model == "power" {
						after = e.fs.(slMemFS).afterPowerCut()
					}
					where := fmt.Sprintf("power cut before step %d of %d; last steps:\n\t%s", at, c.steps, strings.Join(c.ops[max(0, len(c.ops)-4):], "\n\t"))
					slRecover(t, e, after, sc.healthy, old, nu, where)
					if !c.dead {
						t.Logf("%d steps, cut before each", c.steps)
						if c.steps < 50 {
							t.Errorf("only %d steps", c.steps)
						}
						break
					}
				}
			})
		}
	}
}

// slUpdate is the update from the fleet command to the commit (healthy)
// or the rollback (a build that crashes at every start), through fsys.
func slUpdate(e *slEnv, fsys fileSystem, running Version, nu slBuild, healthy bool) error {
	ctx := context.Background()
	u := e.updater(fsys, running)
	if _, err := u.Start("new", nu.m); err != nil {
		return err
	}
	j, err := u.Resume(ctx)
	if err != nil {
		return err
	}
	if j.State != StateTrial {
		return fmt.Errorf("resume: %s %q", j.State, j.Reason)
	}
	for {
		// kioskd restarts; the launcher decides.
		d, err := e.slots(fsys).Decide(slSelf)
		if err != nil {
			return err
		}
		if !d.Trial {
			return nil
		}
		// The new build starts and resumes its job...
		if _, err := e.updater(fsys, d.Version).Resume(ctx); err != nil {
			return err
		}
		if healthy {
			// ...passes its health check...
			return e.slots(fsys).CommitTrial("healthy")
		}
		// ...or crashes before it.
	}
}

// slRecover starts the kiosk on fsys again and again, as systemd would,
// checking every start, until the update is over, and checks its end.
// A job the cut kept from being saved is sent again, as the fleet does
// when a kiosk never reports it.
func slRecover(t *testing.T, e *slEnv, fsys fileSystem, healthy bool, old, nu slBuild, where string) {
	t.Helper()
	ctx := context.Background()
	known := map[string]Version{nu.sum: nu.v}
	if old.sum != "" {
		known[old.sum] = old.v
	}
	s := e.slots(fsys)
	resent := false
	for start := 1; start <= 12; start++ {
		boot, err := s.Boot()
		if err != nil {
			t.Fatalf("%s\nstart %d: boot state: %v", where, start, err)
		}
		slCheckBinaries(t, fsys, s, boot, where)
		d, err := s.Decide(slSelf)
		if err != nil {
			t.Fatalf("%s\nstart %d: Decide: %v", where, start, err)
		}
		running := slSelf
		if d.Exec != "" {
			sum := slHashFile(t, fsys, d.Exec)
			v, ok := known[sum]
			if !ok || v != d.Version {
				t.Fatalf("%s\nstart %d: runs %s, sha256 %.16s, which is no known build (%+v)", where, start, d.Exec, sum, d)
			}
			running = v
		}
		j, err := e.updater(fsys, running).Resume(ctx)
		if err != nil {
			t.Fatalf("%s\nstart %d: Resume: %v", where, start, err)
		}
		boot, _ = s.Boot()
		slCheckAgree(t, boot, j, fmt.Sprintf("%s\nstart %d", where, start))
		switch {
		case j.ID != "new":
			if resent {
				t.Fatalf("%s\nstart %d: the job was lost twice", where, start)
			}
			resent = true
			u := e.updater(fsys, running)
			if _, err := u.Start("new", nu.m); err != nil {
				t.Fatalf("%s\nresent: %v", where, err)
			}
			if j, err := u.Resume(ctx); err != nil || j.State != StateTrial {
				t.Fatalf("%s\nresent: %s %q, %v", where, j.State, j.Reason, err)
			}
		case j.State == StateTrial:
			if d.Trial && d.Job == j.ID && healthy {
				if err := s.CommitTrial("healthy"); err != nil {
					t.Fatalf("%s\nstart %d: CommitTrial: %v", where, start, err)
				}
			}
			// Otherwise the new build crashed, or the old one restarts
			// after switching.
		case j.State.Final():
			slCheckEnd(t, s, fsys, j, healthy, old, nu, where)
			return
		default:
			t.Fatalf("%s\nstart %d: Resume left the job %s", where, start, j.State)
		}
	}
	t.Fatalf("%s\nno end after 12 starts", where)
}

// slCheckBinaries checks what a start finds, before Decide could repair
// anything: the committed and trial binaries are intact.
func slCheckBinaries(t *testing.T, fsys fileSystem, s *BinarySlots, b Boot, where string) {
	t.Helper()
	rels := []Release{b.Committed}
	if b.Trial != nil {
		rels = append(rels, b.Trial.Release)
	}
	for _, r := range rels {
		if r.Packaged() {
			continue
		}
		if err := verifyFile(fsys, s.binary(r.Slot), r.Size, r.SHA256); err != nil {
			t.Fatalf("%s\nboot state names a bad binary: %v", where, err)
		}
	}
}

// slCheckAgree checks that the job and the boot state tell one story.
func slCheckAgree(t *testing.T, b Boot, j Job, where string) {
	t.Helper()
	onTrial := b.Trial != nil && b.Trial.Job == j.ID
	ok := true
	switch j.State {
	case StateIdle, StateSwitching:
	case StateTrial:
		ok = onTrial
	case StateCommitted:
		ok = !onTrial && b.Committed.Job == j.ID
	default: // before the switch, failed or rolled back
		ok = !onTrial && b.Committed.Job != j.ID
	}
	if !ok {
		t.Fatalf("%s: job %s %s %q, but boot state %+v trial %+v", where, j.ID, j.State, j.Reason, b.Committed, b.Trial)
	}
}

func slCheckEnd(t *testing.T, s *BinarySlots, fsys fileSystem, j Job, healthy bool, old, nu slBuild, where string) {
	t.Helper()
	b, err := s.Boot()
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Decide(slSelf)
	if err != nil || d.Trial || b.Trial != nil {
		t.Fatalf("%s\nat the end: Decide %+v, %v; trial %+v", where, d, err, b.Trial)
	}
	want, wantState := nu, StateCommitted
	if !healthy {
		want, wantState = old, StateRolledBack
	}
	if j.State != wantState || (!healthy && !strings.Contains(j.Reason, "crashed 3 times in trial")) {
		t.Fatalf("%s\nthe job ended %s %q, want %s", where, j.State, j.Reason, wantState)
	}
	switch {
	case want.sum == "" && d.Exec != "":
		t.Fatalf("%s\nruns %s, want the packaged binary", where, d.Exec)
	case want.sum != "" && (d.Exec == "" || slHashFile(t, fsys, d.Exec) != want.sum):
		t.Fatalf("%s\nruns %q (%s), want %s", where, d.Exec, d.Version, want.v)
	}
}

func slHashFile(t *testing.T, fsys fileSystem, path string) string {
	t.Helper()
	f, err := fsys.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
