package ota

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/microretail/kioskd/internal/atomicfile"
	"github.com/microretail/kioskd/internal/wait"
)

// Errors a caller of Fetch acts on. Any other error is ctx's, a local
// disk failure, or a bad argument; in every case but ErrCorrupt the
// partial download stays on disk and the next Fetch resumes it.
var (
	// ErrCorrupt says the server's bytes are not the artifact the
	// manifest names: a different sha256, a different size, or more bytes
	// than the manifest's size. The partial download is deleted, since
	// none of it can be trusted.
	ErrCorrupt = errors.New("artifact does not match its manifest")
	// ErrUnavailable says the server refuses the artifact (404, 403, or
	// another 4xx): retrying will not help until the release is fixed.
	ErrUnavailable = errors.New("server refuses the artifact")
	// ErrRetriesExhausted says the link or the server kept failing
	// without a byte of progress. The download is kept; try again later.
	ErrRetriesExhausted = errors.New("download keeps failing")
)

// Defaults for the Downloader's zero fields.
const (
	// DefaultChunkSize is how many bytes are written and fsynced between
	// two persisted offsets: on a 20 kB/s cellular link a power cut loses
	// a few seconds of download, and an SD card sees one fsync per chunk.
	DefaultChunkSize = 128 << 10
	// DefaultAttempts bounds the tries in one Fetch that bring no new
	// byte; with the backoff that is about five minutes of a dead link,
	// after which the OTA loop above decides when to try again.
	DefaultAttempts = 10
	// DefaultStallTimeout ends a request that has sent nothing for this
	// long: a cellular link can die without a reset, leaving a read that
	// never returns.
	DefaultStallTimeout = 60 * time.Second

	retryMin      = time.Second
	retryMax      = 2 * time.Minute
	progressEvery = time.Second
	maxReadStep   = 32 << 10
)

// Downloader fetches OTA artifacts over HTTP(S) into Dir, resuming with
// Range requests across dropped connections, kioskd restarts and power
// cuts, so a poor link never restarts a download from zero. Set the
// fields before the first Fetch. One Downloader owns its Dir.
//
// Files in Dir, per artifact (named by its sha256 in lower-case hex):
//
//	<sha256>.part      the bytes received so far
//	<sha256>.json      the DownloadState: how many bytes of .part count
//	<sha256>.artifact  the finished, verified artifact
type Downloader struct {
	// Client does the requests; nil is http.DefaultClient. Its Timeout,
	// if any, bounds a whole request: leave it 0 and rely on
	// StallTimeout, or a long download never finishes.
	Client *http.Client
	Dir    string
	// RateBytesPerSec caps the download, shared by every Fetch of this
	// Downloader; 0 is unlimited.
	RateBytesPerSec int64
	// Wait is called before each request and between chunks; it blocks
	// while the download must not run (the battery gate,
	// firmware/power.Gate.Wait, holds it while load is shed). nil never
	// blocks.
	Wait func(ctx context.Context) error
	// Held, if set, tells whether Wait would block and why (power.Gate.Held).
	// A held download closes its connection instead of idling it, and
	// reports the reason in Progress.Waiting.
	Held func() (held bool, why string)
	// Progress, if set, hears about the download at start, at most about
	// once a second while it runs, when it starts or stops waiting, and at
	// the end. It is called on Fetch's goroutine: keep it quick.
	Progress func(Progress)
	// ChunkSize is the persistence step; 0 is DefaultChunkSize.
	ChunkSize int
	// Clock and Sleep are the time the rate cap, the backoff and the
	// progress rate run on; nil is the wall clock. Tests inject a fake.
	Clock func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Attempts bounds the tries without progress in one Fetch; 0 is
	// DefaultAttempts.
	Attempts int
	// StallTimeout ends a silent request, on the wall clock whatever
	// Clock is; 0 is DefaultStallTimeout.
	StallTimeout time.Duration

	mu     sync.Mutex
	busy   map[string]bool
	bucket *TokenBucket
}

// Progress is a snapshot of one download, for the kiosk/<id>/ota topic.
type Progress struct {
	Offset      int64 // bytes received
	Size        int64
	BytesPerSec int64 // since the last report; over the whole Fetch at the end
	Resumed     bool  // the Fetch went on from a persisted offset
	// Waiting says why no bytes move: the battery gate's reason, or
	// "retry in 4s: ..." after an error; empty while downloading.
	Waiting string
}

// DownloadState is what <sha256>.json holds, rewritten atomically (temp
// file, fsync, rename, fsync of Dir) after every chunk, always after the
// bytes it counts were fsynced to .part. Layout, JSON, format 1:
//
//	format         1; a state in any other format is dropped and the download restarts
//	url            where the bytes come from
//	size, sha256   the artifact, from the manifest
//	offset         bytes 0..offset of .part are on disk and count
//	etag           the strong or weak ETag of the first response, if any
//	last_modified  its Last-Modified, if any
//	spliced        .part was built from more than one response
type DownloadState struct {
	Format       int    `json:"format"`
	URL          string `json:"url"`
	Size         int64  `json:"size"`
	SHA256       string `json:"sha256"`
	Offset       int64  `json:"offset"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Spliced      bool   `json:"spliced,omitempty"`
}

const downloadStateFormat = 1

// Fetch downloads the artifact of size bytes and sha256 sha256hex from
// rawURL, resuming what an earlier Fetch left, and returns the path of
// the verified artifact, Dir/<sha256>.artifact. An artifact already there
// is verified and returned without a request.
//
// Network and server errors (5xx, 408, 429, timeouts, dropped
// connections) are retried with backoff and jitter, resuming; after
// Attempts tries in a row that bring no new byte, Fetch returns
// ErrRetriesExhausted. Another 4xx is ErrUnavailable at once; bytes that
// do not match the manifest are ErrCorrupt.
func (d *Downloader) Fetch(ctx context.Context, rawURL string, size int64, sha256hex string) (string, error) {
	sum, err := downloadCheckSum(sha256hex)
	if err != nil {
		return "", err
	}
	if err := downloadCheckURL(rawURL); err != nil {
		return "", err
	}
	if size <= 0 {
		return "", fmt.Errorf("ota: download size %d: must be positive", size)
	}
	if d.Dir == "" {
		return "", errors.New("ota: downloader has no Dir")
	}
	if err := d.claim(sum); err != nil {
		return "", err
	}
	defer d.release(sum)
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return "", fmt.Errorf("ota: %w", err)
	}
	r := &download{
		d:      d,
		url:    rawURL,
		size:   size,
		sum:    sum,
		id:     sum[:12],
		part:   filepath.Join(d.Dir, sum+".part"),
		state:  filepath.Join(d.Dir, sum+".json"),
		final:  filepath.Join(d.Dir, sum+".artifact"),
		h:      sha256.New(),
		bucket: d.limiter(),
	}
	defer r.close()
	if ok, err := r.verifyFinal(); err != nil || ok {
		if err != nil {
			return "", err
		}
		return r.final, nil
	}
	if err := r.open(); err != nil {
		return "", err
	}
	return r.run(ctx)
}

// Discard removes an artifact's partial download and its state, so the
// next Fetch starts from zero. A finished artifact is the installer's and
// stays.
func (d *Downloader) Discard(sha256hex string) error {
	sum, err := downloadCheckSum(sha256hex)
	if err != nil {
		return err
	}
	if d.Dir == "" {
		return errors.New("ota: downloader has no Dir")
	}
	if err := d.claim(sum); err != nil {
		return err
	}
	defer d.release(sum)
	return d.removePartial(sum)
}

// State returns the persisted state of an unfinished download, for
// status reports; an error wrapping fs.ErrNotExist if there is none.
func (d *Downloader) State(sha256hex string) (DownloadState, error) {
	sum, err := downloadCheckSum(sha256hex)
	if err != nil {
		return DownloadState{}, err
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, sum+".json"))
	if err != nil {
		return DownloadState{}, fmt.Errorf("ota: %w", err)
	}
	var st DownloadState
	if err := json.Unmarshal(b, &st); err != nil {
		return DownloadState{}, fmt.Errorf("ota: download state of %s: %w", sum[:12], err)
	}
	return st, nil
}

// claim marks sum as being downloaded: two Fetches of one artifact would
// write over each other's .part.
func (d *Downloader) claim(sum string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.busy[sum] {
		return fmt.Errorf("ota: %s: a download of it is already running", sum[:12])
	}
	if d.busy == nil {
		d.busy = make(map[string]bool)
	}
	d.busy[sum] = true
	return nil
}

func (d *Downloader) release(sum string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.busy, sum)
}

// limiter is the bucket every Fetch shares, rebuilt if the rate changed.
func (d *Downloader) limiter() *TokenBucket {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.RateBytesPerSec <= 0 {
		return nil
	}
	if d.bucket == nil || d.bucket.Rate() != d.RateBytesPerSec {
		d.bucket = NewTokenBucket(d.RateBytesPerSec, 0, d.Clock, d.Sleep)
	}
	return d.bucket
}

func (d *Downloader) now() time.Time {
	if d.Clock != nil {
		return d.Clock()
	}
	return time.Now()
}

func (d *Downloader) sleep(ctx context.Context, t time.Duration) error {
	if d.Sleep != nil {
		return d.Sleep(ctx, t)
	}
	return sleepWall(ctx, t)
}

// removePartial deletes sum's .part, its state and any temporary state
// file a crash left behind, then syncs Dir so the deletion holds.
func (d *Downloader) removePartial(sum string) error {
	names := []string{sum + ".part", sum + ".json"}
	if tmps, err := filepath.Glob(filepath.Join(d.Dir, "."+sum+".json.*")); err == nil {
		for _, t := range tmps {
			names = append(names, filepath.Base(t))
		}
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(d.Dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ota: %w", err)
		}
	}
	return atomicfile.SyncDir(d.Dir)
}

// download is one Fetch in progress.
type download struct {
	d                  *Downloader
	url                string
	size               int64
	sum, id            string // id: a short sum for messages
	part, state, final string
	bucket             *TokenBucket

	f  *os.File
	h  hash.Hash // sha256 of .part's bytes 0..st.Offset
	st DownloadState

	resumed    bool
	noRange    bool  // the server mangles ranges: ask for the whole file
	wholeTried bool  // a spliced .part failed its sha256 once already
	high       int64 // the highest offset this Fetch reached

	began, lastAt     time.Time
	beganOff, lastOff int64
	waiting           string
}

// errPaused ends a request because the gate was closed between chunks:
// the connection is closed rather than left idle for as long as the
// battery is low. It is not a failure.
var errPaused = errors.New("paused")

// errStalled is the cause a request is cancelled with when it has sent
// nothing for StallTimeout.
var errStalled = errors.New("no data")

// retryable is a failure worth another try: the link, the server or a
// mangled range. now skips the backoff, for restarts the server asked
// for by its answer; after is the server's Retry-After.
type retryable struct {
	err   error
	now   bool
	after time.Duration
}

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

// verifyFinal reports whether a verified artifact is already in place;
// one that fails its sha256 (a disk fault) is removed and downloaded
// again.
func (r *download) verifyFinal() (bool, error) {
	f, err := os.Open(r.final)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ota: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err == nil && n == r.size && hex.EncodeToString(h.Sum(nil)) == r.sum {
		// A power cut between the rename and removing the state leaves
		// the state behind; it is stale now.
		if err := r.d.removePartial(r.sum); err != nil {
			return false, err
		}
		r.report(Progress{Offset: r.size, Size: r.size})
		return true, nil
	}
	if err := os.Remove(r.final); err != nil {
		return false, fmt.Errorf("ota: %w", err)
	}
	return false, nil
}

// open takes up where the persisted state left off. The state only ever
// claims bytes that were fsynced before it was written, so .part is
// normally at least that long; bytes past the offset were never counted
// and are cut off. A .part shorter than the offset means the filesystem
// lost fsynced data (a power cut on storage that lies about fsync): the
// download resumes from what .part still holds, marked spliced, and the
// final sha256 check decides; a spliced mismatch is retried once from
// zero before it is called ErrCorrupt. No usable state means zero.
func (r *download) open() error {
	f, err := os.OpenFile(r.part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	r.f = f
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	have := fi.Size()
	st, ok := r.readState()
	if !ok {
		st = DownloadState{Format: downloadStateFormat, URL: r.url, Size: r.size, SHA256: r.sum}
	}
	if st.URL != r.url {
		// The same bytes from elsewhere: the sha256 names them, but the
		// old validators mean nothing to the new server.
		st.URL, st.ETag, st.LastModified = r.url, "", ""
	}
	dirty := false
	if st.Offset > have {
		st.Offset, st.Spliced, dirty = have, true, true
	}
	r.st = st
	if have > st.Offset {
		if err := f.Truncate(st.Offset); err != nil {
			return fmt.Errorf("ota: %w", err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("ota: %w", err)
		}
	}
	if st.Offset > 0 {
		// Go on hashing where the last run stopped.
		if _, err := io.Copy(r.h, io.NewSectionReader(f, 0, st.Offset)); err != nil {
			if err := r.restart("", ""); err != nil {
				return err
			}
		}
	}
	if dirty {
		if err := r.persist(); err != nil {
			return err
		}
	}
	r.resumed = r.st.Offset > 0
	r.high = r.st.Offset
	return nil
}

// readState reads the persisted state; false if there is none or it is
// not for this artifact.
func (r *download) readState() (DownloadState, bool) {
	b, err := os.ReadFile(r.state)
	if err != nil {
		return DownloadState{}, false
	}
	var st DownloadState
	if json.Unmarshal(b, &st) != nil || st.Format != downloadStateFormat ||
		st.SHA256 != r.sum || st.Size != r.size || st.Offset < 0 || st.Offset > st.Size {
		return DownloadState{}, false
	}
	return st, true
}

func (r *download) persist() error {
	b, err := json.Marshal(r.st)
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	if err := atomicfile.Write(r.state, b, 0o644); err != nil {
		return fmt.Errorf("ota: download state of %s: %w", r.id, err)
	}
	return nil
}

// restart drops what .part holds and starts over from zero, with the
// validators of the response that will fill it. The state is persisted
// first: a power cut between the two leaves a .part longer than the
// offset, which open cuts off.
func (r *download) restart(etag, lastModified string) error {
	r.st.Offset, r.st.ETag, r.st.LastModified, r.st.Spliced = 0, etag, lastModified, false
	r.h.Reset()
	if err := r.persist(); err != nil {
		return err
	}
	if err := r.f.Truncate(0); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	return nil
}

func (r *download) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// run requests and retries until the artifact is complete, the server
// refuses it, the bytes are wrong, the tries run out or ctx ends.
func (r *download) run(ctx context.Context) (string, error) {
	attempts := r.d.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	backoff := wait.Backoff{Min: retryMin, Max: retryMax}
	r.began = r.d.now()
	r.beganOff = r.st.Offset
	r.report(Progress{Offset: r.st.Offset, Size: r.size, Resumed: r.resumed})
	fails := 0
	for {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("ota: download %s: %w", r.id, err)
		}
		if r.st.Offset == r.size {
			done, err := r.finish()
			if err != nil || done {
				return r.final, err
			}
			continue // a spliced mismatch: once more, whole
		}
		if err := r.gate(ctx); err != nil {
			return "", err
		}
		err := r.attempt(ctx)
		if err == nil || errors.Is(err, errPaused) {
			continue
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("ota: download %s: %w", r.id, ctx.Err())
		}
		var re *retryable
		if !errors.As(err, &re) {
			if errors.Is(err, ErrCorrupt) {
				r.close()
				if rerr := r.d.removePartial(r.sum); rerr != nil {
					return "", errors.Join(err, rerr)
				}
			}
			return "", err
		}
		if r.st.Offset > r.high {
			// New bytes: the link works, if badly; count and back off anew.
			r.high = r.st.Offset
			fails = 0
			backoff.Reset()
		} else {
			fails++
		}
		if fails >= attempts {
			return "", fmt.Errorf("ota: download %s: %w: %d tries without progress, the last: %w", r.id, ErrRetriesExhausted, fails, re.err)
		}
		if re.now {
			continue
		}
		delay := backoff.Next()
		if re.after > 0 {
			delay = max(delay, min(re.after, retryMax))
		}
		r.setWaiting(fmt.Sprintf("retry in %s: %v", delay.Round(time.Second), re.err))
		err = r.d.sleep(ctx, delay)
		r.setWaiting("")
		if err != nil {
			return "", fmt.Errorf("ota: download %s: %w", r.id, err)
		}
	}
}

// gate waits for the battery gate before a request.
func (r *download) gate(ctx context.Context) error {
	if r.d.Wait == nil {
		return nil
	}
	if r.d.Held != nil {
		if held, why := r.d.Held(); held {
			if why == "" {
				why = "held"
			}
			r.setWaiting(why)
			defer r.setWaiting("")
		}
	}
	if err := r.d.Wait(ctx); err != nil {
		return fmt.Errorf("ota: download %s: waiting: %w", r.id, err)
	}
	return nil
}

// attempt makes one request and writes what it brings. It returns nil
// when the response was read to its end, errPaused, a *retryable, or a
// fatal error.
func (r *download) attempt(ctx context.Context) error {
	stall := r.d.StallTimeout
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dog := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer dog.Stop()

	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, r.url, nil)
	if err != nil {
		return fmt.Errorf("ota: download %s: %w", r.id, err)
	}
	// Without this Go asks for gzip and unpacks it, and ranges and
	// lengths would count the wrong bytes.
	req.Header.Set("Accept-Encoding", "identity")
	ranged := r.st.Offset > 0 && !r.noRange
	if ranged {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", r.st.Offset))
		if v := r.st.validator(); v != "" {
			req.Header.Set("If-Range", v)
		}
	}
	client := r.d.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return r.requestErr(reqCtx, err, stall)
	}
	defer resp.Body.Close()
	want, err := r.accept(resp)
	if err != nil {
		return err
	}
	return r.copy(ctx, reqCtx, resp, want, dog, stall)
}

// requestErr sorts a failed request: a bad certificate is fatal, the
// rest is the link and worth another try.
func (r *download) requestErr(reqCtx context.Context, err error, stall time.Duration) error {
	var cert *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cert):
		return fmt.Errorf("ota: download %s: %w", r.id, err)
	case errors.Is(context.Cause(reqCtx), errStalled):
		return &retryable{err: fmt.Errorf("no answer in %s", stall)}
	}
	return &retryable{err: err}
}

// accept checks a response's status and headers against what was asked
// and returns how many bytes its body must bring, from st.Offset.
func (r *download) accept(resp *http.Response) (int64, error) {
	switch code := resp.StatusCode; {
	case code == http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		start, end, total, err := downloadParseContentRange(cr)
		if err == nil && total >= 0 && total != r.size {
			return 0, fmt.Errorf("ota: download %s: %w: the server has %d bytes, the manifest %d", r.id, ErrCorrupt, total, r.size)
		}
		if err != nil || start != r.st.Offset || end >= r.size ||
			(resp.ContentLength >= 0 && resp.ContentLength != end-start+1) {
			// A server or proxy that mangles ranges: take the whole file.
			why := fmt.Errorf("asked for bytes %d-, got Content-Range %q", r.st.Offset, cr)
			r.noRange = true
			if err := r.restart("", ""); err != nil {
				return 0, err
			}
			return 0, &retryable{err: why, now: true}
		}
		tag := resp.Header.Get("ETag")
		if r.st.ETag != "" && tag != "" && tag != r.st.ETag {
			// The file changed, yet the server ignored If-Range.
			if err := r.restart("", ""); err != nil {
				return 0, err
			}
			return 0, &retryable{err: fmt.Errorf("ETag changed from %s to %s", r.st.ETag, tag), now: true}
		}
		if r.st.ETag == "" && r.st.LastModified == "" {
			r.st.ETag, r.st.LastModified = tag, resp.Header.Get("Last-Modified")
		}
		if start > 0 {
			r.st.Spliced = true
		}
		return end - start + 1, nil
	case code == http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != r.size {
			return 0, fmt.Errorf("ota: download %s: %w: the server sends %d bytes, the manifest says %d", r.id, ErrCorrupt, resp.ContentLength, r.size)
		}
		// The whole file: a first request, a server that ignores Range,
		// or a validator that changed since.
		if err := r.restart(resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")); err != nil {
			return 0, err
		}
		return r.size, nil
	case code == http.StatusRequestedRangeNotSatisfiable:
		// Never asked with the offset at the size, so the server holds
		// fewer bytes than we do: start over; a wrong size shows then.
		if err := r.restart("", ""); err != nil {
			return 0, err
		}
		return 0, &retryable{err: errors.New(resp.Status), now: true}
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return 0, &retryable{err: errors.New(resp.Status), after: downloadRetryAfter(resp)}
	default:
		return 0, fmt.Errorf("ota: download %s: GET %s: %s: %w", r.id, r.url, resp.Status, ErrUnavailable)
	}
}

// copy reads want bytes of the body into .part, one chunk at a time,
// persisting the offset after each; between chunks it passes the gate.
func (r *download) copy(ctx, reqCtx context.Context, resp *http.Response, want int64, dog *time.Timer, stall time.Duration) error {
	chunk := r.d.ChunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	buf := make([]byte, chunk)
	var got int64
	for got < want {
		if got > 0 && r.d.Wait != nil {
			if r.d.Held != nil {
				if held, _ := r.d.Held(); held {
					return errPaused
				}
			}
			// Held or not, Wait may block: the watchdog is for the
			// server's silences, not the gate's.
			dog.Stop()
			err := r.d.Wait(ctx)
			dog.Reset(stall)
			if err != nil {
				return fmt.Errorf("ota: download %s: waiting: %w", r.id, err)
			}
		}
		n, rerr := r.read(ctx, resp.Body, buf[:min(int64(chunk), want-got)], dog, stall)
		if n > 0 {
			if err := r.commit(buf[:n]); err != nil {
				return err
			}
			got += int64(n)
		}
		switch {
		case rerr == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case got == want:
			// Everything asked for arrived; how the body ended is moot.
		case errors.Is(context.Cause(reqCtx), errStalled):
			return &retryable{err: fmt.Errorf("no data for %s after %d bytes", stall, r.st.Offset)}
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
			return &retryable{err: fmt.Errorf("response ended after %d of %d bytes", got, want)}
		default:
			return &retryable{err: rerr}
		}
	}
	if resp.ContentLength < 0 {
		// No length to stop the body: never accept past the size.
		var one [1]byte
		if n, _ := io.ReadFull(resp.Body, one[:]); n > 0 {
			return fmt.Errorf("ota: download %s: %w: the server sends more than %d bytes", r.id, ErrCorrupt, r.size)
		}
	}
	return nil
}

// read fills p from body, charging the rate cap as bytes arrive so the
// link sees a steady rate, not a chunk-sized burst and a pause.
func (r *download) read(ctx context.Context, body io.Reader, p []byte, dog *time.Timer, stall time.Duration) (int, error) {
	step := maxReadStep
	if rate := r.bucket.Rate(); rate > 0 {
		step = int(min(max(rate/4, 1024), maxReadStep))
	}
	got := 0
	for got < len(p) {
		n, err := body.Read(p[got:min(got+step, len(p))])
		got += n
		if n > 0 {
			dog.Reset(stall)
			r.tick(r.st.Offset + int64(got))
			if r.bucket != nil {
				dog.Stop()
				terr := r.bucket.Take(ctx, n)
				dog.Reset(stall)
				if terr != nil {
					return got, terr
				}
			}
		}
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// commit appends p to .part, fsyncs it, and only then persists the
// offset that counts it.
func (r *download) commit(p []byte) error {
	if _, err := r.f.WriteAt(p, r.st.Offset); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	r.h.Write(p)
	r.st.Offset += int64(len(p))
	return r.persist()
}

// finish checks the sha256 of the complete .part and moves it into place
// as the artifact. A mismatch of a .part spliced from several responses
// may be the splicing's fault (a validator that missed a change, lost
// data after a power cut), so it is downloaded once more, whole, before
// it is called corrupt.
func (r *download) finish() (bool, error) {
	got := hex.EncodeToString(r.h.Sum(nil))
	if got != r.sum {
		if r.st.Spliced && !r.wholeTried {
			r.wholeTried, r.noRange = true, true
			return false, r.restart("", "")
		}
		r.close()
		err := fmt.Errorf("ota: download %s: %w: its sha256 is %s", r.id, ErrCorrupt, got)
		if rerr := r.d.removePartial(r.sum); rerr != nil {
			return false, errors.Join(err, rerr)
		}
		return false, err
	}
	r.close()
	if err := os.Rename(r.part, r.final); err != nil {
		return false, fmt.Errorf("ota: %w", err)
	}
	if err := atomicfile.SyncDir(r.d.Dir); err != nil {
		return false, err
	}
	if err := r.d.removePartial(r.sum); err != nil {
		return false, err
	}
	bps := int64(0)
	if dt := r.d.now().Sub(r.began).Seconds(); dt > 0 {
		bps = int64(float64(r.size-r.beganOff) / dt)
	}
	r.report(Progress{Offset: r.size, Size: r.size, BytesPerSec: bps, Resumed: r.resumed})
	return true, nil
}

// tick reports progress at most about once a second.
func (r *download) tick(off int64) {
	if r.d.Progress == nil {
		return
	}
	now := r.d.now()
	dt := now.Sub(r.lastAt)
	if dt < progressEvery {
		return
	}
	bps := int64(float64(max(off-r.lastOff, 0)) / dt.Seconds())
	r.report(Progress{Offset: off, Size: r.size, BytesPerSec: bps, Resumed: r.resumed, Waiting: r.waiting})
}

func (r *download) setWaiting(why string) {
	if why == r.waiting {
		return
	}
	r.waiting = why
	r.report(Progress{Offset: r.st.Offset, Size: r.size, Resumed: r.resumed, Waiting: why})
}

func (r *download) report(p Progress) {
	r.lastAt, r.lastOff = r.d.now(), p.Offset
	if r.d.Progress != nil {
		r.d.Progress(p)
	}
}

// validator is what If-Range may carry: a strong ETag (a weak one is not
// allowed there), else the Last-Modified date.
func (s DownloadState) validator() string {
	if s.ETag != "" && !strings.HasPrefix(s.ETag, "W/") {
		return s.ETag
	}
	return s.LastModified
}

// downloadParseContentRange parses "bytes 100-199/1000"; total is -1 for
// "bytes 100-199/*".
func downloadParseContentRange(s string) (start, end, total int64, err error) {
	bad := fmt.Errorf("bad Content-Range %q", s)
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 {
		return 0, 0, 0, bad
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, bad
	}
	if tot == "*" {
		return start, end, -1, nil
	}
	if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
		return 0, 0, 0, bad
	}
	return start, end, total, nil
}

// downloadRetryAfter is a 503's or 429's Retry-After in seconds, or 0.
func downloadRetryAfter(resp *http.Response) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After")))
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

func downloadCheckSum(s string) (string, error) {
	s = strings.ToLower(s)
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("ota: sha256 %q is not 64 hex digits", s)
	}
	return s, nil
}

func downloadCheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("ota: download URL %q is not http(s)", s)
	}
	return nil
}
