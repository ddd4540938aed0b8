// Command ota measures what an OTA update of kioskd costs a kiosk: the
// size of the stripped binaries it downloads (and their gzip -9 size, what
// a compressing transfer would carry), and the time from a downloaded
// artifact to the launcher starting it: opening the signed envelope, the
// artifact's sha256, the install into a slot, the switch and the
// launcher's decision, each through the real ota package. The install
// runs in a temporary directory; the output says which filesystem that
// is, because on tmpfs an fsync costs nothing.
//
// Delta size for a small code change: the arm64 kioskd built again with a
// one-line change to a string constant (the version stamp, -X
// main.Version), and the delta of ota.MakeDelta against the first build,
// as kioskctl ota sign --delta-base makes it.
//
//	go run ./bench/ota [-n 5] [-dir DIR]
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/microretail/kioskd/ota"
)

func main() {
	n := flag.Int("n", 5, "runs of the verify and install steps")
	dir := flag.String("dir", "", "`dir` to build and install in (default: a new temporary directory under $TMPDIR)")
	flag.Parse()
	if err := run(*n, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ota:", err)
		os.Exit(1)
	}
}

// target is one build the fleet ships.
type target struct {
	name, goarch, goarm string
}

var targets = []target{
	{"linux/arm64 (Pi 4, Pi 5, CM4, Zero 2 W)", "arm64", ""},
	{"linux/arm GOARM=6 (Pi Zero, Pi 1; 32-bit Raspberry Pi OS)", "arm", "6"},
}

func run(n int, dir string) error {
	if n < 1 {
		return errors.New("-n must be at least 1")
	}
	goVersion, root, err := goEnv()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(dir, "kioskd-ota-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	fmt.Printf("OTA of kioskd, %s, %s, %s/%s, %d CPUs\n", time.Now().Format(time.DateOnly), goVersion, runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Printf("working directory %s: %s\n\n", work, describeFS(work))

	fmt.Println("Stripped kioskd: GOOS=linux CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w\" ./cmd/kioskd")
	fmt.Println()
	fmt.Println("| target | bytes | MiB | gzip -9 bytes | gzip -9 MiB | gzip ÷ raw |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	var arm64 string
	for _, t := range targets {
		bin := filepath.Join(work, "kioskd-"+t.goarch+t.goarm)
		if err := build(root, bin, t); err != nil {
			return err
		}
		fi, err := os.Stat(bin)
		if err != nil {
			return err
		}
		gz, err := gzipSize(bin)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %d | %.2f | %d | %.2f | %.2f |\n", t.name, fi.Size(), mib(fi.Size()), gz, mib(gz), float64(gz)/float64(fi.Size()))
		if t.goarch == "arm64" {
			arm64 = bin
		}
	}
	fmt.Println()

	steps, size, err := timeInstall(work, arm64, n)
	if err != nil {
		return err
	}
	fmt.Printf("Verify and install, the artifact being the arm64 kioskd above (%d bytes, %.2f MiB), %d runs, each into a fresh slot directory; the artifact is in the page cache\n\n", size, mib(size), n)
	fmt.Println("| step | median | max |")
	fmt.Println("|---|---:|---:|")
	for _, s := range steps {
		med, hi := stats(s.took)
		fmt.Printf("| %s | %s | %s |\n", s.name, round(med), round(hi))
	}
	fmt.Println()
	if med, _ := stats(steps[1].took); med > 0 {
		fmt.Printf("sha256 over the artifact: %.0f MB/s (median run); Install hashes it twice, Switch and Decide once each\n\n", float64(size)/med.Seconds()/1e6)
	}
	return measureDelta(root, work, arm64)
}

// measureDelta builds the arm64 kioskd again with a small change and
// prints the delta's size against the full artifact's, and the time to
// make and to apply it.
func measureDelta(root, work, base string) error {
	next := filepath.Join(work, "kioskd-arm64-next")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.Version=1.0.1", "-o", next, "./cmd/kioskd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the changed kioskd: %v\n%s", err, out)
	}
	patch := filepath.Join(work, "delta.zst")
	start := time.Now()
	info, err := ota.MakeDelta(base, next, patch)
	if err != nil {
		return err
	}
	made := time.Since(start)
	fi, err := os.Stat(next)
	if err != nil {
		return err
	}
	gz, err := gzipSize(next)
	if err != nil {
		return err
	}
	sum, err := ota.FileSHA256(next)
	if err != nil {
		return err
	}
	start = time.Now()
	if err := ota.ApplyDelta(context.Background(), base, patch, filepath.Join(work, "rebuilt"), fi.Size(), sum); err != nil {
		return err
	}
	applied := time.Since(start)
	fmt.Println("Delta for a small change (the arm64 kioskd rebuilt with another version string, -X main.Version)")
	fmt.Println()
	fmt.Println("| | bytes | ÷ full artifact | time |")
	fmt.Println("|---|---:|---:|---:|")
	fmt.Printf("| full artifact | %d | 1 | |\n", fi.Size())
	fmt.Printf("| gzip -9 of it | %d | %.3f | |\n", gz, float64(gz)/float64(fi.Size()))
	fmt.Printf("| delta (zstd, the old binary as a raw dictionary) | %d | %.4f | made in %s |\n", info.Size, float64(info.Size)/float64(fi.Size()), round(made))
	fmt.Printf("| applying it on the kiosk, verified | | | %s |\n", round(applied))
	return nil
}

// goEnv returns the version of the go on PATH and the module's root.
func goEnv() (version, root string, err error) {
	out, err := exec.Command("go", "env", "GOVERSION", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[1], "go.mod") {
		return "", "", fmt.Errorf("go env: run this inside the kioskd module (got %q)", out)
	}
	return lines[0], filepath.Dir(lines[1]), nil
}

// build cross-compiles ./cmd/kioskd for t into out, as make cross does.
func build(root, out string, t target) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/kioskd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+t.goarch, "CGO_ENABLED=0")
	if t.goarm != "" {
		cmd.Env = append(cmd.Env, "GOARM="+t.goarm)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", t.name, err, out)
	}
	return nil
}

// gzipSize is the size of path compressed by gzip at level 9.
func gzipSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var c counter
	zw, err := gzip.NewWriterLevel(&c, gzip.BestCompression)
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(zw, f); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return c.n, nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// step is one timed step of the update, over every run.
type step struct {
	name string
	took []time.Duration
}

// timeInstall signs a manifest for artifact, then n times, each into a
// fresh directory, takes it from the signed envelope to the launcher's
// decision to start it on trial, timing each step.
func timeInstall(work, artifact string, n int) ([]*step, int64, error) {
	sum, size, err := hashFile(artifact)
	if err != nil {
		return nil, 0, err
	}
	pub, priv, err := ota.GenerateKey(nil)
	if err != nil {
		return nil, 0, err
	}
	store, err := ota.NewTrustStore(pub)
	if err != nil {
		return nil, 0, err
	}
	release, _ := ota.ParseVersion("1.1.0")
	running, _ := ota.ParseVersion("1.0.0")
	raw, err := json.Marshal(ota.Manifest{Version: release, Boards: []string{"rpi4b"}, Kind: ota.KindBinary,
		SHA256: sum, Size: size, URL: "https://releases.example.com/kioskd/" + sum})
	if err != nil {
		return nil, 0, err
	}
	env, err := ota.Sign(raw, priv)
	if err != nil {
		return nil, 0, err
	}

	var (
		open    = &step{name: "ota.Open + ota.Check (envelope signature, board, version)"}
		verify  = &step{name: "sha256 of the artifact against the manifest"}
		install = &step{name: "BinarySlots.Install (copy and hash, fsync, read back and hash, rename, meta.json)"}
		switchS = &step{name: "BinarySlots.Switch (hash the slot, write boot.json)"}
		decide  = &step{name: "launcher's Decide (hash the slot, count the trial boot in boot.json)"}
		total   = &step{name: "total"}
	)
	ctx := context.Background()
	for i := range n {
		dir := filepath.Join(work, fmt.Sprintf("run%d", i), "ota")
		slots := &ota.BinarySlots{Dir: dir}
		var m ota.Manifest
		times, err := timed(
			func() error {
				var err error
				if m, _, _, err = ota.Open(env, store); err != nil {
					return err
				}
				return ota.Check(m, "rpi4b", running)
			},
			func() error {
				got, n, err := hashFile(artifact)
				if err == nil && (got != m.SHA256 || n != m.Size) {
					err = fmt.Errorf("artifact has sha256 %s, %d bytes: not the manifest's", got, n)
				}
				return err
			},
			func() error { return slots.Install(ctx, artifact, m) },
			func() error { return slots.Switch("bench", m) },
			func() error {
				d, err := slots.Decide(running)
				if err == nil && (!d.Trial || d.Exec == "") {
					err = fmt.Errorf("the launcher did not start the trial: %s", d.Reason)
				}
				return err
			},
		)
		if err != nil {
			return nil, 0, fmt.Errorf("run %d: %w", i+1, err)
		}
		var sum time.Duration
		for j, s := range []*step{open, verify, install, switchS, decide} {
			s.took = append(s.took, times[j])
			sum += times[j]
		}
		total.took = append(total.took, sum)
		if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
			return nil, 0, err
		}
	}
	return []*step{open, verify, install, switchS, decide, total}, size, nil
}

// timed runs fs in order and returns how long each took.
func timed(fs ...func() error) ([]time.Duration, error) {
	times := make([]time.Duration, len(fs))
	for i, f := range fs {
		start := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		times[i] = time.Since(start)
	}
	return times, nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// stats returns the median and the maximum.
func stats(d []time.Duration) (median, highest time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond / 10)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// Filesystem magic numbers, from statfs(2).
var fsNames = map[uint32]string{
	0x01021994: "tmpfs",
	0x858458f6: "ramfs",
	0xef53:     "ext2/ext3/ext4",
	0x58465342: "xfs",
	0x9123683e: "btrfs",
	0xf2f52010: "f2fs",
	0x794c7630: "overlayfs",
	0x2fc12fc1: "zfs",
	0x6969:     "nfs",
	0x4d44:     "vfat",
}

// describeFS names the filesystem dir is on and the device behind it, and
// says whether it is tmpfs, where fsync is free and the install figures
// flatter a real disk.
func describeFS(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "filesystem unknown (" + err.Error() + ")"
	}
	magic := uint32(st.Type)
	name, ok := fsNames[magic]
	if !ok {
		name = fmt.Sprintf("filesystem type %#x", magic)
	}
	if src := mountSource(dir); src != "" {
		name += " on " + src
	}
	if magic == 0x01021994 || magic == 0x858458f6 {
		return name + ": in memory, fsync costs nothing (pass -dir to measure a disk)"
	}
	return name + ": not tmpfs, so every fsync reaches the device"
}

// mountSource is the device of the longest mount point holding dir, from
// /proc/self/mounts; "" where that cannot be read.
func mountSource(dir string) string {
	abs, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return ""
	}
	best, src := "", ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		mp := strings.ReplaceAll(f[1], `\040`, " ")
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, src = mp, f[0]
		}
	}
	return src
}
