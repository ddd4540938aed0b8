package ota

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/microretail/kioskd/internal/testclock"
)

// slBuild is a fake kioskd build: a shell script padded with bytes that
// depend on the version, its manifest, and where its artifact lies.
type slBuild struct {
	v        Version
	data     []byte
	sum      string
	m        Manifest
	artifact string
}

func slNewBuild(t testing.TB, version string, size int) slBuild {
	t.Helper()
	data := []byte("#!/bin/sh\necho kioskd " + version + "\nexit 0\n")
	for seed := sha256.Sum256([]byte(version)); len(data) < size; seed = sha256.Sum256(seed[:]) {
		data = append(data, seed[:]...)
	}
	data = data[:size]
	sum := sha256.Sum256(data)
	raw, _ := json.Marshal(map[string]any{
		"version": version, "boards": []string{"sim"}, "sha256": hex.EncodeToString(sum[:]),
		"size": len(data), "url": "https://updates.example.com/kioskd-" + version,
	})
	m, err := ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	return slBuild{v: m.Version, data: data, sum: m.SHA256, m: m}
}

// slEnv is a kiosk's data directory on some fileSystem, with a clock
// that stands still unless moved.
type slEnv struct {
	t      testing.TB
	fs     fileSystem
	data   string // <data>
	dir    string // <data>/ota
	clock  *testclock.Clock
	builds map[string]slBuild // by sha256: what Fetch finds
}

func slNewEnv(t testing.TB) *slEnv {
	data := t.TempDir()
	return &slEnv{t: t, fs: osFS{}, data: data, dir: filepath.Join(data, "ota"),
		clock: testclock.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)), builds: map[string]slBuild{}}
}

// slNewMemEnv is an slEnv on a crash-simulating in-memory filesystem.
func slNewMemEnv(t testing.TB) *slEnv {
	mem := slMemFS{vfs.NewCrashableMem()}
	if err := mem.MkdirAll("/data", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mem.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	return &slEnv{t: t, fs: mem, data: "/data", dir: "/data/ota",
		clock: testclock.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)), builds: map[string]slBuild{}}
}

func (e *slEnv) slots(fsys fileSystem) *BinarySlots {
	return &BinarySlots{Dir: e.dir, Clock: e.clock.Now, fs: fsys}
}

func (e *slEnv) updater(fsys fileSystem, running Version) *Updater {
	return &Updater{
		Dir: e.dir, Installer: e.slots(fsys), Running: running, Clock: e.clock.Now, fs: fsys,
		Fetch: func(ctx context.Context, m Manifest) (string, error) {
			b, ok := e.builds[m.SHA256]
			if !ok {
				return "", fmt.Errorf("%w: no such artifact", ErrUnavailable)
			}
			return b.artifact, nil
		},
	}
}

// build makes a build and puts its artifact, durably, where Fetch finds
// it, as the Downloader would have.
func (e *slEnv) build(version string) slBuild {
	e.t.Helper()
	b := slNewBuild(e.t, version, 3000+len(e.builds)*1000)
	dl := filepath.Join(e.data, "download")
	b.artifact = filepath.Join(dl, b.sum+".artifact")
	if err := makeDirs(e.fs, dl, e.data); err != nil {
		e.t.Fatal(err)
	}
	if err := writeAtomic(e.fs, b.artifact, b.data); err != nil {
		e.t.Fatal(err)
	}
	e.builds[b.sum] = b
	return b
}

// install runs a whole update of b to its commit, as a healthy trial
// does, from a kioskd of version running.
func (e *slEnv) install(b slBuild, job string, running Version) {
	e.t.Helper()
	u := e.updater(e.fs, running)
	if _, err := u.Start(job, b.m); err != nil {
		e.t.Fatal(err)
	}
	if j, err := u.Resume(context.Background()); err != nil || j.State != StateTrial {
		e.t.Fatalf("resume: %s %q, %v", j.State, j.Reason, err)
	}
	if d, err := e.slots(e.fs).Decide(slSelf); err != nil || !d.Trial {
		e.t.Fatalf("decide: %+v, %v", d, err)
	}
	if err := e.slots(e.fs).CommitTrial("healthy"); err != nil {
		e.t.Fatal(err)
	}
}

// read returns a file's bytes, or nil.
func (e *slEnv) read(path string) []byte {
	b, _ := readSmall(e.fs, path)
	return b
}

// slSelf is the packaged kioskd's version in these tests.
var slSelf = Version{Major: 1}

func TestSlotsInstallSwitchCommit(t *testing.T) {
	e := slNewEnv(t)
	s := e.slots(nil)
	b1, b2 := e.build("1.1.0"), e.build("1.2.0")

	if slot, v, err := s.Current(); slot != "" || v != (Version{}) || err != nil {
		t.Fatalf("fresh Current = %q %v %v, want the packaged binary", slot, v, err)
	}
	for i, b := range []slBuild{b1, b2} {
		wantSlot, prevSlot := []string{SlotA, SlotB}[i], []string{"", SlotA}[i]
		if slot, err := s.Inactive(); slot != wantSlot || err != nil {
			t.Fatalf("update %d: Inactive = %q, %v; want %q", i, slot, err, wantSlot)
		}
		if err := s.Install(context.Background(), b.artifact, b.m); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(e.dir, "slots", wantSlot, "kioskd")
		if got, err := os.ReadFile(bin); err != nil || !bytes.Equal(got, b.data) {
			t.Fatalf("slot %s binary: %d bytes, %v", wantSlot, len(got), err)
		}
		if fi, _ := os.Stat(bin); fi.Mode().Perm() != 0o755 {
			t.Fatalf("slot %s binary mode %v, want 0755", wantSlot, fi.Mode())
		}
		var meta slotMetaFile
		if err := json.Unmarshal(e.read(filepath.Join(e.dir, "slots", wantSlot, "meta.json")), &meta); err != nil ||
			meta != (slotMetaFile{Format: 1, Version: b.v, SHA256: b.sum, Size: int64(len(b.data))}) {
			t.Fatalf("meta.json = %+v, %v", meta, err)
		}
		// Installed, not switched: the old release still runs.
		if slot, _, _ := s.Current(); slot != prevSlot {
			t.Fatalf("Install switched: current %q", slot)
		}
		job := fmt.Sprintf("job-%d", i)
		if err := s.Switch(job, b.m); err != nil {
			t.Fatal(err)
		}
		d, err := s.Decide(slSelf)
		if err != nil || d.Exec != bin || !d.Trial || d.Job != job || d.Version != b.v {
			t.Fatalf("Decide = %+v, %v", d, err)
		}
		tr, ok, err := s.TrialStatus()
		if !ok || err != nil || tr.Job != job || tr.Path != bin || tr.Boots != 1 || !tr.Since.Equal(e.clock.Now()) {
			t.Fatalf("TrialStatus = %+v %v %v", tr, ok, err)
		}
		if err := s.CommitTrial("healthy"); err != nil {
			t.Fatal(err)
		}
		if slot, v, _ := s.Current(); slot != wantSlot || v != b.v {
			t.Fatalf("after the commit Current = %q %v", slot, v)
		}
		if d, err := s.Decide(slSelf); err != nil || d.Exec != bin || d.Trial {
			t.Fatalf("Decide after the commit = %+v, %v", d, err)
		}
	}
	boot, _ := s.Boot()
	if boot.Previous == nil || boot.Previous.Slot != SlotA || boot.Previous.Version != b1.v ||
		boot.Last == nil || boot.Last.State != StateCommitted || boot.Last.Reason != "healthy" {
		t.Fatalf("boot state %+v", boot)
	}
	if left, _ := filepath.Glob(filepath.Join(e.dir, "*", "*.tmp")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestSlotsInstallIsIdempotent(t *testing.T) {
	e := slNewEnv(t)
	b := e.build("1.1.0")
	count := &slCrashFS{fs: osFS{}}
	s := e.slots(count)
	if err := s.Install(context.Background(), b.artifact, b.m); err != nil {
		t.Fatal(err)
	}
	first := count.steps
	if err := s.Install(context.Background(), b.artifact, b.m); err != nil {
		t.Fatal(err)
	}
	if count.steps != first {
		t.Fatalf("a second Install of the same release wrote again: %v", count.ops[first:])
	}
	// A slot whose binary went bad is installed again.
	bin := filepath.Join(e.dir, "slots", "a", "kioskd")
	if err := os.WriteFile(bin, []byte("garbage"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(context.Background(), b.artifact, b.m); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(bin); !bytes.Equal(got, b.data) {
		t.Fatal("a damaged slot was not installed again")
	}
}

func TestSlotsInstallRefusesWrongArtifact(t *testing.T) {
	e := slNewEnv(t)
	b := e.build("1.1.0")
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"flipped byte", append(append([]byte{}, b.data[:100]...), append([]byte{b.data[100] ^ 1}, b.data[101:]...)...)},
		{"truncated", b.data[:len(b.data)-1]},
		{"longer", append(append([]byte{}, b.data...), 0)},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "artifact")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			s := e.slots(nil)
			if err := s.Install(context.Background(), path, b.m); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Install = %v, want ErrCorrupt", err)
			}
			if _, err := os.Stat(filepath.Join(e.dir, "slots", "a", "kioskd")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a wrong artifact reached the slot: %v", err)
			}
			if err := s.Switch("j", b.m); !errors.Is(err, ErrSlotCorrupt) {
				t.Fatalf("Switch to a slot without the release = %v, want ErrSlotCorrupt", err)
			}
		})
	}
	if err := e.slots(nil).Install(context.Background(), filepath.Join(e.data, "missing"), b.m); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Install of a missing artifact = %v", err)
	}
	img := b.m
	img.Kind = KindImage
	if err := e.slots(nil).Install(context.Background(), b.artifact, img); err == nil {
		t.Fatal("binary slots installed an image")
	}
}

func TestSlotsInstallCatchesBadCopy(t *testing.T) {
	e := slNewEnv(t)
	b := e.build("1.1.0")
	s := e.slots(&slBitFlipFS{fileSystem: osFS{}, suffix: "kioskd.new"})
	err := s.Install(context.Background(), b.artifact, b.m)
	if !errors.Is(err, ErrSlotCorrupt) || !strings.Contains(err.Error(), "bad copy") {
		t.Fatalf("Install through a flipping disk = %v, want a bad copy", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "slots", "a", "kioskd")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a bad copy was renamed into place: %v", err)
	}
}

func TestSlotsSwitchChecksTheSlot(t *testing.T) {
	e := slNewEnv(t)
	b := e.build("1.1.0")
	s := e.slots(nil)
	if err := s.Install(context.Background(), b.artifact, b.m); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(e.dir, "slots", "a", "kioskd")
	if err := os.WriteFile(bin, b.data[:len(b.data)/2], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Switch("j", b.m); !errors.Is(err, ErrSlotCorrupt) {
		t.Fatalf("Switch to a damaged slot = %v", err)
	}
	if boot, _ := s.Boot(); boot.Trial != nil {
		t.Fatalf("switched to a damaged slot: %+v", boot.Trial)
	}
}

func TestSlotsTrialLifecycle(t *testing.T) {
	e := slNewEnv(t)
	b := e.build("1.1.0")
	s := e.slots(nil)
	if err := s.Commit("j", ""); !errors.Is(err, ErrNoTrial) {
		t.Fatalf("Commit without a trial = %v", err)
	}
	if err := s.Rollback("j", ""); err != nil {
		t.Fatalf("Rollback without a trial = %v", err)
	}
	if err := s.Install(context.Background(), b.artifact, b.m); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Switch("j", b.m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Inactive(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Inactive during a trial = %v, want ErrBusy", err)
	}
	if err := s.Install(context.Background(), b.artifact, b.m); !errors.Is(err, ErrBusy) {
		t.Fatalf("Install during a trial = %v, want ErrBusy", err)
	}
	if err := s.Switch("other", b.m); !errors.Is(err, ErrBusy) {
		t.Fatalf("Switch of another job during a trial = %v, want ErrBusy", err)
	}
	if err := s.Commit("other", ""); !errors.Is(err, ErrNoTrial) {
		t.Fatalf("Commit of another job = %v", err)
	}
	for range 2 {
		if err := s.Commit("j", "ok"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Switch("j", b.m); err != nil {
		t.Fatalf("Switch of a committed job = %v", err)
	}
	boot, _ := s.Boot()
	if boot.Trial != nil || boot.Committed.Job != "j" {
		t.Fatalf("boot %+v", boot)
	}
}

func TestBootStateRefused(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for name, raw := range map[string]string{
		"empty":          ``,
		"not JSON":       `{"format":1,`,
		"future format":  `{"format":2,"committed":{}}`,
		"no format":      `{"committed":{}}`,
		"path as slot":   `{"format":1,"committed":{"slot":"../../bin","version":"1.0.0","sha256":"` + sum + `","size":5}}`,
		"no sha256":      `{"format":1,"committed":{"slot":"a","version":"1.0.0","size":5}}`,
		"no size":        `{"format":1,"committed":{"slot":"a","version":"1.0.0","sha256":"` + sum + `"}}`,
		"trial on self":  `{"format":1,"committed":{"slot":"a","version":"1.0.0","sha256":"` + sum + `","size":5},"trial":{"slot":"a","version":"1.1.0","sha256":"` + sum + `","size":5,"job":"j","since":"2026-03-01T10:00:00Z","boots":0}}`,
		"packaged trial": `{"format":1,"committed":{},"trial":{"job":"j","since":"2026-03-01T10:00:00Z","boots":0}}`,
		"negative boots": `{"format":1,"committed":{},"trial":{"slot":"b","version":"1.1.0","sha256":"` + sum + `","size":5,"job":"j","since":"2026-03-01T10:00:00Z","boots":-1}}`,
		"bad outcome":    `{"format":1,"committed":{},"last":{"job":"j","state":"trial","at":"2026-03-01T10:00:00Z"}}`,
		"bad version":    `{"format":1,"committed":{"slot":"a","version":"one","sha256":"` + sum + `","size":5}}`,
	} {
		t.Run(name, func(t *testing.T) {
			e := slNewEnv(t)
			if err := os.MkdirAll(e.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(e.dir, "boot.json"), []byte(raw), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := e.slots(nil).Boot(); !errors.Is(err, ErrBadState) {
				t.Fatalf("Boot = %v, want ErrBadState", err)
			}
		})
	}
}

// slCrashFS passes every operation to fs and counts the ones that change
// something. With at > 0 the power goes off instead of the at'th: that
// operation and every one after it fail, reads too.
type slCrashFS struct {
	fs    fileSystem
	at    int
	steps int
	dead  bool
	ops   []string
}

var errPowerCut = errors.New("power cut")

func (c *slCrashFS) step(op, name string) error {
	if c.dead {
		return errPowerCut
	}
	c.steps++
	if c.at > 0 && c.steps >= c.at {
		c.dead = true
		return errPowerCut
	}
	c.ops = append(c.ops, op+" "+name)
	return nil
}

func (c *slCrashFS) Create(name string, perm fs.FileMode) (writableFile, error) {
	if err := c.step("create", name); err != nil {
		return nil, err
	}
	f, err := c.fs.Create(name, perm)
	if err != nil {
		return nil, err
	}
	return &slCrashFile{c: c, name: name, f: f}, nil
}

func (c *slCrashFS) Open(name string) (io.ReadCloser, error) {
	if c.dead {
		return nil, errPowerCut
	}
	return c.fs.Open(name)
}

func (c *slCrashFS) Rename(oldname, newname string) error {
	if err := c.step("rename", oldname+" → "+filepath.Base(newname)); err != nil {
		return err
	}
	return c.fs.Rename(oldname, newname)
}

func (c *slCrashFS) Remove(name string) error {
	if err := c.step("remove", name); err != nil {
		return err
	}
	return c.fs.Remove(name)
}

func (c *slCrashFS) MkdirAll(dir string, perm fs.FileMode) error {
	if err := c.step("mkdir", dir); err != nil {
		return err
	}
	return c.fs.MkdirAll(dir, perm)
}

func (c *slCrashFS) SyncDir(dir string) error {
	if err := c.step("syncdir", dir); err != nil {
		return err
	}
	return c.fs.SyncDir(dir)
}

type slCrashFile struct {
	c    *slCrashFS
	name string
	f    writableFile
}

func (f *slCrashFile) Write(p []byte) (int, error) {
	if err := f.c.step("write", f.name); err != nil {
		return 0, err
	}
	return f.f.Write(p)
}

func (f *slCrashFile) Sync() error {
	if err := f.c.step("sync", f.name); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *slCrashFile) Close() error {
	err := f.f.Close()
	if f.c.dead {
		return errPowerCut
	}
	return err
}

// slBitFlipFS flips one bit of what is written to files named …suffix:
// a card that corrupts writes.
type slBitFlipFS struct {
	fileSystem
	suffix string
}

func (b *slBitFlipFS) Create(name string, perm fs.FileMode) (writableFile, error) {
	f, err := b.fileSystem.Create(name, perm)
	if err != nil || !strings.HasSuffix(name, b.suffix) {
		return f, err
	}
	return slFlipFile{f}, nil
}

type slFlipFile struct{ writableFile }

func (f slFlipFile) Write(p []byte) (int, error) {
	q := append([]byte{}, p...)
	q[len(q)/2] ^= 0x10
	return f.writableFile.Write(q)
}

// slFailFS fails Create of files named …suffix: a full or read-only disk.
type slFailFS struct {
	fileSystem
	suffix string
}

func (b *slFailFS) Create(name string, perm fs.FileMode) (writableFile, error) {
	if strings.HasSuffix(name, b.suffix) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("no space left on device")}
	}
	return b.fileSystem.Create(name, perm)
}

// slMemFS is fileSystem on Pebble's crash-simulating memory filesystem:
// CrashClone keeps exactly what was fsynced (file data by Sync, directory
// entries by SyncDir), as a power cut would.
type slMemFS struct{ mem *vfs.MemFS }

func (m slMemFS) Create(name string, perm fs.FileMode) (writableFile, error) {
	return m.mem.Create(name, vfs.WriteCategoryUnspecified)
}
func (m slMemFS) Open(name string) (io.ReadCloser, error)     { return m.mem.Open(name) }
func (m slMemFS) Rename(oldname, newname string) error        { return m.mem.Rename(oldname, newname) }
func (m slMemFS) Remove(name string) error                    { return m.mem.Remove(name) }
func (m slMemFS) MkdirAll(dir string, perm fs.FileMode) error { return m.mem.MkdirAll(dir, perm) }

func (m slMemFS) SyncDir(dir string) error {
	d, err := m.mem.OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// afterPowerCut is what the disk holds after the power went off now.
func (m slMemFS) afterPowerCut() slMemFS {
	return slMemFS{m.mem.CrashClone(vfs.CrashCloneCfg{})}
}
