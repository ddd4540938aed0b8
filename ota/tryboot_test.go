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
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/microretail/kioskd/internal/testclock"
)

// The autoboot.txt of the Raspberry Pi documentation's A/B example, as a
// kiosk is provisioned: partition 2 boots, [tryboot] names 3.
const tbProvisioned = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"

const tbDeviceSize = 64 << 10

// tbPi is a fake Raspberry Pi: a FAT boot partition directory with
// autoboot.txt, two partition devices (plain files), a data directory,
// and the firmware's boot choice, modelled apart from the code under
// test: the one-shot tryboot flag, set by a tryboot reboot and cleared at
// the next power-on, and the boot_partition lines of autoboot.txt that
// apply.
type tbPi struct {
	t       testing.TB
	fs      fileSystem // the boot partition and the data partition
	boot    string     // BootDir
	data    string     // StateDir, and downloads
	dev     map[int]string
	part    int  // the partition this boot came from
	flag    bool // the tryboot flag of this boot
	boots   int  // boots so far: the boot id
	oneShot bool // the flag the next power-on consumes
	reboots *[][]string
	fail    error // what Reboot returns
	clock   *testclock.Clock
}

func tbNewPi(t testing.TB) *tbPi {
	root := t.TempDir()
	p := &tbPi{t: t, fs: osFS{}, boot: filepath.Join(root, "boot"), data: filepath.Join(root, "data", "ota"),
		clock: testclock.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)), reboots: new([][]string)}
	for _, d := range []string{p.boot, p.data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p.dev = tbDevices(t, root)
	if err := os.WriteFile(filepath.Join(p.boot, "autoboot.txt"), []byte(tbProvisioned), 0o644); err != nil {
		t.Fatal(err)
	}
	p.part, p.boots = 2, 1
	return p
}

// tbNewMemPi is a tbPi whose boot and data partitions are on a
// crash-simulating memory filesystem; the devices stay plain files.
func tbNewMemPi(t testing.TB) (*tbPi, slMemFS) {
	mem := slMemFS{vfs.NewCrashableMem()}
	p := &tbPi{t: t, fs: mem, boot: "/boot", data: "/data/ota",
		clock: testclock.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)), reboots: new([][]string)}
	for _, d := range []string{p.boot, p.data} {
		if err := makeDirs(mem, d, "/"); err != nil {
			t.Fatal(err)
		}
	}
	p.dev = tbDevices(t, t.TempDir())
	if err := writeAtomic(mem, "/boot/autoboot.txt", []byte(tbProvisioned)); err != nil {
		t.Fatal(err)
	}
	p.part, p.boots = 2, 1
	return p, mem
}

// tbDevices makes partitions 2 and 3, 2 holding the provisioned image.
func tbDevices(t testing.TB, dir string) map[int]string {
	devs := map[int]string{2: filepath.Join(dir, "mmcblk0p2"), 3: filepath.Join(dir, "mmcblk0p3")}
	factory := bytes.Repeat([]byte("factory image "), tbDeviceSize/14+1)[:tbDeviceSize]
	if err := os.WriteFile(devs[2], factory, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(devs[3], make([]byte, tbDeviceSize), 0o600); err != nil {
		t.Fatal(err)
	}
	return devs
}

func (p *tbPi) slots() *TrybootSlots {
	return &TrybootSlots{
		BootDir: p.boot, StateDir: p.data,
		A: TrybootPartition{2, p.dev[2]}, B: TrybootPartition{3, p.dev[3]},
		Clock:  p.clock.Now,
		Reboot: p.reboot,
		Booted: func() (int, bool, error) { return p.part, p.flag, nil },
		BootID: func() (string, error) { return fmt.Sprintf("boot-%d", p.boots), nil },
		fs:     p.fs,
	}
}

func (p *tbPi) reboot(argv []string) error {
	*p.reboots = append(*p.reboots, argv)
	if p.fail != nil {
		return p.fail
	}
	if slices.Equal(argv, []string{"systemctl", "reboot", "0 tryboot"}) {
		p.oneShot = true
	}
	return nil
}

// powerOn is the firmware starting the next boot.
func (p *tbPi) powerOn() {
	p.t.Helper()
	p.flag, p.oneShot = p.oneShot, false
	p.part = tbFirmwareChoice(p.autoboot(), p.flag)
	if p.part == 0 {
		p.t.Fatalf("autoboot.txt names no partition:\n%s", p.autoboot())
	}
	p.boots++
}

// tbFirmwareChoice is the partition the firmware boots: the last
// boot_partition line that applies, [tryboot] lines only with the flag.
func tbFirmwareChoice(autoboot string, tryboot bool) int {
	part, section := 0, "all"
	for _, line := range strings.Split(autoboot, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "["):
			section = strings.ToLower(strings.Trim(line, "[]"))
		case strings.HasPrefix(line, "boot_partition=") && (section == "all" || section == "tryboot" && tryboot):
			part, _ = strconv.Atoi(strings.TrimPrefix(line, "boot_partition="))
		}
	}
	return part
}

func (p *tbPi) autoboot() string {
	b, err := readSmall(p.fs, filepath.Join(p.boot, "autoboot.txt"))
	if err != nil {
		p.t.Fatal(err)
	}
	return string(b)
}

func (p *tbPi) device(n int) []byte {
	b, err := os.ReadFile(p.dev[n])
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

func (p *tbPi) updater(s *TrybootSlots, images ...tbImg) *Updater {
	return &Updater{Dir: p.data, Installer: s, Clock: p.clock.Now, fs: p.fs,
		Fetch: func(ctx context.Context, m Manifest) (string, error) {
			for _, img := range images {
				if img.m.SHA256 == m.SHA256 {
					return img.artifact, nil
				}
			}
			return "", fmt.Errorf("%w: no such artifact", ErrUnavailable)
		}}
}

// tbImg is a fake OS image, its manifest and its downloaded artifact.
type tbImg struct {
	data     []byte
	m        Manifest
	artifact string
}

func (p *tbPi) image(version string, size int) tbImg {
	p.t.Helper()
	data := make([]byte, 0, size+sha256.Size)
	for seed := sha256.Sum256([]byte("image " + version)); len(data) < size; seed = sha256.Sum256(seed[:]) {
		data = append(data, seed[:]...)
	}
	data = data[:size]
	sum := sha256.Sum256(data)
	raw, _ := json.Marshal(map[string]any{
		"version": version, "boards": []string{"rpi4b"}, "kind": "image", "sha256": hex.EncodeToString(sum[:]),
		"size": size, "url": "https://updates.example.com/os-" + version + ".img",
	})
	m, err := ParseManifest(raw)
	if err != nil {
		p.t.Fatal(err)
	}
	dl := filepath.Join(filepath.Dir(p.data), "download")
	if err := makeDirs(p.fs, dl, filepath.Dir(dl)); err != nil {
		p.t.Fatal(err)
	}
	img := tbImg{data: data, m: m, artifact: filepath.Join(dl, m.SHA256+".artifact")}
	// A copy: the memory filesystem scribbles on what it was given to
	// write (under -race).
	if err := writeAtomic(p.fs, img.artifact, bytes.Clone(data)); err != nil {
		p.t.Fatal(err)
	}
	return img
}

// toTrial installs img, switches to it as job, and reboots into it.
func (p *tbPi) toTrial(s *TrybootSlots, img tbImg, job string) TrybootDecision {
	p.t.Helper()
	if err := s.Install(context.Background(), img.artifact, img.m); err != nil {
		p.t.Fatal(err)
	}
	if err := s.Switch(job, img.m); err != nil {
		p.t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		p.t.Fatal(err)
	}
	p.powerOn()
	d, err := s.Detect()
	if err != nil || !d.Trial || d.Job != job {
		p.t.Fatalf("Detect in the trial boot = %+v, %v", d, err)
	}
	return d
}

func tbAutoboot(normal, try int) string {
	return fmt.Sprintf("[all]\ntryboot_a_b=1\nboot_partition=%d\n[tryboot]\nboot_partition=%d\n", normal, try)
}

var (
	tbTryboot = []string{"systemctl", "reboot", "0 tryboot"}
	tbNormal  = []string{"systemctl", "reboot"}
)

func TestTrybootInstallSwitchCommit(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	img1, img2 := p.image("2.0.0", 40<<10), p.image("2.1.0", 48<<10)

	d, err := s.Detect()
	if err != nil || d.Trial || d.Reboot != nil || d.Partition != 2 || !strings.Contains(d.Reason, "provisioned image from partition 2") {
		t.Fatalf("fresh Detect = %+v, %v", d, err)
	}
	if slot, err := s.Inactive(); slot != SlotB || err != nil {
		t.Fatalf("Inactive = %q, %v; want b", slot, err)
	}
	if got := p.autoboot(); got != tbProvisioned {
		t.Fatalf("Inactive rewrote autoboot.txt:\n%s", got)
	}

	// Install: the image on partition 3, tryboot disarmed first.
	if err := s.Install(context.Background(), img1.artifact, img1.m); err != nil {
		t.Fatal(err)
	}
	if dev := p.device(3); !bytes.Equal(dev[:len(img1.data)], img1.data) {
		t.Fatal("partition 3 does not hold the image")
	}
	if got := p.autoboot(); got != tbAutoboot(2, 2) {
		t.Fatalf("autoboot.txt during the install:\n%s", got)
	}
	if cmd, err := s.RestartCommand(); cmd != nil || err != nil {
		t.Fatalf("RestartCommand before the switch = %q, %v", cmd, err)
	}

	// Switch: the trial persisted, [tryboot] at partition 3; no reboot.
	if err := s.Switch("j1", img1.m); err != nil {
		t.Fatal(err)
	}
	if got := p.autoboot(); got != tbAutoboot(2, 3) {
		t.Fatalf("autoboot.txt after the switch:\n%s", got)
	}
	if len(*p.reboots) != 0 {
		t.Fatalf("Switch rebooted: %q", *p.reboots)
	}
	tr, ok, err := s.TrialStatus()
	if !ok || err != nil || tr.Job != "j1" || tr.Slot != SlotB || tr.Path != p.dev[3] || tr.Version != img1.m.Version || tr.Boots != 0 {
		t.Fatalf("TrialStatus = %+v %v %v", tr, ok, err)
	}
	if cmd, err := s.RestartCommand(); !slices.Equal(cmd, tbTryboot) || err != nil {
		t.Fatalf("RestartCommand after the switch = %q, %v", cmd, err)
	}

	// Restart: the tryboot reboot; the firmware boots partition 3 once.
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if len(*p.reboots) != 1 || !slices.Equal((*p.reboots)[0], tbTryboot) {
		t.Fatalf("reboots = %q", *p.reboots)
	}
	p.powerOn()
	if p.part != 3 || !p.flag {
		t.Fatalf("the tryboot boot came from partition %d (flag %v)", p.part, p.flag)
	}
	d, err = s.Detect()
	if err != nil || !d.Trial || d.Job != "j1" || d.Slot != SlotB || d.Version != img1.m.Version || d.Reboot != nil || !d.Tryboot {
		t.Fatalf("Detect in the trial boot = %+v, %v", d, err)
	}
	if err := s.CommitTrial("healthy"); err != nil {
		t.Fatal(err)
	}
	if got := p.autoboot(); got != tbAutoboot(3, 3) {
		t.Fatalf("autoboot.txt after the commit:\n%s", got)
	}
	b, err := s.Boot()
	if err != nil || b.Trial != nil || b.Committed.Slot != SlotB || b.Committed.Version != img1.m.Version || b.Previous != nil ||
		b.Last == nil || b.Last.State != StateCommitted || b.Last.Job != "j1" || b.Last.Reason != "healthy" {
		t.Fatalf("boot state after the commit: %+v, %v", b, err)
	}
	if cmd, err := s.RestartCommand(); cmd != nil || err != nil {
		t.Fatalf("RestartCommand after the commit = %q, %v", cmd, err)
	}
	p.powerOn() // a normal boot now boots partition 3
	if d, err := s.Detect(); err != nil || p.part != 3 || d.Trial || !strings.Contains(d.Reason, "running 2.0.0 from partition 3") {
		t.Fatalf("normal boot after the commit: partition %d, %+v, %v", p.part, d, err)
	}

	// The next update goes to partition 2, and back.
	if slot, err := s.Inactive(); slot != SlotA || err != nil {
		t.Fatalf("Inactive = %q, %v; want a", slot, err)
	}
	p.toTrial(s, img2, "j2")
	if p.part != 2 {
		t.Fatalf("the second trial booted partition %d", p.part)
	}
	if err := s.CommitTrial("healthy"); err != nil {
		t.Fatal(err)
	}
	if got := p.autoboot(); got != tbAutoboot(2, 2) {
		t.Fatalf("autoboot.txt after the second commit:\n%s", got)
	}
	b, _ = s.Boot()
	if b.Committed.Slot != SlotA || b.Committed.Version != img2.m.Version || b.Previous == nil || b.Previous.Slot != SlotB {
		t.Fatalf("boot state after the second commit: %+v", b)
	}
	if left, _ := filepath.Glob(filepath.Join(p.boot, "*.tmp")); len(left) > 0 {
		t.Fatalf("temporary files left on the boot partition: %v", left)
	}
}

func TestTrybootUpdaterToCommit(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	img := p.image("2.0.0", 40<<10)
	u := p.updater(s, img)
	if _, err := u.Start("j1", img.m); err != nil {
		t.Fatal(err)
	}
	j, err := u.Resume(context.Background())
	if err != nil || j.State != StateTrial || j.Slot != SlotB {
		t.Fatalf("Resume = %s %q slot %q, %v", j.State, j.Reason, j.Slot, err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	p.powerOn()
	if d, err := s.Detect(); err != nil || !d.Trial {
		t.Fatalf("Detect = %+v, %v", d, err)
	}
	if j, err := u.Resume(context.Background()); err != nil || j.State != StateTrial {
		t.Fatalf("Resume in the trial boot = %s, %v", j.State, err)
	}
	if err := s.CommitTrial("healthy"); err != nil {
		t.Fatal(err)
	}
	if j, err := u.Job(); err != nil || j.State != StateCommitted || j.Reason != "healthy" {
		t.Fatalf("job after the commit: %s %q, %v", j.State, j.Reason, err)
	}
}

// A trial boot that does not last: the next boot, a normal one, is the
// committed partition's, and the trial is rolled back.
func TestTrybootTrialIsForOneBootOnly(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	img := p.image("2.0.0", 40<<10)
	u := p.updater(s, img)
	if _, err := u.Start("j1", img.m); err != nil {
		t.Fatal(err)
	}
	if j, err := u.Resume(context.Background()); err != nil || j.State != StateTrial {
		t.Fatalf("Resume = %s, %v", j.State, err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	p.powerOn()
	if d, err := s.Detect(); err != nil || !d.Trial || p.part != 3 {
		t.Fatalf("Detect = %+v, %v", d, err)
	}
	p.powerOn() // the trial hangs; the watchdog resets the Pi
	if p.part != 2 || p.flag {
		t.Fatalf("the boot after the trial came from partition %d (flag %v)", p.part, p.flag)
	}
	d, err := s.Detect()
	if err != nil || d.Trial || d.Reboot != nil || !strings.Contains(d.Reason, "did not come up") {
		t.Fatalf("Detect after the trial = %+v, %v", d, err)
	}
	if got := p.autoboot(); got != tbAutoboot(2, 2) {
		t.Fatalf("autoboot.txt after the rollback:\n%s", got)
	}
	j, err := u.Resume(context.Background())
	if err != nil || j.State != StateRolledBack || !strings.Contains(j.Reason, "partition 3 did not come up") {
		t.Fatalf("job = %s %q, %v", j.State, j.Reason, err)
	}
	p.powerOn()
	if p.part != 2 {
		t.Fatalf("a later boot came from partition %d", p.part)
	}
	if slot, err := s.Inactive(); slot != SlotB || err != nil {
		t.Fatalf("Inactive after the rollback = %q, %v", slot, err)
	}
}

func TestTrybootRollbackWhenTrialDoesNotComeUp(t *testing.T) {
	for _, tc := range []struct {
		name string
		flag bool
		want string
	}{
		{"firmware fell back", false, "the tryboot boot of partition 3 did not come up"},
		{"tryboot went elsewhere", true, "the tryboot reboot booted partition 2, not the trial's partition 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tbNewPi(t)
			s := p.slots()
			img := p.image("2.0.0", 40<<10)
			if err := s.Install(context.Background(), img.artifact, img.m); err != nil {
				t.Fatal(err)
			}
			if err := s.Switch("j1", img.m); err != nil {
				t.Fatal(err)
			}
			if err := s.Restart(); err != nil {
				t.Fatal(err)
			}
			// The partition reader says the next boot was the old one.
			p.part, p.flag, p.boots = 2, tc.flag, p.boots+1
			d, err := s.Detect()
			if err != nil || d.Trial || !strings.Contains(d.Reason, tc.want) {
				t.Fatalf("Detect = %+v, %v", d, err)
			}
			b, _ := s.Boot()
			if b.Trial != nil || b.Last == nil || b.Last.State != StateRolledBack || !strings.Contains(b.Last.Reason, tc.want) {
				t.Fatalf("boot state: %+v", b)
			}
			if got := p.autoboot(); got != tbAutoboot(2, 2) {
				t.Fatalf("autoboot.txt:\n%s", got)
			}
		})
	}
}

// Until the tryboot reboot has happened the trial waits for it: kioskd
// restarting, or a reboot command that failed, rolls nothing back.
func TestTrybootTrialWaitsForItsReboot(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	img := p.image("2.0.0", 40<<10)
	if err := s.Install(context.Background(), img.artifact, img.m); err != nil {
		t.Fatal(err)
	}
	if err := s.Switch("j1", img.m); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		d, err := s.Detect()
		if err != nil || d.Trial || !slices.Equal(d.Reboot, tbTryboot) || !strings.Contains(d.Reason, "waiting for the tryboot reboot") {
			t.Fatalf("Detect before the reboot = %+v, %v", d, err)
		}
	}
	p.fail = errors.New("Failed to connect to bus")
	if err := s.Restart(); err == nil || !strings.Contains(err.Error(), "bus") {
		t.Fatalf("Restart with a failing reboot = %v", err)
	}
	if d, err := s.Detect(); err != nil || !slices.Equal(d.Reboot, tbTryboot) {
		t.Fatalf("Detect after a failed reboot = %+v, %v", d, err)
	}
	p.fail = nil
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	p.powerOn()
	if d, err := s.Detect(); err != nil || !d.Trial {
		t.Fatalf("Detect in the trial boot = %+v, %v", d, err)
	}
}

func TestTrybootFailTrial(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	img := p.image("2.0.0", 40<<10)
	u := p.updater(s, img)
	if _, err := u.Start("j1", img.m); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	p.powerOn()
	if d, err := s.Detect(); err != nil || !d.Trial {
		t.Fatalf("Detect = %+v, %v", d, err)
	}
	if err := s.FailTrial("the till never became ready"); err != nil {
		t.Fatal(err)
	}
	if err := s.FailTrial("again"); !errors.Is(err, ErrNoTrial) {
		t.Fatalf("FailTrial without a trial = %v", err)
	}
	if got := p.autoboot(); got != tbAutoboot(2, 2) {
		t.Fatalf("autoboot.txt after FailTrial:\n%s", got)
	}
	if j, _ := u.Job(); j.State != StateRolledBack || j.Reason != "the till never became ready" {
		t.Fatalf("job = %s %q", j.State, j.Reason)
	}
	if cmd, err := s.RestartCommand(); !slices.Equal(cmd, tbNormal) || err != nil {
		t.Fatalf("RestartCommand in the failed trial = %q, %v", cmd, err)
	}
	if _, err := s.Inactive(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Inactive while the failed trial runs = %v, want ErrBusy", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if last := (*p.reboots)[len(*p.reboots)-1]; !slices.Equal(last, tbNormal) {
		t.Fatalf("the reboot out of the trial was %q", last)
	}
	p.powerOn()
	if d, err := s.Detect(); err != nil || p.part != 2 || d.Reboot != nil || d.Trial {
		t.Fatalf("back on partition %d: %+v, %v", p.part, d, err)
	}
}

func TestTrybootCrashLoopInTrial(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	s.MaxTrialBoots = 2
	img := p.image("2.0.0", 40<<10)
	p.toTrial(s, img, "j1") // start 1
	if d, err := s.Detect(); err != nil || !d.Trial || !strings.Contains(d.Reason, "start 2 of 2") {
		t.Fatalf("second start = %+v, %v", d, err)
	}
	d, err := s.Detect()
	if err != nil || d.Trial || !slices.Equal(d.Reboot, tbNormal) || !strings.Contains(d.Reason, "crashed 2 times in trial") {
		t.Fatalf("third start = %+v, %v", d, err)
	}
	if b, _ := s.Boot(); b.Trial != nil || b.Last == nil || b.Last.State != StateRolledBack {
		t.Fatalf("boot state: %+v", b)
	}
}

func TestTrybootCommitOnlyInsideTheTrialBoot(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	img := p.image("2.0.0", 40<<10)
	if err := s.Commit("j1", ""); !errors.Is(err, ErrNoTrial) {
		t.Fatalf("Commit without a trial = %v", err)
	}
	if err := s.Install(context.Background(), img.artifact, img.m); err != nil {
		t.Fatal(err)
	}
	if err := s.Switch("j1", img.m); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit("j1", "healthy"); !errors.Is(err, ErrNotBooted) {
		t.Fatalf("Commit before the trial boot = %v, want ErrNotBooted", err)
	}
	if err := s.CommitTrial("healthy"); !errors.Is(err, ErrNotBooted) {
		t.Fatalf("CommitTrial before the trial boot = %v, want ErrNotBooted", err)
	}
	if got := p.autoboot(); got != tbAutoboot(2, 3) {
		t.Fatalf("autoboot.txt:\n%s", got)
	}
}

func TestTrybootIdempotent(t *testing.T) {
	p := tbNewPi(t)
	count := &slCrashFS{fs: osFS{}}
	p.fs = count
	devs := &tbCountDevices{blockDevices: osDevices{}}
	s := p.slots()
	s.dev = devs
	img := p.image("2.0.0", 40<<10)
	if _, err := s.Detect(); err != nil {
		t.Fatal(err)
	}

	if err := s.Install(context.Background(), img.artifact, img.m); err != nil {
		t.Fatal(err)
	}
	steps := count.steps
	for range 2 {
		if err := s.Install(context.Background(), img.artifact, img.m); err != nil {
			t.Fatal(err)
		}
	}
	if devs.writes != 1 || count.steps != steps {
		t.Fatalf("repeated Installs wrote again: %d device writes, %v", devs.writes, count.ops[steps:])
	}
	// A device that went bad is written again.
	if err := os.WriteFile(p.dev[3], make([]byte, tbDeviceSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(context.Background(), img.artifact, img.m); err != nil || devs.writes != 2 {
		t.Fatalf("Install over a damaged device: %v, %d writes", err, devs.writes)
	}

	if err := s.Switch("j1", img.m); err != nil {
		t.Fatal(err)
	}
	steps = count.steps
	for range 2 {
		if err := s.Switch("j1", img.m); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Detect(); err != nil {
			t.Fatal(err)
		}
	}
	if count.steps != steps {
		t.Fatalf("repeated Switch and Detect wrote: %v", count.ops[steps:])
	}
	if err := s.Switch("other", img.m); !errors.Is(err, ErrBusy) {
		t.Fatalf("Switch of another job during a trial = %v", err)
	}
	if err := s.Install(context.Background(), img.artifact, img.m); !errors.Is(err, ErrBusy) {
		t.Fatalf("Install during a trial = %v", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	p.powerOn()
	if _, err := s.Detect(); err != nil {
		t.Fatal(err)
	}
	if err := s.Switch("j1", img.m); err != nil {
		t.Fatalf("Switch in the trial boot = %v", err)
	}
	for range 2 {
		if err := s.Commit("j1", "healthy"); err != nil {
			t.Fatal(err)
		}
	}
	steps = count.steps
	if err := s.Rollback("j1", "late"); err != nil {
		t.Fatal(err)
	}
	if err := s.Switch("j1", img.m); err != nil {
		t.Fatal(err)
	}
	if count.steps != steps {
		t.Fatalf("Rollback or Switch of a committed job wrote: %v", count.ops[steps:])
	}
	if b, _ := s.Boot(); b.Committed.Job != "j1" || b.Trial != nil || b.Last.State != StateCommitted {
		t.Fatalf("boot state: %+v", b)
	}

	// Rollback twice.
	img2 := p.image("2.1.0", 40<<10)
	if err := s.Install(context.Background(), img2.artifact, img2.m); err != nil {
		t.Fatal(err)
	}
	if err := s.Switch("j2", img2.m); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Rollback("j2", "cancelled"); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := s.Boot(); b.Trial != nil || b.Last.Job != "j2" || b.Last.State != StateRolledBack || b.Last.Reason != "cancelled" {
		t.Fatalf("boot state after the rollbacks: %+v", b)
	}
	if got := p.autoboot(); got != tbAutoboot(3, 3) {
		t.Fatalf("autoboot.txt after the rollbacks:\n%s", got)
	}
}

func TestTrybootInstallCatchesBadWrite(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	s.dev = tbFlipDevices{osDevices{}}
	img := p.image("2.0.0", 40<<10)
	err := s.Install(context.Background(), img.artifact, img.m)
	if !errors.Is(err, ErrSlotCorrupt) || !strings.Contains(err.Error(), "bad copy") {
		t.Fatalf("Install through a flipping device = %v, want a bad copy", err)
	}
	if _, err := os.Stat(filepath.Join(p.data, "tryboot-b.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a bad write was recorded as installed: %v", err)
	}
	s.dev = nil
	if err := s.Switch("j1", img.m); !errors.Is(err, ErrSlotCorrupt) {
		t.Fatalf("Switch to a badly written slot = %v, want ErrSlotCorrupt", err)
	}
	if b, _ := s.Boot(); b.Trial != nil {
		t.Fatalf("switched to a bad slot: %+v", b.Trial)
	}
	if got := p.autoboot(); got != tbAutoboot(2, 2) {
		t.Fatalf("autoboot.txt:\n%s", got)
	}
}

func TestTrybootInstallRefuses(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	img := p.image("2.0.0", 40<<10)

	bin := img.m
	bin.Kind = KindBinary
	if err := s.Install(context.Background(), img.artifact, bin); err == nil {
		t.Fatal("tryboot slots installed a binary")
	}
	bad := filepath.Join(t.TempDir(), "artifact")
	flipped := append([]byte{}, img.data...)
	flipped[100] ^= 1
	if err := os.WriteFile(bad, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(context.Background(), bad, img.m); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Install of a wrong artifact = %v, want ErrCorrupt", err)
	}
	if err := s.Switch("j", img.m); !errors.Is(err, ErrSlotCorrupt) {
		t.Fatalf("Switch after a wrong artifact = %v, want ErrSlotCorrupt", err)
	}

	big := p.image("2.1.0", tbDeviceSize+1)
	if err := s.Install(context.Background(), big.artifact, big.m); !errors.Is(err, ErrSlotCorrupt) || !strings.Contains(err.Error(), "holds") {
		t.Fatalf("Install of an image larger than the partition = %v", err)
	}

	missing := p.slots()
	missing.B.Device = filepath.Join(t.TempDir(), "mmcblk0p9")
	if err := missing.Install(context.Background(), img.artifact, img.m); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Install to a missing device = %v", err)
	}
	if _, err := os.Stat(missing.B.Device); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Install created the device: %v", err)
	}
	if dev := p.device(2); !bytes.HasPrefix(dev, []byte("factory image")) {
		t.Fatal("the running partition was written")
	}
}

// Install never writes the partition that runs, nor one a trial holds.
func TestTrybootNeverWritesTheRunningPartition(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	img := p.image("2.0.0", 40<<10)
	// Booted into partition 3 by hand (reboot 3); autoboot.txt boots 2.
	p.part = 3
	if _, err := s.Inactive(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Inactive off the committed partition = %v, want ErrBusy", err)
	}
	if err := s.Install(context.Background(), img.artifact, img.m); !errors.Is(err, ErrBusy) {
		t.Fatalf("Install off the committed partition = %v, want ErrBusy", err)
	}
	if !bytes.Equal(p.device(3), make([]byte, tbDeviceSize)) {
		t.Fatal("the running partition 3 was written")
	}
	if d, err := s.Detect(); err != nil || !slices.Equal(d.Reboot, tbNormal) {
		t.Fatalf("Detect off the committed partition = %+v, %v", d, err)
	}
}

func TestTrybootAutobootRewriteSurvivesPowerCut(t *testing.T) {
	// Find where Commit renames autoboot.txt.tmp over autoboot.txt.
	count := tbNewPi(t)
	img := count.image("2.0.0", 40<<10)
	s := count.slots()
	count.toTrial(s, img, "j1")
	c := &slCrashFS{fs: osFS{}}
	s.fs = c
	if err := s.CommitTrial("healthy"); err != nil {
		t.Fatal(err)
	}
	at := slices.IndexFunc(c.ops, func(op string) bool {
		return strings.HasPrefix(op, "rename "+filepath.Join(count.boot, "autoboot.txt.tmp"))
	})
	if at < 0 {
		t.Fatalf("Commit did not rename autoboot.txt.tmp: %v", c.ops)
	}

	// The power goes there: autoboot.txt.tmp is written, not renamed.
	p := tbNewPi(t)
	img = p.image("2.0.0", 40<<10)
	s = p.slots()
	p.toTrial(s, img, "j1")
	before := p.autoboot()
	s.fs = &slCrashFS{fs: osFS{}, at: at + 1}
	if err := s.CommitTrial("healthy"); !errors.Is(err, errPowerCut) {
		t.Fatalf("CommitTrial = %v, want the power cut", err)
	}
	if got := p.autoboot(); got != before || got != tbAutoboot(2, 3) {
		t.Fatalf("autoboot.txt after a cut before the rename:\n%s", got)
	}
	if tmp, _ := os.ReadFile(filepath.Join(p.boot, "autoboot.txt.tmp")); string(tmp) != tbAutoboot(3, 3) {
		t.Fatalf("autoboot.txt.tmp = %q", tmp)
	}
	s.fs = osFS{}
	p.powerOn()
	d, err := s.Detect()
	if err != nil || p.part != 2 || d.Trial || !strings.Contains(d.Reason, "did not come up") {
		t.Fatalf("after the cut: partition %d, %+v, %v", p.part, d, err)
	}
}

// The power goes at every step of Switch and of Commit, on a disk that
// keeps only what was synced: autoboot.txt is always a whole file, a
// good partition boots, and the state settles with it.
func TestTrybootPowerCut(t *testing.T) {
	base, mem := tbNewMemPi(t)
	img := base.image("2.0.0", 40<<10)
	if err := base.slots().Install(context.Background(), img.artifact, img.m); err != nil {
		t.Fatal(err)
	}
	installed := mem.afterPowerCut()

	// The steps of each.
	c := &slCrashFS{fs: installed.afterPowerCut()}
	pc := *base
	pc.fs = c
	if err := pc.slots().Switch("j1", img.m); err != nil {
		t.Fatal(err)
	}
	switchSteps := c.steps

	trial := *base
	trialFS := installed.afterPowerCut()
	trial.fs = trialFS
	if err := trial.slots().Switch("j1", img.m); err != nil {
		t.Fatal(err)
	}
	if err := trial.slots().Restart(); err != nil {
		t.Fatal(err)
	}
	trial.powerOn()
	if d, err := trial.slots().Detect(); err != nil || !d.Trial {
		t.Fatalf("Detect = %+v, %v", d, err)
	}
	c = &slCrashFS{fs: trialFS.afterPowerCut()}
	pc = trial
	pc.fs = c
	if err := pc.slots().CommitTrial("healthy"); err != nil {
		t.Fatal(err)
	}
	commitSteps := c.steps
	if switchSteps < 4 || commitSteps < 4 {
		t.Fatalf("Switch took %d steps, Commit %d", switchSteps, commitSteps)
	}

	for at := 1; at <= switchSteps; at++ {
		p := *base
		disk := installed.afterPowerCut()
		p.fs = &slCrashFS{fs: disk, at: at}
		if err := p.slots().Switch("j1", img.m); !errors.Is(err, errPowerCut) {
			t.Fatalf("switch, cut at %d: %v", at, err)
		}
		p.fs = disk.afterPowerCut()
		tbCheckAutoboot(t, &p, fmt.Sprintf("switch, cut at %d", at))
		p.powerOn()
		if p.part != 2 {
			t.Fatalf("switch, cut at %d: booted partition %d", at, p.part)
		}
		s := p.slots()
		if _, err := s.Detect(); err != nil {
			t.Fatalf("switch, cut at %d: Detect: %v", at, err)
		}
		// The Updater redoes the switch; the trial then boots.
		if err := s.Switch("j1", img.m); err != nil {
			t.Fatalf("switch, cut at %d: redone: %v", at, err)
		}
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
		p.powerOn()
		if d, err := s.Detect(); err != nil || !d.Trial || p.part != 3 {
			t.Fatalf("switch, cut at %d: trial boot on %d: %+v, %v", at, p.part, d, err)
		}
	}

	outcomes := map[State]int{}
	for at := 1; at <= commitSteps; at++ {
		p := trial
		disk := trialFS.afterPowerCut()
		p.fs = &slCrashFS{fs: disk, at: at}
		if err := p.slots().CommitTrial("healthy"); !errors.Is(err, errPowerCut) {
			t.Fatalf("commit, cut at %d: %v", at, err)
		}
		p.fs = disk.afterPowerCut()
		tbCheckAutoboot(t, &p, fmt.Sprintf("commit, cut at %d", at))
		p.powerOn()
		s := p.slots()
		if _, err := s.Detect(); err != nil {
			t.Fatalf("commit, cut at %d: Detect: %v", at, err)
		}
		b, err := s.Boot()
		if err != nil || b.Trial != nil || b.Last == nil || b.Last.Job != "j1" {
			t.Fatalf("commit, cut at %d: boot state %+v, %v", at, b, err)
		}
		switch b.Last.State {
		case StateCommitted:
			if p.part != 3 || b.Committed.Slot != SlotB {
				t.Fatalf("commit, cut at %d: committed, but partition %d boots: %+v", at, p.part, b)
			}
		case StateRolledBack:
			if p.part != 2 || !b.Committed.Packaged() {
				t.Fatalf("commit, cut at %d: rolled back, but partition %d boots: %+v", at, p.part, b)
			}
		}
		if cmd, err := s.RestartCommand(); cmd != nil || err != nil {
			t.Fatalf("commit, cut at %d: RestartCommand = %q, %v", at, cmd, err)
		}
		outcomes[b.Last.State]++
	}
	if outcomes[StateCommitted] == 0 || outcomes[StateRolledBack] == 0 {
		t.Fatalf("outcomes of the cuts: %v", outcomes)
	}
}

// tbCheckAutoboot checks that autoboot.txt is one kioskd writes, or the
// provisioned one, and boots slot a or b either way.
func tbCheckAutoboot(t *testing.T, p *tbPi, when string) {
	t.Helper()
	got := p.autoboot()
	ok := got == tbProvisioned
	for _, n := range []int{2, 3} {
		for _, m := range []int{2, 3} {
			ok = ok || got == tbAutoboot(n, m)
		}
	}
	if !ok {
		t.Fatalf("%s: autoboot.txt is\n%q", when, got)
	}
}

func TestTrybootAutobootChangedByHand(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	img1, img2 := p.image("2.0.0", 40<<10), p.image("2.1.0", 40<<10)
	p.toTrial(s, img1, "j1")
	if err := s.CommitTrial("healthy"); err != nil {
		t.Fatal(err)
	}
	p.powerOn()
	p.toTrial(s, img2, "j2")
	if err := s.CommitTrial("healthy"); err != nil {
		t.Fatal(err)
	}
	// The operator points autoboot.txt back at partition 3 (2.0.0).
	if err := os.WriteFile(filepath.Join(p.boot, "autoboot.txt"), []byte(tbAutoboot(3, 3)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.powerOn()
	d, err := s.Detect()
	if err != nil || !strings.Contains(d.Reason, "changed outside kioskd") {
		t.Fatalf("Detect = %+v, %v", d, err)
	}
	if b, _ := s.Boot(); b.Committed.Slot != SlotB || b.Committed.Version != img1.m.Version || b.Previous != nil {
		t.Fatalf("boot state: %+v", b)
	}
	if slot, err := s.Inactive(); slot != SlotA || err != nil {
		t.Fatalf("Inactive = %q, %v", slot, err)
	}
}

func TestTrybootUnreadableState(t *testing.T) {
	p := tbNewPi(t)
	s := p.slots()
	if err := os.WriteFile(filepath.Join(p.data, "tryboot.json"), []byte(`{"format":1,`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Boot(); !errors.Is(err, ErrBadState) {
		t.Fatalf("Boot = %v, want ErrBadState", err)
	}
	d, err := s.Detect()
	if !errors.Is(err, ErrBadState) || d.Partition != 2 || d.Trial || !strings.Contains(d.Reason, "moved aside") {
		t.Fatalf("Detect = %+v, %v", d, err)
	}
	if _, err := os.Stat(filepath.Join(p.data, "tryboot.json.corrupt")); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Detect(); err != nil || d.Trial {
		t.Fatalf("Detect after = %+v, %v", d, err)
	}
}

func TestTrybootProvisioningRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		autoboot string
		part     int
		edit     func(*TrybootSlots)
		want     error
		text     string
	}{
		"no autoboot.txt":    {want: ErrAutoboot, text: "missing"},
		"other partition":    {autoboot: "[all]\nboot_partition=5\n", want: ErrAutoboot, text: "partition 5"},
		"no boot_partition":  {autoboot: "[all]\ntryboot_a_b=1\n", want: ErrAutoboot, text: "partition 0"},
		"unknown key":        {autoboot: "[all]\nboot_partition=2\nBOOT_ORDER=0xf41\n", want: ErrAutoboot, text: "line 3"},
		"unknown filter":     {autoboot: "[pi4]\nboot_partition=2\n", want: ErrAutoboot, text: "[pi4]"},
		"bad number":         {autoboot: "boot_partition=two\n", want: ErrAutoboot, text: "two"},
		"blanks around =":    {autoboot: "boot_partition = 2\n", want: ErrAutoboot, text: "line 1"},
		"too long":           {autoboot: strings.Repeat("# padding\n", 60) + "boot_partition=2\n", want: ErrAutoboot, text: "512"},
		"partition 0 booted": {autoboot: tbProvisioned, part: -1, text: "partition 0"},
		"elsewhere booted":   {autoboot: tbProvisioned, part: 7, text: "partition 7"},
		"same partitions":    {autoboot: tbProvisioned, edit: func(s *TrybootSlots) { s.B.Number = 2 }, text: "both partition 2"},
		"same devices":       {autoboot: tbProvisioned, edit: func(s *TrybootSlots) { s.B.Device = s.A.Device }, text: "two devices"},
		"no boot dir":        {autoboot: tbProvisioned, edit: func(s *TrybootSlots) { s.BootDir = "" }, text: "BootDir"},
	} {
		t.Run(name, func(t *testing.T) {
			p := tbNewPi(t)
			path := filepath.Join(p.boot, "autoboot.txt")
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if tc.autoboot != "" {
				if err := os.WriteFile(path, []byte(tc.autoboot), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			switch {
			case tc.part < 0:
				p.part = 0
			case tc.part > 0:
				p.part = tc.part
			}
			s := p.slots()
			if tc.edit != nil {
				tc.edit(s)
			}
			_, err := s.Inactive()
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Inactive = %v, want %v mentioning %q", err, tc.want, tc.text)
			}
			if _, err := s.Detect(); err == nil {
				t.Fatal("Detect accepted it")
			}
			if got, _ := os.ReadFile(path); string(got) != tc.autoboot {
				t.Fatalf("autoboot.txt was rewritten: %q", got)
			}
		})
	}
}

func TestTrybootParseAutoboot(t *testing.T) {
	for _, tc := range []struct {
		text        string
		normal, try int
		ab          int
	}{
		{tbProvisioned, 2, 3, 1},
		{"boot_partition=2\n", 2, 2, 0},
		{"[ALL]\r\ntryboot_a_b=1\r\nboot_partition=3\r\n[TRYBOOT]\r\nboot_partition=2\r\n", 3, 2, 1},
		{"# A/B\n[all]\n  boot_partition=2\t\n[none]\nboot_partition=9\n[tryboot]\nboot_partition=3\n", 2, 3, 0},
		// The last line that applies wins: [all] after [tryboot] resets it.
		{"[tryboot]\nboot_partition=3\ntryboot_a_b=1\n[all]\nboot_partition=2\n", 2, 2, 1},
	} {
		a, err := parseAutoboot([]byte(tc.text))
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if n, tr, ab := a.partition(false), a.partition(true), a.value("tryboot_a_b", true); n != tc.normal || tr != tc.try || ab != tc.ab {
			t.Fatalf("%q: normal %d tryboot %d tryboot_a_b %d; want %d %d %d", tc.text, n, tr, ab, tc.normal, tc.try, tc.ab)
		}
		if n, tr := tbFirmwareChoice(tc.text, false), tbFirmwareChoice(tc.text, true); n != tc.normal || tr != tc.try {
			t.Fatalf("%q: the test's firmware model says %d %d", tc.text, n, tr)
		}
	}
	for n := 1; n <= 3; n++ {
		for m := 1; m <= 3; m++ {
			raw := renderAutoboot(n, m)
			if len(raw) > maxAutobootSize {
				t.Fatalf("renderAutoboot: %d bytes", len(raw))
			}
			a, err := parseAutoboot(raw)
			if err != nil || a.partition(false) != n || a.partition(true) != m || a.value("tryboot_a_b", true) != 1 {
				t.Fatalf("renderAutoboot(%d, %d) reads back as %+v, %v", n, m, a, err)
			}
		}
	}
}

func TestReadBootloaderDT(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b ...byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ReadBootloaderDT(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no properties: %v", err)
	}
	write("partition", 0, 0, 0, 3)
	if p, tr, err := ReadBootloaderDT(dir); p != 3 || tr || err != nil {
		t.Fatalf("no tryboot property: %d %v %v", p, tr, err)
	}
	write("tryboot", 0, 0, 0, 1)
	if p, tr, err := ReadBootloaderDT(dir); p != 3 || !tr || err != nil {
		t.Fatalf("tryboot set: %d %v %v", p, tr, err)
	}
	write("tryboot", 0, 0, 0, 0)
	if p, tr, err := ReadBootloaderDT(dir); p != 3 || tr || err != nil {
		t.Fatalf("tryboot clear: %d %v %v", p, tr, err)
	}
	write("partition", '3', '\n')
	if _, _, err := ReadBootloaderDT(dir); err == nil {
		t.Fatal("a partition that is not a 32-bit cell was accepted")
	}
}

// tbCountDevices counts the opens for writing.
type tbCountDevices struct {
	blockDevices
	writes int
}

func (c *tbCountDevices) OpenWrite(name string) (deviceWriter, int64, error) {
	c.writes++
	return c.blockDevices.OpenWrite(name)
}

// tbFlipDevices flips a bit of every write: a card that corrupts writes.
type tbFlipDevices struct{ blockDevices }

func (d tbFlipDevices) OpenWrite(name string) (deviceWriter, int64, error) {
	w, n, err := d.blockDevices.OpenWrite(name)
	if err != nil {
		return nil, 0, err
	}
	return tbFlipWriter{w}, n, nil
}

type tbFlipWriter struct{ deviceWriter }

func (w tbFlipWriter) Write(p []byte) (int, error) {
	q := append([]byte{}, p...)
	q[len(q)/2] ^= 0x10
	return w.deviceWriter.Write(q)
}

var _ io.Writer = tbFlipWriter{}
