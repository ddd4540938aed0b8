package escpos

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/microretail/kioskd/internal/testclock"
)

// sleepLog is an injected clock that records how long the driver slept.
type sleepLog struct {
	*testclock.Clock
	total time.Duration
	hook  func()
}

func (s *sleepLog) Sleep(d time.Duration) {
	if d <= 0 {
		panic("slept for " + d.String())
	}
	s.total += d
	s.Clock.Sleep(d)
	if s.hook != nil {
		s.hook()
	}
}

func pacedDev(t *testing.T, e *Emulator, tm Timing) (*Dev, *sleepLog) {
	t.Helper()
	clk := &sleepLog{Clock: testclock.New(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC))}
	d, err := New(e, &Opts{Timeout: time.Second, Pace: &tm, Sleep: clk.Sleep, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return d, clk
}

func TestByteTime(t *testing.T) {
	for baud, want := range map[int]time.Duration{9600: 1146 * time.Microsecond, 19200: 573 * time.Microsecond, 115200: 95 * time.Microsecond, 0: 0} {
		if got := DefaultTiming(baud).ByteTime(); got != want {
			t.Errorf("%d baud: %v, want %v", baud, got, want)
		}
	}
}

// TestPacing prints a known receipt and checks the time slept against the
// Timing formulas worked out by hand.
func TestPacing(t *testing.T) {
	tm := DefaultTiming(19200) // 573 µs a byte, 30 ms a printed and 2.1 ms a fed dot row
	e := NewEmulator(Paper58)
	d, clk := pacedDev(t, e, tm)
	if clk.total != 0 {
		t.Fatalf("New slept %v", clk.total)
	}

	enc := NewEncoder()
	enc.Init()
	enc.Line("hello")                      // text line: 24×30 ms + 6×2.1 ms
	enc.Line("")                           // empty line: (24+6)×2.1 ms
	enc.Line(strings.Repeat("w", 40))      // wraps after 32: two text lines
	enc.Feed(2)                            // two empty lines
	enc.Image(checkered(8, 300))           // 300 rows × 30 ms
	enc.Size(1, 2)                         //
	enc.Line("big")                        // 48×30 ms + 6×2.1 ms
	enc.EAN13("4006381333931")             // (80 + 40) × 30 ms
	enc.QRCode("kioskd", QR{ECC: ECCHigh}) // version 1: 6 × 21 rows × 30 ms
	enc.Cut(true)                          // GS V 66 0: no extra feed
	job := enc.Bytes()

	const (
		text  = 24*30*time.Millisecond + 6*2100*time.Microsecond
		empty = (24 + 6) * 2100 * time.Microsecond
	)
	want := time.Duration(len(job))*573*time.Microsecond +
		text + empty + 2*text + 2*empty + 300*30*time.Millisecond +
		(48*30*time.Millisecond + 6*2100*time.Microsecond) + 120*30*time.Millisecond + 6*21*30*time.Millisecond

	if err := d.Print(job); err != nil {
		t.Fatal(err)
	}
	if clk.total != want {
		t.Errorf("slept %v, want %v", clk.total, want)
	}
	if r := e.Receipts(); len(r) != 1 || !r[0].Cut || r[0].Job != "kioskd" {
		t.Errorf("receipts %+v", r)
	}

	// The modes carry over to the next job: height 2 still.
	clk.total = 0
	if err := d.Print([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if want := 2*573*time.Microsecond + 48*30*time.Millisecond + 6*2100*time.Microsecond; clk.total != want {
		t.Errorf("second job slept %v, want %v", clk.total, want)
	}
}

func TestPacingSpacing(t *testing.T) {
	tm := Timing{Baud: 115200, DotPrint: time.Millisecond, DotFeed: 100 * time.Microsecond, CharHeight: 24, LineSpacing: 6, Columns: 48}
	tests := []struct {
		name string
		job  []byte
		want time.Duration // beyond the bytes
	}{
		{"ESC 3 40", []byte("\x1b3\x28a\n"), 24*time.Millisecond + 16*100*time.Microsecond},
		{"ESC 3 10, tall text", []byte("\x1b3\x0aa\n"), 24 * time.Millisecond},
		{"ESC 2 again", []byte("\x1b3\x0a\x1b2a\n"), 24*time.Millisecond + 6*100*time.Microsecond},
		{"ESC J 50", []byte("a\x1bJ\x32"), 24*time.Millisecond + 50*100*time.Microsecond},
		{"ESC d 0", []byte("a\x1bd\x00"), 24 * time.Millisecond},
		{"ESC d 3", []byte("a\x1bd\x03"), 24*time.Millisecond + 6*100*time.Microsecond + 2*30*100*time.Microsecond},
		{"GS V 65 n", []byte("\x1dV\x41\x20"), 32 * 100 * time.Microsecond},
		{"ESC @ resets size", []byte("\x1d!\x11\x1b@a\n"), 24*time.Millisecond + 6*100*time.Microsecond},
		{"truncated command", []byte("a\n\x1d(k\x09\x00"), 24*time.Millisecond + 6*100*time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEmulator(Paper80)
			d, clk := pacedDev(t, e, tm)
			if err := d.Print(tt.job); err != nil {
				t.Fatal(err)
			}
			if want := tt.want + time.Duration(len(tt.job))*tm.ByteTime(); clk.total != want {
				t.Errorf("slept %v, want %v", clk.total, want)
			}
		})
	}
}

func TestPacingHalt(t *testing.T) {
	e := NewEmulator(Paper58)
	d, clk := pacedDev(t, e, DefaultTiming(9600))
	done := make(chan struct{})
	clk.hook = func() {
		clk.hook = nil
		go func() {
			d.Halt()
			close(done)
		}()
		for !d.halted.Load() {
			time.Sleep(time.Millisecond)
		}
	}
	enc := NewEncoder()
	for range 20 {
		enc.Line("a line that takes most of a second to print")
	}
	if err := d.Print(enc.Bytes()); !errors.Is(err, ErrHalted) {
		t.Errorf("Print: %v, want ErrHalted", err)
	}
	<-done
	if clk.total > time.Second {
		t.Errorf("kept pacing for %v after Halt", clk.total)
	}
}

func TestPacingOpts(t *testing.T) {
	for _, tm := range []Timing{{}, {Baud: 9600}, {Baud: 9600, CharHeight: 24}} {
		if _, err := New(NewEmulator(Paper58), &Opts{Pace: &tm}); err == nil {
			t.Errorf("%+v: no error", tm)
		}
	}
}
