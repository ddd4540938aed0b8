package ota

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Errors of the tryboot installer; test them with errors.Is.
var (
	// ErrAutoboot says autoboot.txt is missing, or says something kioskd
	// does not understand and would lose by rewriting it (see
	// TrybootSlots). It is a provisioning fault: nothing is switched.
	ErrAutoboot = errors.New("ota: autoboot.txt is not an A/B tryboot setup kioskd can manage")
	// ErrNotBooted says the trial's partition is not the one running: a
	// trial is committed only from inside its own boot.
	ErrNotBooted = errors.New("ota: the trial's partition is not the one running")
)

// Files of TrybootSlots.
const (
	// autobootFile is read by the bootloader from the first FAT
	// partition; it reads at most maxAutobootSize bytes of it.
	autobootFile    = "autoboot.txt"
	maxAutobootSize = 512
	// trybootStateFile is the boot state under StateDir; tryboot-<slot>.json
	// records what Install wrote to a slot's device.
	trybootStateFile = "tryboot.json"
	trybootMetaFmt   = "tryboot-%s.json"
	// maxBootPartition: the bootloader takes partition numbers above 31
	// as special reboot arguments, not partitions.
	maxBootPartition = 31
)

// DefaultBootloaderDT is where Linux shows the Raspberry Pi bootloader's
// /chosen/bootloader properties: partition (the partition this boot came
// from) and tryboot (1 if the tryboot flag was set), each a 32-bit
// big-endian integer.
const DefaultBootloaderDT = "/proc/device-tree/chosen/bootloader"

// defaultBootIDFile changes at every boot of Linux.
const defaultBootIDFile = "/proc/sys/kernel/random/boot_id"

// The reboots TrybootSlots asks for. One argument, "0 tryboot": the
// kernel passes it to the firmware, which sets its one-shot tryboot flag
// and boots the default partition (0), that is, what autoboot.txt says.
var (
	trybootReboot = []string{"systemctl", "reboot", "0 tryboot"}
	normalReboot  = []string{"systemctl", "reboot"}
)

// TrybootPartition is one of the two A/B slots of a Raspberry Pi: the
// partition number the firmware boots (autoboot.txt's boot_partition)
// and the block device a full image is written to.
type TrybootPartition struct {
	// Number is the partition number, 1 to 31 (2 for /dev/mmcblk0p2).
	Number int
	// Device is the device Install writes the image to, from its first
	// byte: /dev/mmcblk0p2. It is never created: it must exist and be at
	// least as large as the image.
	Device string
}

// TrybootSlots is the Installer for full Raspberry Pi OS images, A/B
// through the bootloader's tryboot flag and autoboot.txt (Raspberry Pi 4,
// 400, CM4 and 5). A is SlotA, B is SlotB.
//
// What the firmware does, and so what this relies on:
//
//   - autoboot.txt, on the first FAT partition (BootDir), names the
//     partition to boot. In a normal boot the [all] section counts; with
//     the tryboot flag set the [tryboot] section counts too, after it,
//     so its boot_partition wins. tryboot_a_b=1 makes the firmware load
//     the normal config.txt from the partition it picked, not
//     tryboot.txt, so both slots hold an ordinary image.
//   - The tryboot flag is one-shot: `reboot "0 tryboot"` sets it and the
//     bootloader clears it before it starts the firmware, so only the
//     next boot is a tryboot boot. A crash, a hang ended by the watchdog
//     or a power cut in that boot comes back on the [all] partition.
//   - /proc/device-tree/chosen/bootloader/partition and …/tryboot say
//     which partition this boot came from and whether the flag was set.
//
// The autoboot.txt kioskd writes is always
//
//	[all]
//	tryboot_a_b=1
//	boot_partition=<committed>
//	[tryboot]
//	boot_partition=<trial, or committed when there is none>
//
// so a tryboot reboot nobody asked for lands on the committed partition,
// never on one that Install is overwriting. Each rewrite is
// autoboot.txt.tmp written, fsynced and renamed over autoboot.txt, then
// BootDir fsynced: a power cut leaves the old file or the new one (FAT
// gives no stronger promise than that, and the old file is always a good
// one). An autoboot.txt with other keys or filters is refused
// (ErrAutoboot) rather than rewritten without them.
//
// The steps:
//
//   - Install writes the image to the inactive slot's device (the one
//     autoboot.txt's [all] does not name, and not the one running),
//     fsyncs it and reads it back to check its sha256 over m.Size bytes.
//   - Switch checks the device again, persists the trial in
//     StateDir/tryboot.json, then arms [tryboot] at its partition. It
//     does not reboot: the caller's restart into the trial is Restart,
//     the tryboot reboot (RestartCommand says which restart is due). The
//     Updater persists the trial after Switch returns, and a Switch
//     redone after a power cut must not reboot again.
//   - Restart persists that the tryboot reboot was asked for, and in
//     which boot (the kernel's boot_id), before asking for it.
//   - Detect, at every start of kioskd, reads which partition booted and
//     settles the state: running the trial's partition, this is the
//     trial (its starts are counted; past MaxTrialBoots it is failed);
//     back on the committed partition in a later boot than the one that
//     asked for the tryboot reboot, the trial did not come up and is
//     rolled back.
//   - Commit, from inside the trial boot, rewrites autoboot.txt with the
//     trial's partition in both sections (that rename is the commit),
//     then records it in tryboot.json. A power cut between the two is
//     finished by the next Detect, from autoboot.txt.
//   - Rollback records the outcome and points [tryboot] back at the
//     committed partition; nothing else needs undoing: the next normal
//     boot is the committed partition's by itself. From inside the trial
//     boot that takes a normal reboot (RestartCommand, Restart).
//
// StateDir must be on storage both images share (the data partition),
// not inside either image: the trial boot reads what Switch wrote there.
// It may be the Updater's Dir; job.json there is then settled with the
// trial.
//
// Requirements: the Pi 4 family needs a bootloader EEPROM from
// 2022-11-25 (default release) or later for tryboot_a_b and the
// [tryboot] filter (bit 2 of /chosen/bootloader/capabilities), and on
// Pi 4B revision 1.0 and 1.1 the EEPROM must not be write-protected,
// because those keep the tryboot flag in it. A bootloader that reports
// partition 0 (some early Pi 5 EEPROMs) cannot say which slot runs:
// TrybootSlots then refuses to act until the EEPROM is updated. kioskd
// needs write access to BootDir and both devices, and leave to reboot.
// A kernel that hangs in the trial boot comes back only through a
// watchdog reset: enable the hardware watchdog (systemd's
// RuntimeWatchdogSec).
type TrybootSlots struct {
	// BootDir is where the first FAT partition, the one with
	// autoboot.txt, is mounted: /boot/firmware, or the mount of p1 when
	// the slots are p2 and p3.
	BootDir string
	// A and B are the two slots.
	A, B TrybootPartition
	// StateDir holds tryboot.json and what Install wrote where.
	StateDir string
	// MaxTrialBoots is how many times kioskd may start in the trial boot
	// without a commit before Detect fails the trial; 0 is
	// DefaultMaxTrialBoots.
	MaxTrialBoots int
	// Reboot runs a reboot command (RestartCommand); nil runs it with
	// os/exec.
	Reboot func(argv []string) error
	// Booted reports the partition this boot came from and whether the
	// tryboot flag was set; nil reads DefaultBootloaderDT
	// (ReadBootloaderDT).
	Booted func() (partition int, tryboot bool, err error)
	// BootID names this boot of Linux, so that a tryboot reboot asked for
	// is told from one that happened; nil reads
	// /proc/sys/kernel/random/boot_id.
	BootID func() (string, error)
	// Clock stamps the boot state; nil is the wall clock.
	Clock func() time.Time

	fs  fileSystem   // nil is the OS; tests inject faults
	dev blockDevices // nil is the OS; tests inject bad writes
}

var _ Installer = (*TrybootSlots)(nil)

// TrybootDecision is what Detect found at this start.
type TrybootDecision struct {
	// Partition is the partition this boot came from; Tryboot says
	// whether the firmware's tryboot flag was set for it.
	Partition int
	Tryboot   bool
	// Trial says this boot runs the release on trial: it must pass its
	// health check and call CommitTrial, or FailTrial. Slot, Version and
	// Job name it.
	Trial   bool
	Slot    string
	Version Version
	Job     string
	// Reboot, when not nil, is the reboot that gets the kiosk where the
	// state says it should be: the tryboot reboot into a trial that
	// waits for it, or a normal reboot out of a partition that is not
	// the committed one. Restart runs it.
	Reboot []string
	// Reason says what was found and done, for the log.
	Reason string
}

// trybootState is tryboot.json: Boot (format 1, the same meanings as
// boot.json) and the tryboot reboot asked for the trial. Trial.Boots
// counts the starts of kioskd in the trial boot, Trial.Booted the last;
// Trial.Path is the trial's device.
type trybootState struct {
	Boot
	Request *trybootRequest `json:"tryboot_request,omitempty"`
}

// trybootRequest is a tryboot reboot asked for job's trial, persisted
// before it is asked for.
type trybootRequest struct {
	Job    string    `json:"job"`
	BootID string    `json:"boot_id"` // the boot that asked
	At     time.Time `json:"at"`
}

// trybootView is the state, autoboot.txt and what booted, read together
// under stateMu.
type trybootView struct {
	st     trybootState
	ab     autoboot
	normal int // the partition a normal boot boots
	try    int // the partition a tryboot boot boots
	// booted and flag are this boot's partition and tryboot flag, when
	// read (haveBoot).
	haveBoot bool
	booted   int
	flag     bool
	bootID   string
}

// Boot reads the boot state as it was last written; Detect brings it in
// line with what booted. No state is the zero Boot: the image the kiosk
// was provisioned with, in the partition autoboot.txt names, and no trial.
func (s *TrybootSlots) Boot() (Boot, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	st, err := s.readState()
	return st.Boot, err
}

// TrialStatus reports the trial, if there is one: its job, release, since
// when, how many starts in its boot, and Path, its device. Whether this
// boot runs it Detect says.
func (s *TrybootSlots) TrialStatus() (Trial, bool, error) {
	b, err := s.Boot()
	if err != nil || b.Trial == nil {
		return Trial{}, false, err
	}
	return *b.Trial, true, nil
}

// Inactive names the slot Install writes into: the one autoboot.txt does
// not boot. While a trial is armed or running, or while the kiosk runs a
// partition that is not the committed one, it is ErrBusy: Install never
// writes the running partition.
func (s *TrybootSlots) Inactive() (string, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	v, err := s.load(true)
	if err != nil {
		return "", err
	}
	if _, err := s.settle(v); err != nil {
		return "", err
	}
	return s.inactive(v)
}

func (s *TrybootSlots) inactive(v *trybootView) (string, error) {
	if t := v.st.Trial; t != nil {
		return "", fmt.Errorf("%w: job %s is on trial in slot %s (partition %d)", ErrBusy, t.Job, t.Slot, s.partition(t.Slot).Number)
	}
	if v.booted != v.normal {
		return "", fmt.Errorf("%w: running partition %d, but autoboot.txt boots partition %d: reboot first", ErrBusy, v.booted, v.normal)
	}
	return s.other(s.slotOf(v.normal)), nil
}

// Install writes the verified image of m to the inactive slot's device
// and checks it there, without switching anything. Before the first byte
// is written autoboot.txt's [tryboot] is pointed at the committed
// partition and the slot's record of what it holds is removed. The image
// is copied while its size and sha256 are checked against m (ErrCorrupt
// if the artifact is not m's), the device fsynced, and the m.Size bytes
// read back and checked again (ErrSlotCorrupt for a bad write); then the
// record tryboot-<slot>.json is written.
//
// It is idempotent: a slot whose record says it holds m, and whose
// device still does, is left as it is, and an Install a power cut
// interrupted is simply run again.
func (s *TrybootSlots) Install(ctx context.Context, artifact string, m Manifest) error {
	if m.Kind != KindImage {
		return fmt.Errorf("ota: tryboot slots install kind %q, not %q", KindImage, m.Kind)
	}
	if _, err := checkSHA256("sha256", m.SHA256); err != nil || m.Size <= 0 {
		return fmt.Errorf("ota: install %s: manifest without sha256 and size", m.Version)
	}
	slot, err := s.prepareInstall()
	if err != nil {
		return err
	}
	p := s.partition(slot)
	if s.holds(slot, m) {
		return nil
	}
	fsys := s.fsys()
	if err := makeDirs(fsys, s.StateDir, filepath.Dir(s.StateDir)); err != nil {
		return err
	}
	meta := s.metaPath(slot)
	if err := fsys.Remove(meta); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ota: %w", err)
	} else if err == nil {
		if err := fsys.SyncDir(s.StateDir); err != nil {
			return fmt.Errorf("ota: %w", err)
		}
	}
	if err := s.writeDevice(ctx, artifact, p.Device, m); err != nil {
		return err
	}
	if err := verifyDevice(s.devs(), p.Device, m.Size, m.SHA256); err != nil {
		return fmt.Errorf("ota: install %s into slot %s (%s): bad copy: %w", m.Version, slot, p.Device, err)
	}
	raw, _ := json.Marshal(slotMetaFile{Format: stateFormat, Version: m.Version, SHA256: m.SHA256, Size: m.Size})
	return writeAtomic(fsys, meta, raw)
}

// prepareInstall picks the inactive slot and disarms tryboot, so nothing
// boots the slot while it is written.
func (s *TrybootSlots) prepareInstall() (string, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	v, err := s.load(true)
	if err != nil {
		return "", err
	}
	if _, err := s.settle(v); err != nil {
		return "", err
	}
	slot, err := s.inactive(v)
	if err != nil {
		return "", err
	}
	return slot, s.ensureAutoboot(v, v.normal, v.normal)
}

// holds reports whether slot's record says it holds m and its device
// still does.
func (s *TrybootSlots) holds(slot string, m Manifest) bool {
	raw, err := readSmall(s.fsys(), s.metaPath(slot))
	if err != nil {
		return false
	}
	var meta slotMetaFile
	if json.Unmarshal(raw, &meta) != nil || meta.SHA256 != m.SHA256 || meta.Size != m.Size {
		return false
	}
	return verifyDevice(s.devs(), s.partition(slot).Device, m.Size, m.SHA256) == nil
}

// writeDevice copies artifact to the start of device, checking it is m's
// artifact, and fsyncs the device.
func (s *TrybootSlots) writeDevice(ctx context.Context, artifact, device string, m Manifest) (err error) {
	src, err := s.fsys().Open(artifact)
	if err != nil {
		return fmt.Errorf("ota: install %s: %w", m.Version, err)
	}
	defer src.Close()
	out, capacity, err := s.devs().OpenWrite(device)
	if err != nil {
		return fmt.Errorf("ota: install %s: %w", m.Version, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("ota: %w", cerr)
		}
	}()
	if capacity < m.Size {
		return fmt.Errorf("ota: install %s: %w: %s holds %d bytes, the image has %d", m.Version, ErrSlotCorrupt, device, capacity, m.Size)
	}
	if err := copyVerified(ctx, src, out, m, device); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("ota: install %s: %s: %w", m.Version, device, err)
	}
	return nil
}

// Switch makes the image of m, installed in the inactive slot, the trial
// of job: its device is checked against m (ErrSlotCorrupt), the trial is
// persisted, then autoboot.txt's [tryboot] is pointed at its partition.
// The next boot runs it only if it is a tryboot boot: Restart. A Switch
// already made for job is not made again (the arm is checked).
func (s *TrybootSlots) Switch(job string, m Manifest) error {
	if m.Kind != KindImage {
		return fmt.Errorf("ota: tryboot slots switch to kind %q, not %q", KindImage, m.Kind)
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	v, err := s.load(true)
	if err != nil {
		return err
	}
	if _, err := s.settle(v); err != nil {
		return err
	}
	switch st, _ := v.st.JobState(job); st {
	case StateCommitted:
		return nil
	case StateTrial:
		if v.booted == s.partition(v.st.Trial.Slot).Number {
			return nil // running it already
		}
		return s.ensureAutoboot(v, v.normal, s.partition(v.st.Trial.Slot).Number)
	}
	slot, err := s.inactive(v)
	if err != nil {
		return err
	}
	p := s.partition(slot)
	if err := verifyDevice(s.devs(), p.Device, m.Size, m.SHA256); err != nil {
		return fmt.Errorf("ota: switch to %s in slot %s (%s): %w", m.Version, slot, p.Device, err)
	}
	v.st.Trial = &Trial{
		Release: Release{Slot: slot, Version: m.Version, SHA256: m.SHA256, Size: m.Size, Job: job},
		Since:   s.now(),
	}
	v.st.Request = nil
	if err := s.writeState(v.st); err != nil {
		return err
	}
	return s.ensureAutoboot(v, v.normal, p.Number)
}

// RestartCommand is the restart the kiosk needs now, after the state is
// settled as Detect settles it (without counting a start): the tryboot
// reboot while a trial waits for its boot, a normal reboot while a
// partition other than the committed one runs, or nil when restarting
// kioskd is enough.
func (s *TrybootSlots) RestartCommand() ([]string, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	v, err := s.load(true)
	if err != nil {
		return nil, err
	}
	if _, err := s.settle(v); err != nil {
		return nil, err
	}
	return s.restartCommand(v), nil
}

func (s *TrybootSlots) restartCommand(v *trybootView) []string {
	if t := v.st.Trial; t != nil {
		if v.booted == s.partition(t.Slot).Number {
			return nil
		}
		return append([]string(nil), trybootReboot...)
	}
	if v.booted != v.normal {
		return append([]string(nil), normalReboot...)
	}
	return nil
}

// Restart is the restart after Switch or FailTrial: it runs
// RestartCommand through Reboot, and does nothing when no reboot is due.
// Before a tryboot reboot it checks that autoboot.txt is armed and
// persists that this boot asked for it, so the next Detect can tell a
// trial boot that did not come up from one not tried yet. An error from
// Reboot leaves the trial waiting: Restart may be called again.
func (s *TrybootSlots) Restart() error {
	argv, err := s.prepareRestart()
	if err != nil || argv == nil {
		return err
	}
	run := s.Reboot
	if run == nil {
		run = runReboot
	}
	return run(argv)
}

func (s *TrybootSlots) prepareRestart() ([]string, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	v, err := s.load(true)
	if err != nil {
		return nil, err
	}
	if _, err := s.settle(v); err != nil {
		return nil, err
	}
	argv := s.restartCommand(v)
	if t := v.st.Trial; t != nil && argv != nil {
		if err := s.ensureAutoboot(v, v.normal, s.partition(t.Slot).Number); err != nil {
			return nil, err
		}
		v.st.Request = &trybootRequest{Job: t.Job, BootID: v.bootID, At: s.now()}
		if err := s.writeState(v.st); err != nil {
			return nil, err
		}
	}
	return argv, nil
}

// Detect is the step at every start of kioskd, before the Updater
// resumes: it reads which partition booted and settles the state with it
// (see TrybootSlots). In the trial's boot it counts the start, persisted,
// and says Trial; past MaxTrialBoots starts the trial is failed and a
// normal reboot is due. An unreadable tryboot.json is moved aside; the
// kiosk then runs what autoboot.txt commits.
func (s *TrybootSlots) Detect() (TrybootDecision, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	var errs []error
	var notes []string
	v, err := s.load(true)
	if errors.Is(err, ErrBadState) {
		errs = append(errs, err, moveAside(s.fsys(), filepath.Join(s.StateDir, trybootStateFile)))
		notes = append(notes, fmt.Sprintf("%v: moved aside", err))
		v, err = s.load(true)
	}
	if err != nil {
		return TrybootDecision{Reason: strings.Join(append(notes, err.Error()), "; ")}, errors.Join(append(errs, err)...)
	}
	settled, err := s.settle(v)
	notes = append(notes, settled...)
	if err != nil {
		return TrybootDecision{Partition: v.booted, Tryboot: v.flag, Reason: strings.Join(notes, "; ")}, errors.Join(append(errs, err)...)
	}
	d := TrybootDecision{Partition: v.booted, Tryboot: v.flag}
	switch t := v.st.Trial; {
	case t != nil && v.booted == s.partition(t.Slot).Number:
		if t.Boots >= s.maxTrialBoots() {
			reason := fmt.Sprintf("crashed %d %s in trial", t.Boots, plural(t.Boots, "time", "times"))
			if err := s.rollbackLocked(v, t.Job, reason); err != nil {
				errs = append(errs, err)
			}
			notes = append(notes, fmt.Sprintf("trial of %s (job %s) rolled back: %s", t.Version, t.Job, reason))
			break
		}
		t.Boots++
		t.Booted = s.now()
		if err := s.writeState(v.st); err != nil {
			// A start that cannot be counted could crash forever
			// uncounted: fail the trial instead.
			errs = append(errs, err)
			reason := "its starts cannot be counted: " + err.Error()
			errs = append(errs, s.rollbackLocked(v, t.Job, reason))
			notes = append(notes, fmt.Sprintf("trial of %s (job %s) rolled back: %s", t.Version, t.Job, reason))
			break
		}
		d.Trial, d.Slot, d.Version, d.Job = true, t.Slot, t.Version, t.Job
		notes = append(notes, fmt.Sprintf("trial of %s (job %s) on partition %d, start %d of %d",
			t.Version, t.Job, v.booted, t.Boots, s.maxTrialBoots()))
	case t != nil:
		if err := s.ensureAutoboot(v, v.normal, s.partition(t.Slot).Number); err != nil {
			errs = append(errs, err)
		}
		notes = append(notes, fmt.Sprintf("trial of %s (job %s) armed on partition %d: waiting for the tryboot reboot",
			t.Version, t.Job, s.partition(t.Slot).Number))
	case v.booted != v.normal:
	default:
		c := v.st.Committed
		what := "the provisioned image"
		if !c.Packaged() {
			what = c.Version.String()
		}
		notes = append(notes, fmt.Sprintf("running %s from partition %d", what, v.booted))
	}
	if d.Reboot = s.restartCommand(v); d.Reboot != nil && v.st.Trial == nil {
		notes = append(notes, fmt.Sprintf("running partition %d, but partition %d is committed: reboot to go back to it", v.booted, v.normal))
	}
	d.Reason = strings.Join(notes, "; ")
	return d, errors.Join(errs...)
}

// Commit makes job's trial the committed release. It must run inside the
// trial's boot (ErrNotBooted otherwise): autoboot.txt is rewritten to
// boot the trial's partition normally, then the state records it, the
// release it replaces becoming the previous one. Committing a committed
// job does nothing; with no trial of job it is ErrNoTrial.
func (s *TrybootSlots) Commit(job, reason string) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	v, err := s.load(true)
	if err != nil {
		return err
	}
	if _, err := s.settle(v); err != nil {
		return err
	}
	return s.commitLocked(v, job, reason)
}

func (s *TrybootSlots) commitLocked(v *trybootView, job, reason string) error {
	switch st, _ := v.st.JobState(job); st {
	case StateCommitted:
		return nil
	case StateTrial:
	default:
		return fmt.Errorf("%w: job %q", ErrNoTrial, job)
	}
	t := v.st.Trial
	tp := s.partition(t.Slot).Number
	if v.booted != tp {
		return fmt.Errorf("%w: job %s is in partition %d, partition %d runs", ErrNotBooted, job, tp, v.booted)
	}
	if err := s.ensureAutoboot(v, tp, tp); err != nil {
		return err
	}
	return s.recordCommit(v, job, reason)
}

// recordCommit writes the commit of v's trial, which autoboot.txt
// already boots, into the state.
func (s *TrybootSlots) recordCommit(v *trybootView, job, reason string) error {
	b := &v.st.Boot
	if !b.Committed.Packaged() {
		prev := b.Committed
		b.Previous = &prev
	} else {
		b.Previous = nil
	}
	b.Committed = b.Trial.Release
	b.Trial = nil
	b.Last = &Outcome{Job: job, State: StateCommitted, Reason: reason, At: s.now()}
	v.st.Request = nil
	return s.writeState(v.st)
}

// Rollback ends job's trial: the state records it, then autoboot.txt's
// [tryboot] is pointed back at the committed partition. The committed
// partition boots again from the next normal boot; inside the trial's
// boot that takes a reboot (RestartCommand). Without a trial of job it
// does nothing.
func (s *TrybootSlots) Rollback(job, reason string) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	v, err := s.load(false)
	if err != nil {
		return err
	}
	if _, err := s.settle(v); err != nil {
		return err
	}
	if st, _ := v.st.JobState(job); st != StateTrial {
		return nil
	}
	return s.rollbackLocked(v, job, reason)
}

// rollbackLocked ends v's trial of job with reason, then settles
// job.json in StateDir.
func (s *TrybootSlots) rollbackLocked(v *trybootView, job, reason string) error {
	v.st.Trial = nil
	v.st.Request = nil
	v.st.Last = &Outcome{Job: job, State: StateRolledBack, Reason: reason, At: s.now()}
	if err := s.writeState(v.st); err != nil {
		return err
	}
	return errors.Join(s.ensureAutoboot(v, v.normal, v.normal), settleJob(s.fsys(), s.StateDir, v.st.Boot, "", s.now()))
}

// CommitTrial is called in the trial's boot once its health check passed:
// Commit of the trial's job, and job.json in StateDir settled. Without a
// trial it is ErrNoTrial.
func (s *TrybootSlots) CommitTrial(reason string) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	v, err := s.load(true)
	if err != nil {
		return err
	}
	if _, err := s.settle(v); err != nil {
		return err
	}
	if v.st.Trial == nil {
		return ErrNoTrial
	}
	if err := s.commitLocked(v, v.st.Trial.Job, reason); err != nil {
		return err
	}
	return settleJob(s.fsys(), s.StateDir, v.st.Boot, "", s.now())
}

// FailTrial is called when the trial's health check failed: Rollback of
// the trial's job with reason, and job.json settled. The caller then
// calls Restart, a normal reboot back to the committed partition.
// Without a trial it is ErrNoTrial.
func (s *TrybootSlots) FailTrial(reason string) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	v, err := s.load(false)
	if err != nil {
		return err
	}
	if _, err := s.settle(v); err != nil {
		return err
	}
	if v.st.Trial == nil {
		return ErrNoTrial
	}
	return s.rollbackLocked(v, v.st.Trial.Job, reason)
}

// settle brings the state in line with autoboot.txt and, when v knows
// it, with what booted, and returns what it did. stateMu is held.
//
//   - A trial in the partition autoboot.txt boots normally was being
//     committed when the power went: the commit is recorded.
//   - A committed release in another partition than autoboot.txt boots
//     means autoboot.txt was changed by hand: the state follows it (the
//     previous release if it is there, else an unknown image), and a
//     trial is rolled back.
//   - A trial whose tryboot reboot was asked for in an earlier boot,
//     when this boot is not in its partition, did not come up: it is
//     rolled back.
func (s *TrybootSlots) settle(v *trybootView) ([]string, error) {
	var notes []string
	b := &v.st.Boot
	if t := b.Trial; t != nil && s.partition(t.Slot).Number == v.normal {
		if err := s.recordCommit(v, t.Job, "committed: autoboot.txt boots it (the commit was cut short and is finished)"); err != nil {
			return notes, err
		}
		notes = append(notes, fmt.Sprintf("trial of %s (job %s): commit finished", t.Version, t.Job))
		if err := settleJob(s.fsys(), s.StateDir, v.st.Boot, "", s.now()); err != nil {
			return notes, err
		}
	}
	if c := b.Committed; !c.Packaged() && s.partition(c.Slot).Number != v.normal {
		why := fmt.Sprintf("autoboot.txt boots partition %d, not %s's partition %d: changed outside kioskd",
			v.normal, c.Version, s.partition(c.Slot).Number)
		if p := b.Previous; p != nil && !p.Packaged() && s.partition(p.Slot).Number == v.normal {
			b.Committed = *p
		} else {
			b.Committed = Release{}
		}
		b.Previous = nil
		if t := b.Trial; t != nil {
			if err := s.rollbackLocked(v, t.Job, why); err != nil {
				return notes, err
			}
		} else if err := s.writeState(v.st); err != nil {
			return notes, err
		}
		notes = append(notes, why)
	}
	t := b.Trial
	if t == nil || !v.haveBoot {
		return notes, nil
	}
	tp := s.partition(t.Slot).Number
	r := v.st.Request
	if v.booted == tp || r == nil || (r.BootID != "" && v.bootID != "" && r.BootID == v.bootID) {
		return notes, nil // running it, or its tryboot reboot is still to come
	}
	why := fmt.Sprintf("the tryboot boot of partition %d did not come up (crash, hang or power cut): partition %d booted", tp, v.booted)
	if v.flag {
		why = fmt.Sprintf("the tryboot reboot booted partition %d, not the trial's partition %d", v.booted, tp)
	}
	notes = append(notes, fmt.Sprintf("trial of %s (job %s) rolled back: %s", t.Version, t.Job, why))
	return notes, s.rollbackLocked(v, t.Job, why)
}

// load reads the state and autoboot.txt and, with boot, which partition
// booted. stateMu is held.
func (s *TrybootSlots) load(boot bool) (*trybootView, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	st, err := s.readState()
	if err != nil {
		return nil, err
	}
	v := &trybootView{st: st}
	raw, err := readSmall(s.fsys(), filepath.Join(s.BootDir, autobootFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing: provision it with [all] tryboot_a_b=1, boot_partition=%d",
			ErrAutoboot, filepath.Join(s.BootDir, autobootFile), s.A.Number)
	}
	if err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	if v.ab, err = parseAutoboot(raw); err != nil {
		return nil, err
	}
	v.normal, v.try = v.ab.partition(false), v.ab.partition(true)
	if s.slotOf(v.normal) == "" {
		return nil, fmt.Errorf("%w: it boots partition %d, neither slot a (%d) nor b (%d)", ErrAutoboot, v.normal, s.A.Number, s.B.Number)
	}
	if !boot {
		return v, nil
	}
	read := s.Booted
	if read == nil {
		read = func() (int, bool, error) { return ReadBootloaderDT(DefaultBootloaderDT) }
	}
	if v.booted, v.flag, err = read(); err != nil {
		return nil, fmt.Errorf("ota: which partition booted: %w", err)
	}
	switch {
	case v.booted == 0:
		return nil, errors.New("ota: the bootloader reports partition 0, so which slot runs is unknown: update the bootloader EEPROM")
	case s.slotOf(v.booted) == "":
		return nil, fmt.Errorf("ota: booted from partition %d, neither slot a (%d) nor b (%d)", v.booted, s.A.Number, s.B.Number)
	}
	v.haveBoot = true
	id := s.BootID
	if id == nil {
		id = readBootID
	}
	v.bootID, _ = id() // unknown: every boot counts as another
	return v, nil
}

// ensureAutoboot rewrites autoboot.txt, atomically, unless it already
// boots normal normally and try in a tryboot boot, with tryboot_a_b=1.
func (s *TrybootSlots) ensureAutoboot(v *trybootView, normal, try int) error {
	if v.normal == normal && v.try == try && v.ab.value("tryboot_a_b", true) == 1 {
		return nil
	}
	raw := renderAutoboot(normal, try)
	ab, err := parseAutoboot(raw)
	if err != nil {
		return err
	}
	if err := writeAtomic(s.fsys(), filepath.Join(s.BootDir, autobootFile), raw); err != nil {
		return err
	}
	v.ab, v.normal, v.try = ab, normal, try
	return nil
}

// readState reads tryboot.json; none is the zero state.
func (s *TrybootSlots) readState() (trybootState, error) {
	raw, err := readSmall(s.fsys(), filepath.Join(s.StateDir, trybootStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return trybootState{Boot: Boot{Format: stateFormat}}, nil
	}
	if err != nil {
		return trybootState{}, fmt.Errorf("ota: %w", err)
	}
	var st trybootState
	if err := json.Unmarshal(raw, &st); err != nil {
		return trybootState{}, fmt.Errorf("%w: %s: %s", ErrBadState, trybootStateFile, jsonError(err))
	}
	if err := st.Boot.check(); err != nil {
		return trybootState{}, fmt.Errorf("%w: %s: %s", ErrBadState, trybootStateFile, err)
	}
	if r := st.Request; r != nil && (st.Trial == nil || r.Job != st.Trial.Job) {
		st.Request = nil // a request for a trial long gone
	}
	if st.Trial != nil {
		st.Trial.Path = s.partition(st.Trial.Slot).Device
	}
	return st, nil
}

func (s *TrybootSlots) writeState(st trybootState) error {
	st.Format = stateFormat
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	if err := makeDirs(s.fsys(), s.StateDir, filepath.Dir(s.StateDir)); err != nil {
		return err
	}
	return writeAtomic(s.fsys(), filepath.Join(s.StateDir, trybootStateFile), raw)
}

// check refuses a configuration that could make Install write the wrong
// device or autoboot.txt name the wrong partition.
func (s *TrybootSlots) check() error {
	switch {
	case s.BootDir == "" || s.StateDir == "":
		return errors.New("ota: tryboot slots need BootDir and StateDir")
	case s.A.Number < 1 || s.A.Number > maxBootPartition || s.B.Number < 1 || s.B.Number > maxBootPartition:
		return fmt.Errorf("ota: tryboot partitions %d and %d: want 1 to %d", s.A.Number, s.B.Number, maxBootPartition)
	case s.A.Number == s.B.Number:
		return fmt.Errorf("ota: tryboot slots a and b are both partition %d", s.A.Number)
	case s.A.Device == "" || s.B.Device == "" || filepath.Clean(s.A.Device) == filepath.Clean(s.B.Device):
		return fmt.Errorf("ota: tryboot devices %q and %q: want two devices", s.A.Device, s.B.Device)
	}
	return nil
}

func (s *TrybootSlots) partition(slot string) TrybootPartition {
	if slot == SlotB {
		return s.B
	}
	return s.A
}

// slotOf names the slot of partition n, or "".
func (s *TrybootSlots) slotOf(n int) string {
	switch n {
	case s.A.Number:
		return SlotA
	case s.B.Number:
		return SlotB
	}
	return ""
}

func (s *TrybootSlots) other(slot string) string {
	if slot == SlotA {
		return SlotB
	}
	return SlotA
}

func (s *TrybootSlots) metaPath(slot string) string {
	return filepath.Join(s.StateDir, fmt.Sprintf(trybootMetaFmt, slot))
}

func (s *TrybootSlots) maxTrialBoots() int {
	if s.MaxTrialBoots > 0 {
		return s.MaxTrialBoots
	}
	return DefaultMaxTrialBoots
}

func (s *TrybootSlots) fsys() fileSystem { return orOS(s.fs) }

func (s *TrybootSlots) devs() blockDevices {
	if s.dev == nil {
		return osDevices{}
	}
	return s.dev
}

func (s *TrybootSlots) now() time.Time { return utcNow(s.Clock) }

// ReadBootloaderDT reads the bootloader's partition and tryboot
// properties from dir (DefaultBootloaderDT on a Pi): 32-bit big-endian
// integers. A bootloader without the tryboot property never sets the
// flag.
func ReadBootloaderDT(dir string) (partition int, tryboot bool, err error) {
	p, err := readDTCell(filepath.Join(dir, "partition"))
	if err != nil {
		return 0, false, err
	}
	t, err := readDTCell(filepath.Join(dir, "tryboot"))
	if errors.Is(err, fs.ErrNotExist) {
		t, err = 0, nil
	}
	if err != nil {
		return 0, false, err
	}
	return int(p), t != 0, nil
}

func readDTCell(path string) (uint32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	if len(b) != 4 {
		return 0, fmt.Errorf("%s: %d bytes, want a 32-bit cell", path, len(b))
	}
	return binary.BigEndian.Uint32(b), nil
}

func readBootID() (string, error) {
	b, err := os.ReadFile(defaultBootIDFile)
	return string(bytes.TrimSpace(b)), err
}

// runReboot runs argv, the default Reboot.
func runReboot(argv []string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ota: %s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// autoboot is a parsed autoboot.txt: its settings in order, each with
// the filter section it is under.
type autoboot struct {
	entries []autobootEntry
}

type autobootEntry struct {
	section string // "all" or "tryboot"; [none] is dropped
	key     string
	value   int
}

// parseAutoboot reads autoboot.txt as the bootloader does: key=value
// lines under the [all] (the default), [none] and [tryboot] filters,
// # comments. Other filters and keys than boot_partition and tryboot_a_b
// are ErrAutoboot: kioskd rewrites the file and would drop them.
func parseAutoboot(raw []byte) (autoboot, error) {
	if len(raw) > maxAutobootSize {
		return autoboot{}, fmt.Errorf("%w: %d bytes; the bootloader reads %d", ErrAutoboot, len(raw), maxAutobootSize)
	}
	var a autoboot
	section := "all"
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			f, ok := strings.CutSuffix(line[1:], "]")
			switch f = strings.ToLower(strings.TrimSpace(f)); {
			case !ok:
				return autoboot{}, fmt.Errorf("%w: line %d: %.40q", ErrAutoboot, i+1, line)
			case f == "all" || f == "none" || f == "tryboot":
				section = f
			default:
				return autoboot{}, fmt.Errorf("%w: line %d: filter [%.20s]; want [all], [none] or [tryboot]", ErrAutoboot, i+1, f)
			}
			continue
		}
		// key=value exactly: whether the bootloader allows blanks
		// around = is not documented, and a line it reads differently
		// could boot another partition than kioskd thinks.
		k, val, ok := strings.Cut(line, "=")
		if !ok || (k != "boot_partition" && k != "tryboot_a_b") {
			return autoboot{}, fmt.Errorf("%w: line %d: %.40q; want boot_partition= or tryboot_a_b=", ErrAutoboot, i+1, line)
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return autoboot{}, fmt.Errorf("%w: line %d: %s=%.20q", ErrAutoboot, i+1, k, val)
		}
		if section != "none" {
			a.entries = append(a.entries, autobootEntry{section: section, key: k, value: n})
		}
	}
	return a, nil
}

// value is key's setting in a normal or a tryboot boot: the last one
// that applies; 0 when none does.
func (a autoboot) value(key string, tryboot bool) int {
	v := 0
	for _, e := range a.entries {
		if e.key == key && (e.section == "all" || tryboot) {
			v = e.value
		}
	}
	return v
}

// partition is the partition a normal or a tryboot boot boots.
func (a autoboot) partition(tryboot bool) int { return a.value("boot_partition", tryboot) }

// renderAutoboot is the only autoboot.txt kioskd writes.
func renderAutoboot(normal, try int) []byte {
	return fmt.Appendf(nil, "[all]\ntryboot_a_b=1\nboot_partition=%d\n[tryboot]\nboot_partition=%d\n", normal, try)
}

// verifyDevice checks that the first size bytes of device hash to sum;
// the error wraps ErrSlotCorrupt and says what is wrong.
func verifyDevice(devs blockDevices, device string, size int64, sum string) error {
	f, err := devs.Open(device)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSlotCorrupt, device, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyN(h, f, size)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: reading %s: %w", ErrSlotCorrupt, device, err)
	}
	if n != size {
		return fmt.Errorf("%w: %s has %d bytes, want %d", ErrSlotCorrupt, device, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("%w: %s has sha256 %s over %d bytes, want %s", ErrSlotCorrupt, device, got[:16], size, sum[:16])
	}
	return nil
}

// blockDevices is how TrybootSlots reaches the slots' devices; tests
// inject bad writes through it.
type blockDevices interface {
	// OpenWrite opens an existing device for writing from its first
	// byte, without creating or truncating it, and returns its size.
	OpenWrite(name string) (deviceWriter, int64, error)
	Open(name string) (io.ReadCloser, error)
}

type deviceWriter interface {
	io.Writer
	Sync() error
	Close() error
}

// osDevices is blockDevices on the real devices (or plain files).
type osDevices struct{}

func (osDevices) OpenWrite(name string) (deviceWriter, int64, error) {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

func (osDevices) Open(name string) (io.ReadCloser, error) { return os.Open(name) }
