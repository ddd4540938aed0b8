package ota

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/microretail/kioskd/internal/atomicfile"
)

// Delta updates. A delta is one zstd frame of the new artifact compressed
// with the old artifact, the one the kiosk runs, as a raw dictionary:
// what `zstd --patch-from=OLD NEW` makes, and `zstd -d --patch-from=OLD`
// unpacks. A small code change moves little of a binary, so the frame is
// mostly references into the old binary and a few literals.
//
// The publisher runs MakeDelta and puts the file's size and sha256 in the
// manifest's Delta, next to the base's sha256. A kiosk whose running
// artifact hashes to Delta.BaseSHA256 fetches the delta (Downloader
// verifies its size and sha256 like any artifact) and runs ApplyDelta,
// which rebuilds the artifact and checks it against the manifest's own
// Size and SHA256, the ones a full download is checked against, so a
// rebuilt artifact is exactly as trusted as a downloaded one. Any
// ErrDeltaMismatch means: discard the delta and fetch the full artifact.

// ErrDeltaMismatch says a delta does not rebuild the artifact the
// manifest names: the base is not the one it was made against, or the
// delta is corrupt or truncated. Nothing is left behind; fall back to the
// full artifact.
var ErrDeltaMismatch = errors.New("ota: delta does not rebuild the artifact")

// DeltaInfo is what the manifest's Delta records of a delta file.
type DeltaInfo struct {
	Size   int64
	SHA256 string // lowercase hex
}

const (
	// deltaDictID is the frame's dictionary ID: 0, as zstd --patch-from
	// writes, so the CLI can make and unpack our deltas too.
	deltaDictID = 0
	// deltaMaxWindow caps the encoder's window, and so what of the base
	// a match can reach (see deltaWindow).
	deltaMaxWindow = 256 << 20
	// deltaMaxInput bounds the base and the target. Both are held in
	// memory, and a raw dictionary may not exceed 2 GiB; deltas are for
	// kioskd binaries, not full images.
	deltaMaxInput = maxBinarySize
)

// MakeDelta writes to out a delta that rebuilds target from base, and
// returns the delta's size and sha256 for the manifest. It checks that the
// delta decodes to target before writing it. out is replaced atomically
// (out.tmp, fsync, rename, fsync of the directory). Whether a delta is
// worth publishing (say, smaller than half the artifact) is the caller's
// call.
func MakeDelta(base, target, out string) (DeltaInfo, error) {
	b, err := deltaReadFile(base)
	if err != nil {
		return DeltaInfo{}, fmt.Errorf("ota: make delta: base: %w", err)
	}
	t, err := deltaReadFile(target)
	if err != nil {
		return DeltaInfo{}, fmt.Errorf("ota: make delta: target: %w", err)
	}
	d, err := deltaEncode(b, t)
	if err != nil {
		return DeltaInfo{}, fmt.Errorf("ota: make delta: %w", err)
	}
	if err := deltaRoundTrip(b, t, d); err != nil {
		return DeltaInfo{}, fmt.Errorf("ota: make delta: the delta does not rebuild %s: %w", target, err)
	}
	if err := writeAtomic(osFS{}, out, d); err != nil {
		_ = os.Remove(out + tmpSuffix)
		return DeltaInfo{}, err
	}
	sum := sha256.Sum256(d)
	return DeltaInfo{Size: int64(len(d)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// deltaWindow is the encoder window for a delta of target against base.
//
// The encoder puts the raw dictionary in front of the input as history,
// and takes a match only if its distance is less than the window
// (klauspost/compress v1.17.11, zstd/enc_best.go): a dictionary longer
// than the window is accepted, but only its last window bytes can be
// reached. The byte at target[p] that matches
// base[q] is len(base)-q+p back, and for an unchanged stretch after an
// insertion of k bytes that is len(base)+k, more than len(base). So the
// window covers base and target both; the next power of two at least
// max(len(base), len(target)) would lose every match when base is a power
// of two long, and most of them after an insertion when it is just below
// one.
//
// The window only sizes the encoder. The frame is single-segment, so the
// decoder's window is the target's size, and the base is held apart as
// the dictionary.
func deltaWindow(baseLen, targetLen int) int {
	w := zstd.MinWindowSize
	for w < baseLen+targetLen && w < deltaMaxWindow {
		w <<= 1
	}
	return w
}

func deltaEncode(base, target []byte) ([]byte, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(deltaWindow(len(base), len(target))),
		zstd.WithEncoderDictRaw(deltaDictID, base),
		// Frame content size always present, and the decoder's window
		// is exactly the target: ApplyDelta checks the one and bounds
		// its memory by the other.
		zstd.WithSingleSegment(true),
		zstd.WithEncoderCRC(true),
		// Each encoder holds tens of MB of match tables; EncodeAll uses
		// one at a time anyway.
		zstd.WithEncoderConcurrency(1),
	)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(target, nil), nil
}

// deltaRoundTrip decodes delta as a kiosk would and compares it with target.
func deltaRoundTrip(base, target, delta []byte) error {
	var h zstd.Header
	if err := h.Decode(delta); err != nil {
		return err
	}
	if !h.HasFCS || h.FrameContentSize != uint64(len(target)) {
		return fmt.Errorf("the frame states %d bytes (stated: %t), want %d", h.FrameContentSize, h.HasFCS, len(target))
	}
	dec, err := deltaDecoder(bytes.NewReader(delta), base, int64(len(target)))
	if err != nil {
		return err
	}
	defer dec.Close()
	var got bytes.Buffer
	got.Grow(len(target))
	if _, err := dec.WriteTo(&got); err != nil {
		return err
	}
	if !bytes.Equal(got.Bytes(), target) {
		return errors.New("decoded bytes differ")
	}
	return nil
}

// ApplyDelta rebuilds an artifact from base, the artifact the kiosk runs,
// and delta, a file MakeDelta made, into out. wantSize and wantSHA256 are
// the manifest's Size and SHA256, of the full artifact: out appears, by an
// atomic rename after an fsync, only when the rebuilt bytes match them.
//
// A wrong base, a corrupt or truncated delta, or a frame that claims any
// other size than wantSize is ErrDeltaMismatch; a cancelled ctx is
// ctx.Err(); I/O errors (a missing base, a full disk) are returned as
// they are. On any error out is untouched and out.tmp removed. Memory use
// is about the base plus the target.
//
// The caller checks that base hashes to the manifest's Delta.BaseSHA256
// before fetching the delta; ApplyDelta would catch a wrong base anyway,
// but only after decoding.
func ApplyDelta(ctx context.Context, base, delta, out string, wantSize int64, wantSHA256 string) (err error) {
	want, err := checkSHA256("sha256", wantSHA256)
	if err != nil {
		return fmt.Errorf("ota: apply delta: %w", err)
	}
	if wantSize <= 0 || wantSize > deltaMaxInput {
		return fmt.Errorf("ota: apply delta: size %d: want 1 to %d", wantSize, int64(deltaMaxInput))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ota: apply delta: %w", err)
	}
	dict, err := deltaReadFile(base)
	if err != nil {
		return fmt.Errorf("ota: apply delta: base: %w", err)
	}
	f, err := os.Open(delta)
	if err != nil {
		return fmt.Errorf("ota: apply delta: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	// Refuse a frame that says it makes anything but wantSize bytes before
	// decoding a byte of it; the decoder then holds it to that size.
	head, _ := br.Peek(zstd.HeaderMaxSize)
	var h zstd.Header
	if err := h.Decode(head); err != nil {
		return fmt.Errorf("%w: %s: frame header: %w", ErrDeltaMismatch, delta, err)
	}
	switch {
	case h.Skippable:
		return fmt.Errorf("%w: %s: not a zstd data frame", ErrDeltaMismatch, delta)
	case !h.HasFCS:
		return fmt.Errorf("%w: %s: the frame does not state its size", ErrDeltaMismatch, delta)
	case h.FrameContentSize != uint64(wantSize):
		return fmt.Errorf("%w: %s: the frame makes %d bytes, the manifest says %d", ErrDeltaMismatch, delta, h.FrameContentSize, wantSize)
	case h.DictionaryID != deltaDictID:
		return fmt.Errorf("%w: %s: the frame wants dictionary %d", ErrDeltaMismatch, delta, h.DictionaryID)
	}
	dec, err := deltaDecoder(br, dict, wantSize)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDeltaMismatch, delta, err)
	}
	defer dec.Close()

	tmp := out + tmpSuffix
	o, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("ota: apply delta: %w", err)
	}
	defer func() {
		if err != nil {
			o.Close()
			_ = os.Remove(tmp)
		}
	}()
	sink := &deltaSink{ctx: ctx, w: o, h: sha256.New(), limit: wantSize}
	_, derr := dec.WriteTo(sink)
	switch {
	case sink.err != nil:
		return sink.err
	case derr != nil:
		return fmt.Errorf("%w: %s: %w", ErrDeltaMismatch, delta, derr)
	case sink.n != wantSize:
		return fmt.Errorf("%w: rebuilt %d bytes, want %d", ErrDeltaMismatch, sink.n, wantSize)
	}
	if got := hex.EncodeToString(sink.h.Sum(nil)); got != want {
		return fmt.Errorf("%w: the rebuilt artifact has sha256 %s, want %s", ErrDeltaMismatch, got, want)
	}
	if err := o.Sync(); err != nil {
		return fmt.Errorf("ota: apply delta: %w", err)
	}
	if err := o.Close(); err != nil {
		return fmt.Errorf("ota: apply delta: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ota: apply delta: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("ota: apply delta: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(out))
}

// deltaDecoder decodes a delta frame of size bytes against base. It
// decodes in the calling goroutine and allows no window beyond the
// target: the frame is single-segment, so its window is its size.
func deltaDecoder(r io.Reader, base []byte, size int64) (*zstd.Decoder, error) {
	limit := uint64(max(size, zstd.MinWindowSize))
	return zstd.NewReader(r,
		zstd.WithDecoderDictRaw(deltaDictID, base),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(limit),
		zstd.WithDecoderMaxMemory(limit),
	)
}

// deltaSink writes the rebuilt artifact to the temporary file, hashing
// and counting it, and stops at a cancelled ctx or at more than limit
// bytes. err is set only by the sink, so the caller can tell its errors
// from the decoder's.
type deltaSink struct {
	ctx   context.Context
	w     io.Writer
	h     hash.Hash
	n     int64
	limit int64
	err   error
}

func (s *deltaSink) Write(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		s.err = fmt.Errorf("ota: apply delta: %w", err)
		return 0, s.err
	}
	if int64(len(p)) > s.limit-s.n {
		s.err = fmt.Errorf("%w: rebuilds more than %d bytes", ErrDeltaMismatch, s.limit)
		return 0, s.err
	}
	n, err := s.w.Write(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	if err != nil {
		s.err = fmt.Errorf("ota: apply delta: %w", err)
		return n, s.err
	}
	return n, nil
}

// deltaReadFile reads a whole base or target, of 1 to deltaMaxInput bytes.
func deltaReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, deltaMaxInput+1))
	switch {
	case err != nil:
		return nil, err
	case len(b) == 0:
		return nil, fmt.Errorf("%s is empty", path)
	case int64(len(b)) > deltaMaxInput:
		return nil, fmt.Errorf("%s is larger than %d bytes", path, int64(deltaMaxInput))
	}
	return b, nil
}

// FileSHA256 returns the sha256 of the file at path in lowercase hex, as
// manifests spell it: to check a running artifact against a delta's
// BaseSHA256.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("ota: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("ota: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
