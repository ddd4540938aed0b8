package ota

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
)

// deltaPair returns a base of n random bytes (a binary compresses little
// on its own) and a target that is the base after a small code change: a
// few bytes changed at scattered places, as relinking moves some
// addresses, and ins new bytes inserted in the middle.
func deltaPair(seed uint64, n, ins int) (base, target []byte) {
	r := rand.New(rand.NewPCG(seed, 8))
	base = make([]byte, n)
	for i := range base {
		base[i] = byte(r.Uint32())
	}
	target = slices.Clone(base)
	for range 6 {
		at := r.IntN(n - 8)
		for j := range 1 + r.IntN(8) {
			target[at+j] ^= byte(1 + r.IntN(255))
		}
	}
	insert := make([]byte, ins)
	for i := range insert {
		insert[i] = byte(r.Uint32())
	}
	return base, slices.Insert(target, n/3, insert...)
}

type deltaFixture struct {
	dir, base, target, delta string
	targetBytes              []byte
	size                     int64
	sum                      string
	info                     DeltaInfo
}

func newDeltaFixture(t *testing.T, n, ins int) *deltaFixture {
	t.Helper()
	b, tg := deltaPair(1, n, ins)
	dir := t.TempDir()
	f := &deltaFixture{
		dir:         dir,
		base:        filepath.Join(dir, "kioskd-1.3.2"),
		target:      filepath.Join(dir, "kioskd-1.4.0"),
		delta:       filepath.Join(dir, "kioskd-1.3.2-1.4.0.zst"),
		targetBytes: tg,
		size:        int64(len(tg)),
	}
	sum := sha256.Sum256(tg)
	f.sum = hex.EncodeToString(sum[:])
	deltaWriteFileT(t, f.base, b)
	deltaWriteFileT(t, f.target, tg)
	info, err := MakeDelta(f.base, f.target, f.delta)
	if err != nil {
		t.Fatal(err)
	}
	f.info = info
	return f
}

func deltaWriteFileT(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// deltaAssertDir fails unless dir holds exactly names.
func deltaAssertDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}

func TestDeltaSmallCodeChange(t *testing.T) {
	// 8 MiB exactly: a power of two, where a window of only
	// max(len(base), len(target)) would reach none of the base.
	f := newDeltaFixture(t, 8<<20, 4<<10)
	fi, err := os.Stat(f.delta)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != f.info.Size {
		t.Fatalf("DeltaInfo.Size %d, the file has %d", f.info.Size, fi.Size())
	}
	if sum, err := FileSHA256(f.delta); err != nil || sum != f.info.SHA256 {
		t.Fatalf("DeltaInfo.SHA256 %s, the file hashes to %s (%v)", f.info.SHA256, sum, err)
	}
	ratio := float64(f.info.Size) / float64(f.size)
	t.Logf("target %d bytes, delta %d bytes: %.3f%% of the target", f.size, f.info.Size, 100*ratio)
	if ratio >= 0.05 {
		t.Fatalf("delta is %.1f%% of the target, want < 5%%: the base is not used as the dictionary", 100*ratio)
	}

	outDir := t.TempDir()
	out := filepath.Join(outDir, f.sum+".artifact")
	if err := ApplyDelta(t.Context(), f.base, f.delta, out, f.size, f.sum); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.targetBytes) {
		t.Fatal("rebuilt artifact differs from the target")
	}
	deltaAssertDir(t, outDir, f.sum+".artifact")

	// Applying again replaces out with the same bytes.
	if err := ApplyDelta(t.Context(), f.base, f.delta, out, f.size, f.sum); err != nil {
		t.Fatal(err)
	}
	deltaAssertDir(t, outDir, f.sum+".artifact")
}

func TestDeltaWindowCoversBaseAndTarget(t *testing.T) {
	for _, c := range []struct{ base, target, want int }{
		{1, 1, 1 << 10},
		{8 << 20, 8 << 20, 16 << 20},
		{8<<20 - 100, 8<<20 + 100, 16 << 20},
		{8<<20 + 1, 8 << 20, 32 << 20},
		{30 << 20, 31 << 20, 64 << 20},
		{200 << 20, 200 << 20, 256 << 20}, // capped
	} {
		if got := deltaWindow(c.base, c.target); got != c.want {
			t.Errorf("deltaWindow(%d, %d) = %d, want %d", c.base, c.target, got, c.want)
		}
	}
}

func TestDeltaMismatch(t *testing.T) {
	f := newDeltaFixture(t, 256<<10, 1<<10)
	deltaBytes, err := os.ReadFile(f.delta)
	if err != nil {
		t.Fatal(err)
	}
	otherBase, _ := deltaPair(2, 256<<10, 0)
	longer := slices.Concat(f.targetBytes, []byte("x"))
	longerSum := sha256.Sum256(longer)

	cases := []struct {
		name  string
		base  []byte // nil: the right base
		delta []byte // nil: the right delta
		size  int64
		sum   string
	}{
		{name: "wrong base", base: otherBase},
		{name: "base one byte off", base: func() []byte {
			b, _ := os.ReadFile(f.base)
			b[len(b)/2] ^= 1
			return b
		}()},
		{name: "corrupt middle", delta: deltaFlip(deltaBytes, len(deltaBytes)/2)},
		{name: "corrupt checksum", delta: deltaFlip(deltaBytes, len(deltaBytes)-1)},
		{name: "corrupt magic", delta: deltaFlip(deltaBytes, 0)},
		{name: "truncated by half", delta: deltaBytes[:len(deltaBytes)/2]},
		{name: "truncated checksum", delta: deltaBytes[:len(deltaBytes)-2]},
		{name: "empty delta", delta: []byte{}},
		{name: "not zstd", delta: []byte("#!/bin/sh\necho not a delta\n")},
		{name: "trailing garbage", delta: slices.Concat(deltaBytes, []byte{1, 2, 3})},
		{name: "two frames", delta: slices.Concat(deltaBytes, deltaBytes)},
		{name: "wrong sha256", sum: "00" + f.sum[2:]},
		{name: "manifest size smaller", size: f.size - 1},
		{name: "manifest size larger", size: f.size + 1, sum: hex.EncodeToString(longerSum[:])},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			base, delta := f.base, f.delta
			if c.base != nil {
				base = filepath.Join(dir, "base")
				deltaWriteFileT(t, base, c.base)
			}
			if c.delta != nil {
				delta = filepath.Join(dir, "delta")
				deltaWriteFileT(t, delta, c.delta)
			}
			size, sum := f.size, f.sum
			if c.size != 0 {
				size = c.size
			}
			if c.sum != "" {
				sum = c.sum
			}
			outDir := t.TempDir()
			err := ApplyDelta(t.Context(), base, delta, filepath.Join(outDir, "artifact"), size, sum)
			if !errors.Is(err, ErrDeltaMismatch) {
				t.Fatalf("got %v, want ErrDeltaMismatch", err)
			}
			t.Log(err)
			deltaAssertDir(t, outDir)
		})
	}
}

func deltaFlip(b []byte, i int) []byte {
	b = slices.Clone(b)
	b[i] ^= 0xff
	return b
}

// TestDeltaEveryCorruption flips and truncates the delta at many places:
// each is ErrDeltaMismatch with nothing left behind, or, where the flip
// happens not to matter, exactly the target. Never another error, never a
// panic.
func TestDeltaEveryCorruption(t *testing.T) {
	f := newDeltaFixture(t, 64<<10, 512)
	deltaBytes, err := os.ReadFile(f.delta)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	delta := filepath.Join(dir, "delta")
	outDir := t.TempDir()
	out := filepath.Join(outDir, "artifact")
	step := max(1, len(deltaBytes)/150)
	var mismatches, harmless int
	try := func(what string, b []byte) {
		t.Helper()
		deltaWriteFileT(t, delta, b)
		err := ApplyDelta(t.Context(), f.base, delta, out, f.size, f.sum)
		switch {
		case err == nil:
			got, rerr := os.ReadFile(out)
			if rerr != nil || !bytes.Equal(got, f.targetBytes) {
				t.Fatalf("%s: ApplyDelta succeeded with the wrong bytes", what)
			}
			harmless++
			if err := os.Remove(out); err != nil {
				t.Fatal(err)
			}
		case errors.Is(err, ErrDeltaMismatch):
			mismatches++
			deltaAssertDir(t, outDir)
		default:
			t.Fatalf("%s: %v, want ErrDeltaMismatch", what, err)
		}
	}
	for i := 0; i < len(deltaBytes); i += step {
		try("flip byte "+strconv.Itoa(i), deltaFlip(deltaBytes, i))
		try("truncate to "+strconv.Itoa(i), deltaBytes[:i])
	}
	t.Logf("delta %d bytes: %d mismatches, %d harmless flips", len(deltaBytes), mismatches, harmless)
	if mismatches == 0 {
		t.Fatal("no corruption was caught")
	}
}

// deltaCancelCtx is cancelled at the nth call of Err, as though the
// caller cancelled while ApplyDelta was writing.
type deltaCancelCtx struct {
	context.Context
	cancel context.CancelFunc
	n      int32
	calls  atomic.Int32
}

func (c *deltaCancelCtx) Err() error {
	if c.calls.Add(1) == c.n {
		c.cancel()
	}
	return c.Context.Err()
}

func TestDeltaCancelMidApply(t *testing.T) {
	f := newDeltaFixture(t, 2<<20, 1<<10)
	inner, cancel := context.WithCancel(t.Context())
	defer cancel()
	ctx := &deltaCancelCtx{Context: inner, cancel: cancel, n: 4}
	outDir := t.TempDir()
	err := ApplyDelta(ctx, f.base, f.delta, filepath.Join(outDir, "artifact"), f.size, f.sum)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if errors.Is(err, ErrDeltaMismatch) {
		t.Fatalf("a cancel is not a mismatch: %v", err)
	}
	// The checks before decoding and one per block written: the cancel
	// came after some of the artifact was written, not before.
	if n := ctx.calls.Load(); n < 4 {
		t.Fatalf("ctx checked %d times", n)
	}
	deltaAssertDir(t, outDir)

	// Cancelled before it starts.
	done, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if err := ApplyDelta(done, f.base, f.delta, filepath.Join(outDir, "artifact"), f.size, f.sum); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	deltaAssertDir(t, outDir)
}

func TestDeltaBadArguments(t *testing.T) {
	f := newDeltaFixture(t, 4<<10, 16)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "artifact")
	for name, err := range map[string]error{
		"missing base":  ApplyDelta(t.Context(), filepath.Join(f.dir, "nope"), f.delta, out, f.size, f.sum),
		"missing delta": ApplyDelta(t.Context(), f.base, filepath.Join(f.dir, "nope"), out, f.size, f.sum),
		"bad sha256":    ApplyDelta(t.Context(), f.base, f.delta, out, f.size, "xyz"),
		"zero size":     ApplyDelta(t.Context(), f.base, f.delta, out, 0, f.sum),
		"out dir gone":  ApplyDelta(t.Context(), f.base, f.delta, filepath.Join(outDir, "no", "artifact"), f.size, f.sum),
	} {
		if err == nil || errors.Is(err, ErrDeltaMismatch) {
			t.Errorf("%s: got %v, want an error that is not ErrDeltaMismatch", name, err)
		}
	}
	deltaAssertDir(t, outDir)

	empty := filepath.Join(f.dir, "empty")
	deltaWriteFileT(t, empty, nil)
	if _, err := MakeDelta(empty, f.target, filepath.Join(f.dir, "d")); err == nil {
		t.Error("MakeDelta from an empty base succeeded")
	}
	if _, err := MakeDelta(f.base, filepath.Join(f.dir, "nope"), filepath.Join(f.dir, "d")); err == nil {
		t.Error("MakeDelta of a missing target succeeded")
	}
	if _, err := os.Stat(filepath.Join(f.dir, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed MakeDelta left its output: %v", err)
	}
}

func TestDeltaTinyArtifact(t *testing.T) {
	// Below zstd's minimum window and the 256 bytes under which a
	// multi-segment frame omits its size.
	dir := t.TempDir()
	base, target, delta := filepath.Join(dir, "b"), filepath.Join(dir, "t"), filepath.Join(dir, "d")
	deltaWriteFileT(t, base, []byte("kioskd 1.3.2 tiny"))
	deltaWriteFileT(t, target, []byte("kioskd 1.4.0 tiny"))
	if _, err := MakeDelta(base, target, delta); err != nil {
		t.Fatal(err)
	}
	sum, err := FileSHA256(target)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := ApplyDelta(t.Context(), base, delta, out, 17, sum); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "kioskd 1.4.0 tiny" {
		t.Fatalf("rebuilt %q", b)
	}
}
