package ota

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microretail/kioskd/firmware/power"
	"github.com/microretail/kioskd/internal/testclock"
)

const (
	dlTestSize  = 64 << 10
	dlTestChunk = 4 << 10
)

// artifactServer serves one artifact the way a CDN does (Range, If-Range,
// ETag, Last-Modified, 416), with knobs for the ways servers go wrong,
// and records what it was asked.
type artifactServer struct {
	*httptest.Server

	mu           sync.Mutex
	body         []byte
	etag         string
	lastModified string
	ignoreRange  bool // answer every request with 200 and the whole file
	ignoreIfRng  bool // serve the range even when If-Range does not match
	// drops[i] closes the connection of request i once the absolute
	// offset drops[i] is written; 0 serves in full.
	drops []int64
	// hook, if it returns true, has answered request i itself.
	hook func(i int, w http.ResponseWriter, r *http.Request) bool

	ranges   []string // Range of each request
	ifRanges []string
	statuses []int
	served   int64
}

func newArtifactServer(t *testing.T, body []byte) *artifactServer {
	t.Helper()
	s := &artifactServer{body: body, etag: `"v1"`, lastModified: "Mon, 01 Dec 2025 10:00:00 GMT"}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *artifactServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.ranges)
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.ifRanges = append(s.ifRanges, r.Header.Get("If-Range"))
	s.statuses = append(s.statuses, 0)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil && hook(i, w, r) {
		return
	}
	s.mu.Lock()
	body, etag, lm := s.body, s.etag, s.lastModified
	drop := int64(0)
	if i < len(s.drops) {
		drop = s.drops[i]
	}
	s.mu.Unlock()
	size := int64(len(body))
	status, start := http.StatusOK, int64(0)
	rng, ifr := r.Header.Get("Range"), r.Header.Get("If-Range")
	fresh := ifr == "" || ifr == etag || ifr == lm || s.ignoreIfRng
	if rng != "" && fresh && !s.ignoreRange {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"), 10, 64)
		if err != nil || n >= size {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			s.answer(i, w, http.StatusRequestedRangeNotSatisfiable)
			return
		}
		status, start = http.StatusPartialContent, n
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, size-1, size))
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Last-Modified", lm)
	w.Header().Set("Content-Length", strconv.FormatInt(size-start, 10))
	s.answer(i, w, status)
	end := size
	if drop > start && drop < size {
		end = drop
	}
	n, _ := w.Write(body[start:end])
	s.mu.Lock()
	s.served += int64(n)
	s.mu.Unlock()
	if end < size {
		dlHangUp(w)
	}
}

func (s *artifactServer) answer(i int, w http.ResponseWriter, status int) {
	s.mu.Lock()
	s.statuses[i] = status
	s.mu.Unlock()
	w.WriteHeader(status)
}

// dlHangUp flushes what was written and closes the connection under the
// response, like a cellular link that drops.
func dlHangUp(w http.ResponseWriter) {
	w.(http.Flusher).Flush()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func (s *artifactServer) log() (ranges, ifRanges []string, statuses []int, served int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ranges), slices.Clone(s.ifRanges), slices.Clone(s.statuses), s.served
}

func (s *artifactServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ranges)
}

// dlArtifact is size reproducible random bytes and their sha256.
func dlArtifact(size int) ([]byte, string) {
	b := make([]byte, size)
	r := rand.NewChaCha8([32]byte{'o', 't', 'a'})
	_, _ = r.Read(b)
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

// dlSleeps is a Sleep that takes no time and remembers what it was asked.
type dlSleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *dlSleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *dlSleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.d)
}

// progressLog collects Progress reports, safe to read while Fetch runs.
type progressLog struct {
	mu  sync.Mutex
	p   []Progress
	hit func(Progress)
}

func (l *progressLog) add(p Progress) {
	l.mu.Lock()
	l.p = append(l.p, p)
	hit := l.hit
	l.mu.Unlock()
	if hit != nil {
		hit(p)
	}
}

func (l *progressLog) all() []Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.p)
}

// newTestDownloader is a Downloader on dir with small chunks, a fake
// clock and a Sleep that takes no time.
func newTestDownloader(dir string) (*Downloader, *dlSleeps, *progressLog) {
	sl, pl := &dlSleeps{}, &progressLog{}
	clock := testclock.New(time.Date(2025, 12, 1, 10, 0, 0, 0, time.UTC))
	return &Downloader{
		Dir:       dir,
		ChunkSize: dlTestChunk,
		Clock:     clock.Now,
		Sleep:     sl.sleep,
		Progress:  pl.add,
	}, sl, pl
}

// dlCheckDone checks that Fetch returned the artifact, with the right
// bytes, and left nothing else in dir.
func dlCheckDone(t *testing.T, dir, path string, err error, want []byte, sum string) {
	t.Helper()
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if wantPath := filepath.Join(dir, sum+".artifact"); path != wantPath {
		t.Errorf("path = %s, want %s", path, wantPath)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("artifact differs from what was served (%d bytes, want %d)", len(got), len(want))
	}
	if names := dlDirNames(t, dir); !slices.Equal(names, []string{sum + ".artifact"}) {
		t.Errorf("dir holds %v, want only the artifact", names)
	}
}

// dlCheckEmpty checks that a failed Fetch left nothing behind.
func dlCheckEmpty(t *testing.T, dir string) {
	t.Helper()
	if names := dlDirNames(t, dir); len(names) != 0 {
		t.Errorf("dir holds %v, want nothing", names)
	}
}

func dlDirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// dlInterrupt runs a Fetch that is stopped, as by a kioskd restart, once
// chunks chunks are persisted, and returns the persisted offset.
func dlInterrupt(t *testing.T, srv *artifactServer, dir string, sum string, chunks int) int64 {
	t.Helper()
	d, _, _ := newTestDownloader(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	d.Wait = func(ctx context.Context) error {
		// Called before the request, then after each chunk.
		if calls++; calls > chunks {
			cancel()
		}
		return ctx.Err()
	}
	_, err := d.Fetch(ctx, srv.URL, dlTestSize, sum)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Fetch: %v, want context.Canceled", err)
	}
	st, err := d.State(sum)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(chunks * dlTestChunk); st.Offset != want {
		t.Fatalf("persisted offset %d, want %d", st.Offset, want)
	}
	return st.Offset
}

func TestDownloadHappyPath(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	dir := t.TempDir()
	d, sleeps, progress := newTestDownloader(dir)
	path, err := d.Fetch(context.Background(), srv.URL+"/kioskd-1.4.0", dlTestSize, strings.ToUpper(sum))
	dlCheckDone(t, dir, path, err, body, sum)
	ranges, _, statuses, served := srv.log()
	if !slices.Equal(ranges, []string{""}) || !slices.Equal(statuses, []int{200}) || served != dlTestSize {
		t.Errorf("server saw ranges %q statuses %v served %d; want one whole GET", ranges, statuses, served)
	}
	if s := sleeps.all(); len(s) != 0 {
		t.Errorf("slept %v on a clean download", s)
	}
	ps := progress.all()
	if len(ps) < 2 || ps[0] != (Progress{Size: dlTestSize}) || ps[len(ps)-1].Offset != dlTestSize {
		t.Errorf("progress %+v: want a start at 0 and an end at the size", ps)
	}

	// A second Fetch finds the artifact and asks nothing.
	path2, err := d.Fetch(context.Background(), srv.URL+"/kioskd-1.4.0", dlTestSize, sum)
	if err != nil || path2 != path || srv.requests() != 1 {
		t.Errorf("second Fetch: %s, %v, %d requests; want the same path without a request", path2, err, srv.requests())
	}
}

func TestDownloadResumesAfterDrops(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	srv.drops = []int64{10000, 30001, 30002, 50000}
	dir := t.TempDir()
	d, sleeps, _ := newTestDownloader(dir)
	path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
	dlCheckDone(t, dir, path, err, body, sum)
	ranges, ifRanges, statuses, served := srv.log()
	wantRanges := []string{"", "bytes=10000-", "bytes=30001-", "bytes=30002-", "bytes=50000-"}
	if !slices.Equal(ranges, wantRanges) {
		t.Errorf("ranges %q, want %q", ranges, wantRanges)
	}
	for i, ir := range ifRanges[1:] {
		if ir != `"v1"` {
			t.Errorf("request %d If-Range %q, want the ETag", i+1, ir)
		}
	}
	if !slices.Equal(statuses, []int{200, 206, 206, 206, 206}) {
		t.Errorf("statuses %v", statuses)
	}
	if served != dlTestSize {
		t.Errorf("served %d bytes for %d: bytes were fetched twice", served, dlTestSize)
	}
	// Every drop made progress, so every backoff is the first step's.
	for _, s := range sleeps.all() {
		if s < retryMin/2 || s > retryMin {
			t.Errorf("backoff %s after a drop that made progress, want %s..%s", s, retryMin/2, retryMin)
		}
	}
}

func TestDownloadResumesAfterRestart(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	dir := t.TempDir()
	off := dlInterrupt(t, srv, dir, sum, 5)

	// A new Downloader, as after a kioskd restart.
	d, _, progress := newTestDownloader(dir)
	path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
	dlCheckDone(t, dir, path, err, body, sum)
	ranges, _, _, served := srv.log()
	if want := fmt.Sprintf("bytes=%d-", off); len(ranges) != 2 || ranges[1] != want || off == 0 {
		t.Errorf("ranges %q, want the second to be %q", ranges, want)
	}
	if served >= 2*dlTestSize {
		t.Errorf("served %d bytes for a %d-byte artifact", served, dlTestSize)
	}
	if p := progress.all()[0]; !p.Resumed || p.Offset != off {
		t.Errorf("first progress %+v, want Resumed at %d", p, off)
	}
}

func TestDownloadRestartsFromZero(t *testing.T) {
	tests := []struct {
		name      string
		set       func(s *artifactServer)
		statuses  []int
		wantServe int64
	}{
		{"server ignores Range", func(s *artifactServer) { s.ignoreRange = true }, []int{200, 200}, 20000 + dlTestSize},
		{"ETag changed", func(s *artifactServer) {
			s.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
				if i == 1 {
					s.mu.Lock()
					s.etag, s.lastModified = `"v2"`, "Tue, 02 Dec 2025 10:00:00 GMT"
					s.mu.Unlock()
				}
				return false
			}
		}, []int{200, 200}, 20000 + dlTestSize},
		{"ETag changed, If-Range ignored", func(s *artifactServer) {
			s.ignoreIfRng = true
			s.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
				if i == 1 {
					s.mu.Lock()
					s.etag = `"v2"`
					s.mu.Unlock()
				}
				return false
			}
		}, []int{200, 206, 200}, 0},
		{"416 below the size", func(s *artifactServer) {
			s.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
				if i != 1 {
					return false
				}
				s.answer(i, w, http.StatusRequestedRangeNotSatisfiable)
				return true
			}
		}, []int{200, 416, 200}, 20000 + dlTestSize},
		{"Content-Range from the wrong start", func(s *artifactServer) {
			s.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
				if i != 1 {
					return false
				}
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", dlTestSize-1, dlTestSize))
				w.Header().Set("Content-Length", strconv.Itoa(dlTestSize))
				s.answer(i, w, http.StatusPartialContent)
				_, _ = w.Write(s.body)
				return true
			}
		}, []int{200, 206, 200}, 20000 + dlTestSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, sum := dlArtifact(dlTestSize)
			srv := newArtifactServer(t, body)
			srv.drops = []int64{20000}
			tt.set(srv)
			dir := t.TempDir()
			d, _, _ := newTestDownloader(dir)
			path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
			dlCheckDone(t, dir, path, err, body, sum)
			ranges, _, statuses, served := srv.log()
			if !slices.Equal(statuses, tt.statuses) {
				t.Errorf("statuses %v, want %v (ranges %q)", statuses, tt.statuses, ranges)
			}
			if ranges[1] != "bytes=20000-" {
				t.Errorf("ranges %q: want a resume from 20000", ranges)
			}
			if tt.wantServe != 0 && served != tt.wantServe {
				t.Errorf("served %d, want %d", served, tt.wantServe)
			}
		})
	}
}

func TestDownloadRefusesWrongBytes(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	bad := slices.Clone(body)
	bad[dlTestSize/2] ^= 0x40
	tests := []struct {
		name string
		set  func(s *artifactServer)
		reqs int
		msg  string
	}{
		{"corrupted payload", func(s *artifactServer) { s.body = bad }, 1, "its sha256 is"},
		{"corrupted, resumed after a drop", func(s *artifactServer) {
			// Resumed and whole downloads are both wrong: ErrCorrupt after
			// the one whole retry.
			s.body, s.drops = bad, []int64{20000}
		}, 3, "its sha256 is"},
		{"Content-Length above the size", func(s *artifactServer) {
			s.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("Content-Length", strconv.Itoa(dlTestSize+1))
				s.answer(i, w, http.StatusOK)
				_, _ = w.Write(append(slices.Clone(body), 0))
				return true
			}
		}, 1, "the server sends 65537 bytes"},
		{"chunked body past the size", func(s *artifactServer) {
			s.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
				s.answer(i, w, http.StatusOK)
				w.(http.Flusher).Flush() // no Content-Length: chunked
				_, _ = w.Write(body)
				_, _ = w.Write(make([]byte, 10))
				return true
			}
		}, 1, "more than 65536 bytes"},
		{"Content-Range total differs", func(s *artifactServer) {
			s.drops = []int64{20000}
			s.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
				if i != 1 {
					return false
				}
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 20000-%d/%d", dlTestSize-1, dlTestSize+100))
				s.answer(i, w, http.StatusPartialContent)
				_, _ = w.Write(body[20000:])
				return true
			}
		}, 2, "the server has 65636 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newArtifactServer(t, body)
			tt.set(srv)
			dir := t.TempDir()
			d, _, _ := newTestDownloader(dir)
			_, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Fetch: %v, want ErrCorrupt", err)
			}
			if !strings.HasPrefix(err.Error(), "ota: ") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q: want the ota: prefix and %q", err, tt.msg)
			}
			dlCheckEmpty(t, dir)
			if n := srv.requests(); n != tt.reqs {
				t.Errorf("%d requests, want %d", n, tt.reqs)
			}
		})
	}
}

// A proxy that mangles ranged responses: the spliced file fails its
// sha256, one whole download fixes it, and it is not called corrupt.
func TestDownloadSplicedMismatchRetriesWhole(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	srv.drops = []int64{20000}
	srv.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Range") == "" {
			return false
		}
		bad := slices.Clone(body[20000:])
		bad[100] ^= 1
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 20000-%d/%d", dlTestSize-1, dlTestSize))
		w.Header().Set("ETag", `"v1"`)
		srv.answer(i, w, http.StatusPartialContent)
		_, _ = w.Write(bad)
		return true
	}
	dir := t.TempDir()
	d, _, _ := newTestDownloader(dir)
	path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
	dlCheckDone(t, dir, path, err, body, sum)
	if ranges, _, _, _ := srv.log(); !slices.Equal(ranges, []string{"", "bytes=20000-", ""}) {
		t.Errorf("ranges %q, want a resume then one whole download", ranges)
	}
}

func TestDownloadRefusedStatusIsNotRetried(t *testing.T) {
	for _, code := range []int{http.StatusNotFound, http.StatusForbidden, http.StatusGone} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			body, sum := dlArtifact(dlTestSize)
			srv := newArtifactServer(t, body)
			srv.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
				srv.answer(i, w, code)
				return true
			}
			dir := t.TempDir()
			d, sleeps, _ := newTestDownloader(dir)
			_, err := d.Fetch(context.Background(), srv.URL+"/missing", dlTestSize, sum)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), strconv.Itoa(code)) {
				t.Fatalf("Fetch: %v, want ErrUnavailable naming %d", err, code)
			}
			if n := srv.requests(); n != 1 || len(sleeps.all()) != 0 {
				t.Errorf("%d requests and sleeps %v, want one request and no retry", n, sleeps.all())
			}
		})
	}
}

func TestDownloadRetriesServerErrors(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	srv.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
		switch i {
		case 0:
			srv.answer(i, w, http.StatusBadGateway)
		case 1:
			w.Header().Set("Retry-After", "7")
			srv.answer(i, w, http.StatusServiceUnavailable)
		default:
			return false
		}
		return true
	}
	dir := t.TempDir()
	d, sleeps, progress := newTestDownloader(dir)
	path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
	dlCheckDone(t, dir, path, err, body, sum)
	s := sleeps.all()
	if len(s) != 2 || s[0] < retryMin/2 || s[0] > retryMin || s[1] != 7*time.Second {
		t.Errorf("sleeps %v, want a first backoff then the Retry-After of 7s", s)
	}
	var waited bool
	for _, p := range progress.all() {
		waited = waited || strings.HasPrefix(p.Waiting, "retry in 7s: 503")
	}
	if !waited {
		t.Errorf("no progress said it was waiting to retry: %+v", progress.all())
	}
}

func TestDownloadGivesUp(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	srv.drops = []int64{8192}
	srv.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
		if i == 0 {
			return false
		}
		srv.answer(i, w, http.StatusInternalServerError)
		return true
	}
	dir := t.TempDir()
	d, sleeps, _ := newTestDownloader(dir)
	d.Attempts = 5
	_, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
	if !errors.Is(err, ErrRetriesExhausted) || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Fetch: %v, want ErrRetriesExhausted with the last error", err)
	}
	// The drop made progress; then 5 tries without.
	if n := srv.requests(); n != 1+5 {
		t.Errorf("%d requests, want 6", n)
	}
	s := sleeps.all()
	if len(s) != 5 {
		t.Errorf("sleeps %v, want 5: after the drop and after each 500 but the last", s)
	}
	for i := 1; i < len(s); i++ {
		lo, hi := retryMin<<i/2, retryMin<<i
		if s[i] < lo || s[i] > hi {
			t.Errorf("backoff %d is %s, want %s..%s (all: %v)", i, s[i], lo, hi, s)
		}
	}
	// What arrived is kept for the next try.
	if st, err := d.State(sum); err != nil || st.Offset != 8192 {
		t.Errorf("state %+v, %v: want the 8192 bytes kept", st, err)
	}
}

// A server that stops sending without closing: the stall watchdog ends
// the request and the download resumes.
func TestDownloadStall(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	srv.hook = func(i int, w http.ResponseWriter, r *http.Request) bool {
		if i != 0 {
			return false
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Length", strconv.Itoa(dlTestSize))
		srv.answer(i, w, http.StatusOK)
		_, _ = w.Write(body[:12345])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return true
	}
	dir := t.TempDir()
	d, _, _ := newTestDownloader(dir)
	d.StallTimeout = 100 * time.Millisecond
	path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
	dlCheckDone(t, dir, path, err, body, sum)
	if ranges, _, _, _ := srv.log(); !slices.Equal(ranges, []string{"", "bytes=12345-"}) {
		t.Errorf("ranges %q", ranges)
	}
}

func TestDownloadGate(t *testing.T) {
	t.Run("held before the start", func(t *testing.T) {
		body, sum := dlArtifact(dlTestSize)
		srv := newArtifactServer(t, body)
		var gate power.Gate
		gate.Hold("low battery")
		dir := t.TempDir()
		d, _, progress := newTestDownloader(dir)
		d.Wait, d.Held = gate.Wait, gate.Held
		waiting := make(chan struct{}, 1)
		progress.hit = func(p Progress) {
			if p.Waiting == "low battery" {
				waiting <- struct{}{}
			}
		}
		done := make(chan error, 1)
		go func() {
			_, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
			done <- err
		}()
		<-waiting
		if n := srv.requests(); n != 0 {
			t.Fatalf("%d requests while the gate is held", n)
		}
		gate.Release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if srv.requests() != 1 {
			t.Errorf("%d requests", srv.requests())
		}
	})

	t.Run("held between chunks", func(t *testing.T) {
		body, sum := dlArtifact(dlTestSize)
		srv := newArtifactServer(t, body)
		var gate power.Gate
		dir := t.TempDir()
		d, _, progress := newTestDownloader(dir)
		calls := 0
		d.Wait = gate.Wait
		d.Held = func() (bool, string) {
			// 1: before the request; 2: after the first chunk.
			if calls++; calls == 2 {
				gate.Hold("low battery")
			}
			return gate.Held()
		}
		waiting := make(chan struct{}, 1)
		progress.hit = func(p Progress) {
			if p.Waiting == "low battery" {
				waiting <- struct{}{}
			}
		}
		done := make(chan error, 1)
		go func() {
			_, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
			done <- err
		}()
		<-waiting
		st, err := d.State(sum)
		if err != nil || st.Offset != dlTestChunk {
			t.Fatalf("state while held: %+v, %v; want one chunk", st, err)
		}
		if n := srv.requests(); n != 1 {
			t.Fatalf("%d requests while held", n)
		}
		gate.Release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if ranges, _, _, _ := srv.log(); !slices.Equal(ranges, []string{"", fmt.Sprintf("bytes=%d-", dlTestChunk)}) {
			t.Errorf("ranges %q: want the held connection closed and resumed", ranges)
		}
	})

	t.Run("ctx ends while held", func(t *testing.T) {
		body, sum := dlArtifact(dlTestSize)
		srv := newArtifactServer(t, body)
		var gate power.Gate
		gate.Hold("low battery")
		d, _, _ := newTestDownloader(t.TempDir())
		d.Wait = gate.Wait
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := d.Fetch(ctx, srv.URL, dlTestSize, sum)
		if !errors.Is(err, context.DeadlineExceeded) || srv.requests() != 0 {
			t.Errorf("Fetch: %v after %d requests; want the deadline and none", err, srv.requests())
		}
	})
}

func TestDownloadRateLimit(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	dir := t.TempDir()
	d, _, progress := newTestDownloader(dir)
	clock := testclock.New(time.Date(2025, 12, 1, 10, 0, 0, 0, time.UTC))
	start := clock.Now()
	d.Clock = clock.Now
	d.Sleep = func(ctx context.Context, dt time.Duration) error { clock.Sleep(dt); return ctx.Err() }
	const rate = 8 << 10
	d.RateBytesPerSec = rate
	path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
	dlCheckDone(t, dir, path, err, body, sum)
	want := time.Duration(dlTestSize) * time.Second / rate
	if got := clock.Now().Sub(start); got < want-time.Millisecond || got > want+time.Millisecond {
		t.Errorf("%d bytes at %d B/s took %s of fake time, want %s", dlTestSize, rate, got, want)
	}
	ps := progress.all()
	if end := ps[len(ps)-1]; end.BytesPerSec < rate*99/100 || end.BytesPerSec > rate {
		t.Errorf("final rate %d B/s, want about %d", end.BytesPerSec, rate)
	}
	// Start, end, and at most one a second between.
	if mid := len(ps) - 2; mid > int(want/time.Second)+1 || mid < int(want/time.Second)/2 {
		t.Errorf("%d progress reports during %s", mid, want)
	}
}

// Power cuts leave the files in states a clean stop never does; each
// resumes from what the disk really holds.
func TestDownloadPowerCut(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	tests := []struct {
		name   string
		cut    func(t *testing.T, dir string)
		ranges []string // after the interrupted run's one request
	}{
		{"part shorter than the offset", func(t *testing.T, dir string) {
			// The page cache lost bytes the state counts.
			dlTruncate(t, filepath.Join(dir, sum+".part"), 10000)
		}, []string{"bytes=10000-"}},
		{"part shorter, and its tail garbage", func(t *testing.T, dir string) {
			p := filepath.Join(dir, sum+".part")
			dlTruncate(t, p, 10000)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteAt(make([]byte, 500), 9500)
			f.Close()
			// Spliced and wrong: downloaded once more, whole.
		}, []string{"bytes=10000-", ""}},
		{"part longer than the offset", func(t *testing.T, dir string) {
			// Bytes written, offset not yet persisted.
			f, err := os.OpenFile(filepath.Join(dir, sum+".part"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.Write(bytes.Repeat([]byte{0xee}, 3000))
			f.Close()
		}, []string{"bytes=16384-"}},
		{"part lost", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, sum+".part")); err != nil {
				t.Fatal(err)
			}
		}, []string{""}},
		{"state lost", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, sum+".json")); err != nil {
				t.Fatal(err)
			}
		}, []string{""}},
		{"state unreadable", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, sum+".json"), []byte(`{"format":1,"off`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{""}},
		{"state from a future format", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, sum+".json"), []byte(`{"format":2}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{""}},
		{"temp state file left over", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "."+sum+".json.123"), []byte(`{`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"bytes=16384-"}},
		{"complete, not yet renamed", func(t *testing.T, dir string) {
			dlWriteState(t, dir, sum, body, dlTestSize)
		}, nil},
		{"renamed, state not yet removed", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, sum+".artifact"), body, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, sum+".part")); err != nil {
				t.Fatal(err)
			}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newArtifactServer(t, body)
			dir := t.TempDir()
			dlInterrupt(t, srv, dir, sum, 4)
			tt.cut(t, dir)
			d, _, _ := newTestDownloader(dir)
			path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
			dlCheckDone(t, dir, path, err, body, sum)
			ranges, _, _, _ := srv.log()
			if got := ranges[1:]; !slices.Equal(got, tt.ranges) {
				t.Errorf("ranges after the cut %q, want %q", got, tt.ranges)
			}
		})
	}
}

func dlTruncate(t *testing.T, path string, n int64) {
	t.Helper()
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
}

// dlWriteState puts a complete .part and its state in dir, as a power cut
// just before the rename leaves them.
func dlWriteState(t *testing.T, dir, sum string, body []byte, off int64) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, sum+".part"), body[:off], 0o644); err != nil {
		t.Fatal(err)
	}
	st := fmt.Sprintf(`{"format":1,"url":"http://x/","size":%d,"sha256":%q,"offset":%d}`, len(body), sum, off)
	if err := os.WriteFile(filepath.Join(dir, sum+".json"), []byte(st), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDownloadReplacesDamagedArtifact(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, sum+".artifact"), body[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	d, _, _ := newTestDownloader(dir)
	path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
	dlCheckDone(t, dir, path, err, body, sum)
	if srv.requests() != 1 {
		t.Errorf("%d requests, want the artifact fetched again", srv.requests())
	}
}

func TestDownloadDiscard(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	dir := t.TempDir()
	dlInterrupt(t, srv, dir, sum, 3)
	if err := os.WriteFile(filepath.Join(dir, "."+sum+".json.42"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, _, _ := newTestDownloader(dir)
	if err := d.Discard(sum); err != nil {
		t.Fatal(err)
	}
	dlCheckEmpty(t, dir)
	if _, err := d.State(sum); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("State after Discard: %v, want fs.ErrNotExist", err)
	}
	if err := d.Discard(sum); err != nil {
		t.Errorf("second Discard: %v", err)
	}
	path, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
	dlCheckDone(t, dir, path, err, body, sum)
	if ranges, _, _, _ := srv.log(); ranges[len(ranges)-1] != "" {
		t.Errorf("ranges %q: want a fresh start after Discard", ranges)
	}
}

func TestDownloadOneFetchPerArtifact(t *testing.T) {
	body, sum := dlArtifact(dlTestSize)
	srv := newArtifactServer(t, body)
	var gate power.Gate
	gate.Hold("test")
	d, _, progress := newTestDownloader(t.TempDir())
	d.Wait, d.Held = gate.Wait, gate.Held
	waiting := make(chan struct{}, 1)
	progress.hit = func(p Progress) {
		if p.Waiting != "" {
			waiting <- struct{}{}
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum)
		done <- err
	}()
	<-waiting
	if _, err := d.Fetch(context.Background(), srv.URL, dlTestSize, sum); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Fetch: %v, want already running", err)
	}
	if err := d.Discard(sum); err == nil {
		t.Error("Discard during a Fetch succeeded")
	}
	gate.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestDownloadRefusesBadArguments(t *testing.T) {
	_, sum := dlArtifact(16)
	tests := []struct {
		name string
		d    *Downloader
		url  string
		size int64
		sum  string
	}{
		{"short sha256", &Downloader{Dir: "x"}, "http://h/a", 1, sum[:10]},
		{"not hex", &Downloader{Dir: "x"}, "http://h/a", 1, strings.Repeat("zz", 32)},
		{"ftp", &Downloader{Dir: "x"}, "ftp://h/a", 1, sum},
		{"no host", &Downloader{Dir: "x"}, "http:///a", 1, sum},
		{"zero size", &Downloader{Dir: "x"}, "http://h/a", 0, sum},
		{"no Dir", &Downloader{}, "http://h/a", 1, sum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.d.Fetch(context.Background(), tt.url, tt.size, tt.sum)
			if err == nil || !strings.HasPrefix(err.Error(), "ota: ") {
				t.Errorf("Fetch: %v, want an ota: error", err)
			}
		})
	}
}

func TestDownloadParseContentRange(t *testing.T) {
	tests := []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{"bytes 0-99/100", 0, 99, 100, true},
		{"bytes 100-199/*", 100, 199, -1, true},
		{"bytes 5-5/6", 5, 5, 6, true},
		{"bytes 10-5/100", 0, 0, 0, false},
		{"bytes 0-99/99", 0, 0, 0, false},
		{"bytes -1-99/100", 0, 0, 0, false},
		{"bytes */100", 0, 0, 0, false},
		{"items 0-99/100", 0, 0, 0, false},
		{"bytes 0-99", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tt := range tests {
		start, end, total, err := downloadParseContentRange(tt.in)
		if (err == nil) != tt.ok || start != tt.start || end != tt.end || total != tt.total {
			t.Errorf("%q: %d %d %d %v", tt.in, start, end, total, err)
		}
	}
}
