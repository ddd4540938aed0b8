package ota

import (
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
	"sync"
	"time"

	"github.com/microretail/kioskd/internal/atomicfile"
)

// Errors of the slots and the boot state; test them with errors.Is.
var (
	// ErrSlotCorrupt says a slot's binary is missing or does not match the
	// release it should hold (size or sha256): a bad copy, a failing SD
	// card, tampering. Such a binary is never switched to or run.
	ErrSlotCorrupt = errors.New("ota: slot binary does not match its release")
	// ErrBusy says a job or a trial is already under way; finish it
	// (commit or roll back) before starting another.
	ErrBusy = errors.New("ota: an update is already under way")
	// ErrNoTrial says there is no trial to commit or fail.
	ErrNoTrial = errors.New("ota: no trial is running")
	// ErrBadState says boot.json or job.json cannot be read as what this
	// package writes: a disk fault, or a format from a future kioskd.
	ErrBadState = errors.New("ota: unreadable OTA state")
)

// The two slots of BinarySlots.
const (
	SlotA = "a"
	SlotB = "b"
)

// Names under BinarySlots.Dir.
const (
	bootFile    = "boot.json"
	jobFile     = "job.json"
	slotsDir    = "slots"
	slotBinary  = "kioskd"
	slotMeta    = "meta.json"
	tmpSuffix   = ".tmp"     // a write in progress; a power cut may leave one
	badSuffix   = ".corrupt" // an unreadable state file, moved aside
	stateFormat = 1
	// maxStateSize bounds what is read of boot.json, job.json and meta.json.
	maxStateSize = 1 << 20
	copyChunk    = 1 << 20
)

// stateMu serialises the read-modify-write of boot.json and job.json
// within a process: the launcher, the Updater and the trial's health
// check may share one. One process owns Dir at a time (systemd runs one
// kioskd).
var stateMu sync.Mutex

// BinarySlots is the Installer for the kioskd binary itself: two slots
// under Dir (<data>/ota) and a boot pointer that says which one runs.
// /usr/bin is read-only to kioskd, so the packaged /usr/bin/kioskd stays
// as it is and acts as the launcher: at start it calls Decide and execs
// the binary of the slot that should run (see launch.go).
//
// Files under Dir:
//
//	slots/a/kioskd       a kioskd binary, mode 0755
//	slots/a/meta.json    what Install put there, JSON format 1:
//	                     {"format":1,"version":"1.4.0","sha256":"<64 hex>","size":N}
//	slots/b/…            the same for slot b
//	boot.json            the boot pointer (Boot): the committed release,
//	                     the one before it, the trial and its boot
//	                     counter, the last job outcome
//	job.json             the update job (Job), written by the Updater
//	*.tmp                a write in progress, or one a power cut cut
//	                     short: ignored, overwritten by the next write
//	*.corrupt            an unreadable state file, moved aside
//
// Every file is written the same way: NAME.tmp is written, fsynced and
// renamed over NAME, then the directory is fsynced, so a power cut leaves
// the old file or the new one.
//
// The switch is the one rename of boot.json.tmp over boot.json that adds
// the trial, plus the fsync of Dir. boot.json is a JSON pointer rather
// than a symlink because what must change in that one step is more than
// a target: the trial's slot, the sha256 its binary must have, its boot
// counter and which release to go back to. Committing, rolling back and
// counting a trial boot are each one such rename too.
//
// A slot binary is trusted only while it hashes to the sha256 boot.json
// records for it: Switch and Decide check it, so a slot that Install is
// overwriting, or that the card corrupted, is never run.
type BinarySlots struct {
	Dir string
	// MaxTrialBoots is how many times a trial may start without a commit
	// before Decide rolls it back; 0 is DefaultMaxTrialBoots.
	MaxTrialBoots int
	// Clock stamps the boot state; nil is the wall clock.
	Clock func() time.Time

	fs fileSystem // nil is the OS; tests inject faults
}

var _ Installer = (*BinarySlots)(nil)

// Release is one kioskd build in a slot, as boot.json records it. The
// zero Release (Slot "") is the packaged /usr/bin/kioskd.
type Release struct {
	Slot    string  `json:"slot,omitempty"`
	Version Version `json:"version,omitzero"`
	SHA256  string  `json:"sha256,omitempty"`
	Size    int64   `json:"size,omitempty"`
	// Job is the update job that installed it.
	Job string `json:"job,omitempty"`
}

// Packaged reports whether r is the packaged binary, not a slot.
func (r Release) Packaged() bool { return r.Slot == "" }

// Trial is a release on trial: switched to, not yet committed.
type Trial struct {
	Release
	// Since is when Switch made it the trial.
	Since time.Time `json:"since"`
	// Boots counts the starts Decide made of it, counted before each
	// exec; a commit ends the count.
	Boots int `json:"boots"`
	// Booted is when Decide last started it.
	Booted time.Time `json:"booted,omitzero"`
	// Path is the binary to run; filled in on reading, not stored.
	Path string `json:"-"`
}

// Outcome is how a job's trial ended.
type Outcome struct {
	Job    string    `json:"job"`
	State  State     `json:"state"` // StateCommitted or StateRolledBack
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Boot is boot.json, the boot pointer. Layout, JSON, format 1:
//
//	format     1. A launcher is the packaged kioskd, often older than
//	           the slots' builds, so later builds may add fields but must
//	           keep these meanings and this format number
//	committed  the Release that runs when no trial does; absent or
//	           {} is the packaged binary
//	previous   the Release committed before it, the fallback if its
//	           binary goes bad; absent is the packaged binary
//	trial      the Release on trial, with since, boots and booted;
//	           absent when none
//	last       the Outcome of the latest trial
type Boot struct {
	Format    int      `json:"format"`
	Committed Release  `json:"committed"`
	Previous  *Release `json:"previous,omitempty"`
	Trial     *Trial   `json:"trial,omitempty"`
	Last      *Outcome `json:"last,omitempty"`
}

// JobState says where job id stands in the boot state: StateTrial,
// StateCommitted or StateRolledBack with the reason, or "" when the boot
// state does not know it (not switched yet, or long forgotten).
func (b Boot) JobState(id string) (State, string) {
	switch {
	case id == "":
		return "", ""
	case b.Trial != nil && b.Trial.Job == id:
		return StateTrial, ""
	case b.Last != nil && b.Last.Job == id:
		return b.Last.State, b.Last.Reason
	case b.Committed.Job == id:
		return StateCommitted, ""
	}
	return "", ""
}

// slotMetaFile is slots/<slot>/meta.json.
type slotMetaFile struct {
	Format  int     `json:"format"`
	Version Version `json:"version"`
	SHA256  string  `json:"sha256"`
	Size    int64   `json:"size"`
}

// Current returns the committed slot and its version: what runs when no
// trial does. Slot "" is the packaged binary, whose version only it
// knows.
func (s *BinarySlots) Current() (slot string, v Version, err error) {
	b, err := s.Boot()
	if err != nil {
		return "", Version{}, err
	}
	return b.Committed.Slot, b.Committed.Version, nil
}

// Inactive returns the slot Install writes into: the one the committed
// release is not in. While a trial runs both are in use: ErrBusy.
func (s *BinarySlots) Inactive() (string, error) {
	b, err := s.Boot()
	if err != nil {
		return "", err
	}
	return inactiveSlot(b)
}

func inactiveSlot(b Boot) (string, error) {
	if b.Trial != nil {
		return "", fmt.Errorf("%w: job %s is on trial in slot %s", ErrBusy, b.Trial.Job, b.Trial.Slot)
	}
	if b.Committed.Slot == SlotA {
		return SlotB, nil
	}
	return SlotA, nil
}

// Boot reads boot.json; no file is the zero Boot: the packaged binary
// runs and no trial.
func (s *BinarySlots) Boot() (Boot, error) {
	stateMu.Lock()
	defer stateMu.Unlock()
	b, err := s.readBoot()
	if errors.Is(err, fs.ErrNotExist) {
		return Boot{Format: stateFormat}, nil
	}
	return b, err
}

// Install copies the verified artifact of m into the inactive slot and
// checks the copy, without switching anything. It is idempotent: a slot
// that already holds m is left as it is, and an Install a power cut
// interrupted is simply run again.
//
// The binary is written as kioskd.new (mode 0755) while its size and
// sha256 are checked against m (ErrCorrupt if the artifact is not m's),
// fsynced, read back and checked again (ErrSlotCorrupt for a bad copy),
// renamed to kioskd, and the slot directory fsynced; then meta.json is
// written the same way.
func (s *BinarySlots) Install(ctx context.Context, artifact string, m Manifest) error {
	if m.Kind != KindBinary && m.Kind != "" {
		return fmt.Errorf("ota: binary slots install kind %q, not %q", KindBinary, m.Kind)
	}
	if _, err := checkSHA256("sha256", m.SHA256); err != nil || m.Size <= 0 {
		return fmt.Errorf("ota: install %s: manifest without sha256 and size", m.Version)
	}
	slot, err := s.Inactive()
	if err != nil {
		return err
	}
	if s.holds(slot, m) {
		return nil
	}
	fsys := s.fsys()
	dir := s.slotDir(slot)
	if err := makeDirs(fsys, dir, filepath.Dir(s.Dir)); err != nil {
		return err
	}
	bin := filepath.Join(dir, slotBinary)
	if err := s.copyIn(ctx, artifact, bin+".new", m); err != nil {
		return err
	}
	if err := verifyFile(fsys, bin+".new", m.Size, m.SHA256); err != nil {
		return fmt.Errorf("ota: install %s into slot %s: bad copy: %w", m.Version, slot, err)
	}
	if err := fsys.Rename(bin+".new", bin); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	meta, _ := json.Marshal(slotMetaFile{Format: stateFormat, Version: m.Version, SHA256: m.SHA256, Size: m.Size})
	return writeAtomic(fsys, filepath.Join(dir, slotMeta), meta)
}

// holds reports whether slot already holds m, meta.json and binary both.
func (s *BinarySlots) holds(slot string, m Manifest) bool {
	raw, err := readSmall(s.fsys(), filepath.Join(s.slotDir(slot), slotMeta))
	if err != nil {
		return false
	}
	var meta slotMetaFile
	if json.Unmarshal(raw, &meta) != nil || meta.SHA256 != m.SHA256 || meta.Size != m.Size {
		return false
	}
	return verifyFile(s.fsys(), filepath.Join(s.slotDir(slot), slotBinary), m.Size, m.SHA256) == nil
}

// copyIn copies artifact to dst, checking it is m's artifact, and fsyncs
// dst.
func (s *BinarySlots) copyIn(ctx context.Context, artifact, dst string, m Manifest) (err error) {
	fsys := s.fsys()
	src, err := fsys.Open(artifact)
	if err != nil {
		return fmt.Errorf("ota: install %s: %w", m.Version, err)
	}
	defer src.Close()
	out, err := fsys.Create(dst, 0o755)
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("ota: %w", cerr)
		}
	}()
	if err := copyVerified(ctx, src, out, m, dst); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	return nil
}

// copyVerified copies src to out in chunks, hashing as it goes, and checks
// that what it copied is m's artifact, its size and sha256 (ErrCorrupt
// otherwise). ctx ends the copy between chunks; dst names out in errors.
// Both backends install through it: the binary slots and tryboot's
// partitions.
func copyVerified(ctx context.Context, src io.Reader, out io.Writer, m Manifest, dst string) error {
	h := sha256.New()
	buf := make([]byte, copyChunk)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, rerr := io.ReadFull(src, buf)
		if k > 0 {
			if n += int64(k); n > m.Size {
				return fmt.Errorf("ota: install %s: %w: the artifact is longer than %d bytes", m.Version, ErrCorrupt, m.Size)
			}
			h.Write(buf[:k])
			if _, err := out.Write(buf[:k]); err != nil {
				return fmt.Errorf("ota: install %s: %s: %w", m.Version, dst, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("ota: install %s: %w", m.Version, rerr)
		}
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != m.Size || sum != m.SHA256 {
		return fmt.Errorf("ota: install %s: %w: the artifact has %d bytes, sha256 %s", m.Version, ErrCorrupt, n, sum)
	}
	return nil
}

// Switch makes the release of m, installed in the inactive slot, the
// trial of job: the next Decide starts it. It first checks the slot's
// binary against m (ErrSlotCorrupt), then writes boot.json in one atomic
// rename. A Switch already made for job is not made again.
func (s *BinarySlots) Switch(job string, m Manifest) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	b, err := s.readBootOrZero()
	if err != nil {
		return err
	}
	if st, _ := b.JobState(job); st == StateTrial || st == StateCommitted {
		return nil
	}
	slot, err := inactiveSlot(b)
	if err != nil {
		return err
	}
	if err := verifyFile(s.fsys(), s.binary(slot), m.Size, m.SHA256); err != nil {
		return fmt.Errorf("ota: switch to %s in slot %s: %w", m.Version, slot, err)
	}
	b.Trial = &Trial{
		Release: Release{Slot: slot, Version: m.Version, SHA256: m.SHA256, Size: m.Size, Job: job},
		Since:   s.now(),
	}
	return s.writeBoot(b)
}

// Commit makes job's trial the committed release; the one it replaces
// becomes the fallback. Committing a committed job does nothing; with no
// trial of job it is ErrNoTrial.
func (s *BinarySlots) Commit(job, reason string) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	b, err := s.readBootOrZero()
	if err != nil {
		return err
	}
	return s.commit(b, job, reason)
}

func (s *BinarySlots) commit(b Boot, job, reason string) error {
	switch st, _ := b.JobState(job); st {
	case StateCommitted:
		return nil
	case StateTrial:
	default:
		return fmt.Errorf("%w: job %q", ErrNoTrial, job)
	}
	if !b.Committed.Packaged() {
		prev := b.Committed
		b.Previous = &prev
	} else {
		b.Previous = nil
	}
	b.Committed = b.Trial.Release
	b.Trial = nil
	b.Last = &Outcome{Job: job, State: StateCommitted, Reason: reason, At: s.now()}
	return s.writeBoot(b)
}

// Rollback ends job's trial: the committed release runs again from the
// next start. Without a trial of job it does nothing.
func (s *BinarySlots) Rollback(job, reason string) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	b, err := s.readBootOrZero()
	if err != nil {
		return err
	}
	_, err = s.rollback(b, job, reason)
	return err
}

// rollback drops job's trial from b and writes it, returning what was
// written.
func (s *BinarySlots) rollback(b Boot, job, reason string) (Boot, error) {
	if st, _ := b.JobState(job); st != StateTrial {
		return b, nil
	}
	b.Trial = nil
	b.Last = &Outcome{Job: job, State: StateRolledBack, Reason: reason, At: s.now()}
	return b, s.writeBoot(b)
}

func (s *BinarySlots) slotDir(slot string) string { return filepath.Join(s.Dir, slotsDir, slot) }
func (s *BinarySlots) binary(slot string) string  { return filepath.Join(s.slotDir(slot), slotBinary) }

func (s *BinarySlots) fsys() fileSystem { return orOS(s.fs) }

func (s *BinarySlots) now() time.Time { return utcNow(s.Clock) }

// readBoot reads and checks boot.json; an error wrapping fs.ErrNotExist
// if there is none, ErrBadState if it is not what this package writes.
func (s *BinarySlots) readBoot() (Boot, error) {
	raw, err := readSmall(s.fsys(), filepath.Join(s.Dir, bootFile))
	if err != nil {
		return Boot{}, fmt.Errorf("ota: %w", err)
	}
	var b Boot
	if err := json.Unmarshal(raw, &b); err != nil {
		return Boot{}, fmt.Errorf("%w: %s: %s", ErrBadState, bootFile, jsonError(err))
	}
	if err := b.check(); err != nil {
		return Boot{}, fmt.Errorf("%w: %s: %s", ErrBadState, bootFile, err)
	}
	if b.Trial != nil {
		b.Trial.Path = s.binary(b.Trial.Slot)
	}
	return b, nil
}

func (s *BinarySlots) readBootOrZero() (Boot, error) {
	b, err := s.readBoot()
	if errors.Is(err, fs.ErrNotExist) {
		return Boot{Format: stateFormat}, nil
	}
	return b, err
}

func (s *BinarySlots) writeBoot(b Boot) error {
	b.Format = stateFormat
	raw, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	return writeAtomic(s.fsys(), filepath.Join(s.Dir, bootFile), raw)
}

// check refuses a boot state that would make the launcher run the wrong
// thing: an unknown format, a slot name that is a path, a release without
// its sha256, a trial in the committed slot.
func (b Boot) check() error {
	if b.Format != stateFormat {
		return fmt.Errorf("format %d, want %d", b.Format, stateFormat)
	}
	rels := []struct {
		name string
		r    *Release
	}{{"committed", &b.Committed}, {"previous", b.Previous}}
	if b.Trial != nil {
		rels = append(rels, struct {
			name string
			r    *Release
		}{"trial", &b.Trial.Release})
		if b.Trial.Slot == "" || b.Trial.Slot == b.Committed.Slot {
			return fmt.Errorf("trial in slot %q, where the committed release is", b.Trial.Slot)
		}
		if b.Trial.Boots < 0 {
			return fmt.Errorf("trial boots %d", b.Trial.Boots)
		}
	}
	for _, x := range rels {
		if x.r == nil || x.r.Packaged() {
			continue
		}
		if x.r.Slot != SlotA && x.r.Slot != SlotB {
			return fmt.Errorf("%s: slot %.20q", x.name, x.r.Slot)
		}
		if _, err := checkSHA256(x.name+".sha256", x.r.SHA256); err != nil {
			return err
		}
		if x.r.Size <= 0 {
			return fmt.Errorf("%s: size %d", x.name, x.r.Size)
		}
	}
	if b.Last != nil && b.Last.State != StateCommitted && b.Last.State != StateRolledBack {
		return fmt.Errorf("last: state %.20q", b.Last.State)
	}
	return nil
}

// verifyFile checks that path holds size bytes hashing to sum; the error
// wraps ErrSlotCorrupt and says what is wrong.
func verifyFile(fsys fileSystem, path string, size int64, sum string) error {
	f, err := fsys.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s is missing", ErrSlotCorrupt, path)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSlotCorrupt, path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, size+1))
	if err != nil {
		return fmt.Errorf("%w: reading %s: %w", ErrSlotCorrupt, path, err)
	}
	if n != size {
		return fmt.Errorf("%w: %s has %d bytes, want %d", ErrSlotCorrupt, path, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("%w: %s has sha256 %s, want %s", ErrSlotCorrupt, path, got[:16], sum[:16])
	}
	return nil
}

// writeAtomic replaces path with data: path.tmp is written, fsynced and
// renamed over path, then the directory is fsynced. It is
// internal/atomicfile.Write through fileSystem, with a fixed temporary
// name, so a power cut leaves no litter that grows.
func writeAtomic(fsys fileSystem, path string, data []byte) error {
	tmp := path + tmpSuffix
	f, err := fsys.Create(tmp, 0o644)
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	return nil
}

// moveAside renames an unreadable state file to NAME.corrupt, so the next
// start begins clean and the bad file is kept to look at.
func moveAside(fsys fileSystem, path string) error {
	if err := fsys.Rename(path, path+badSuffix); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	return nil
}

// readSmall reads a state file of at most maxStateSize bytes.
func readSmall(fsys fileSystem, path string) ([]byte, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxStateSize {
		return nil, fmt.Errorf("%s: more than %d bytes", path, maxStateSize)
	}
	return b, nil
}

// makeDirs creates dir and its missing parents up to top and fsyncs each
// parent, so the new directories survive a power cut.
func makeDirs(fsys fileSystem, dir, top string) error {
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	for d := dir; d != top && d != filepath.Dir(d); {
		d = filepath.Dir(d)
		if err := fsys.SyncDir(d); err != nil {
			return fmt.Errorf("ota: %w", err)
		}
	}
	return nil
}

// fileSystem is the little of the filesystem the slots and the job state
// use. Every change goes through it, so the tests can cut the power after
// any one step and see what survives (see slots_test.go).
type fileSystem interface {
	// Create creates or truncates name for writing, with mode perm
	// whatever the umask.
	Create(name string, perm fs.FileMode) (writableFile, error)
	Open(name string) (io.ReadCloser, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	MkdirAll(dir string, perm fs.FileMode) error
	// SyncDir fsyncs a directory, so the creations, renames and removals
	// in it survive a power cut.
	SyncDir(dir string) error
}

type writableFile interface {
	io.Writer
	Sync() error
	Close() error
}

// osFS is fileSystem on the real disk.
type osFS struct{}

func (osFS) Create(name string, perm fs.FileMode) (writableFile, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (osFS) Open(name string) (io.ReadCloser, error)     { return os.Open(name) }
func (osFS) Rename(oldname, newname string) error        { return os.Rename(oldname, newname) }
func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }

// orOS is f, or the OS's filesystem when f is nil (only tests inject one).
func orOS(f fileSystem) fileSystem {
	if f == nil {
		return osFS{}
	}
	return f
}

// utcNow is clock's time, or the wall clock's when clock is nil, in UTC.
func utcNow(clock func() time.Time) time.Time {
	if clock != nil {
		return clock().UTC()
	}
	return time.Now().UTC()
}

func (osFS) SyncDir(dir string) error { return atomicfile.SyncDir(dir) }
