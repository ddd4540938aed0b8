package transport

import (
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/microretail/kioskd/internal/testclock"
)

// noLeaks fails the test if it leaves goroutines behind. Tests that use it
// do not run in parallel.
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		var now int
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if now = runtime.NumGoroutine(); now <= before {
				return
			}
		}
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines: %d before, %d after:\n%s", before, now, buf[:runtime.Stack(buf, true)])
	})
}

func newClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
}

// readN reads n bytes from r within a generous real-time bound.
func readN(t *testing.T, r interface {
	io.Reader
	SetReadDeadline(time.Time) error
}, n int) []byte {
	t.Helper()
	if err := r.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}
