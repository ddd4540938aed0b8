package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microretail/kioskd/drivers/barcode"
	"github.com/microretail/kioskd/internal/testclock"
	"github.com/microretail/kioskd/internal/wait"
	"github.com/rs/zerolog"
)

const sentinel = "END-0000"

// scans collects what a Source emits.
type scans struct {
	mu  sync.Mutex
	got []Scan
	new chan struct{}
}

func newScans() *scans { return &scans{new: make(chan struct{}, 1)} }

func (s *scans) emit(sc Scan) {
	s.mu.Lock()
	s.got = append(s.got, sc)
	s.mu.Unlock()
	select {
	case s.new <- struct{}{}:
	default:
	}
}

// waitFor waits until n scans of code arrived and returns all scans so far.
func (s *scans) waitFor(t *testing.T, code string, n int) []Scan {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		got := append([]Scan(nil), s.got...)
		s.mu.Unlock()
		seen := 0
		for _, sc := range got {
			if sc.Code == code {
				seen++
			}
		}
		if seen >= n {
			return got
		}
		select {
		case <-s.new:
		case <-deadline:
			t.Fatalf("no %d scans of %q; got %+v", n, code, got)
		}
	}
}

func codes(sc []Scan) []string {
	var c []string
	for _, s := range sc {
		c = append(c, s.Code)
	}
	return c
}

// startRun runs src in the background; the returned func cancels it and
// returns Run's error.
func startRun(t *testing.T, src Source, emit func(Scan)) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, emit) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				panic("Run did not return after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestHIDPipe drives NewHIDReader with a KeyboardEmulator over a pipe. The
// emulator's clock is a testclock, so the gaps between keys and codes are
// exact; a sentinel code typed last marks the end of the input.
func TestHIDPipe(t *testing.T) {
	tests := []struct {
		name     string
		kb       KeyboardOpts
		hid      HIDOpts
		typed    []string
		want     []string
		wantSym  []barcode.Symbology
		wantLogs int
	}{
		{name: "EAN-13", typed: []string{"8964000123454"}, want: []string{"8964000123454"}, wantSym: []barcode.Symbology{barcode.EAN13}},
		{name: "UPC-A normalised", typed: []string{"036000291452"}, want: []string{"0036000291452"}, wantSym: []barcode.Symbology{barcode.UPCA}},
		{name: "text with Shift", typed: []string{"KIOSK-42/A"}, want: []string{"KIOSK-42/A"}},
		{name: "keypad Enter", kb: KeyboardOpts{Suffix: SuffixKPEnter}, typed: []string{"96385074"}, want: []string{"96385074"}},
		{name: "no suffix ends by the gap", kb: KeyboardOpts{Suffix: SuffixNone}, typed: []string{"96385074"}, want: []string{"96385074"}},
		{name: "fr scanner, fr host", kb: KeyboardOpts{Layout: "fr"}, hid: HIDOpts{Layout: "fr"}, typed: []string{"96385074", "Caf-é"}, want: []string{"96385074", "Caf-é"}},
		{name: "fr scanner, us host", kb: KeyboardOpts{Layout: "fr"}, typed: []string{"96385074"}, want: []string{"(^#*%)&$"}},
		{name: "bad check digit dropped and logged once", typed: []string{"8964000123455", "8964000123455"}, wantLogs: 1},
		{name: "repeat counts once", typed: []string{"96385074", "96385074"}, want: []string{"96385074"}},
		{name: "dedup off", hid: HIDOpts{Dedup: -1}, typed: []string{"96385074", "96385074"}, want: []string{"96385074", "96385074"}},
		{name: "short codes dropped", typed: []string{"123"}},
		{name: "MinLen off", hid: HIDOpts{MinLen: -1}, typed: []string{"7"}, want: []string{"7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testclock.New(epoch)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var logs bytes.Buffer
			o := tt.hid
			o.Clock, o.Logger = clk.Now, zerolog.New(&logs)
			o.KeyTimeout = 500 * time.Millisecond
			h := NewHIDReader(r, "test", &o)
			got := newScans()
			stop := startRun(t, h, got.emit)

			kb := tt.kb
			kb.Clock, kb.Sleep = clk.Now, clk.Sleep
			var typed bytes.Buffer
			k, err := NewKeyboardEmulator(&typed, &kb)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tt.typed {
				clk.Advance(700 * time.Millisecond) // more than KeyTimeout, less than the Dedup window
				if err := k.Type(c); err != nil {
					t.Fatal(err)
				}
			}
			end, _ := NewKeyboardEmulator(&typed, &KeyboardOpts{Layout: tt.hid.Layout, Clock: clk.Now, Sleep: clk.Sleep})
			clk.Advance(2 * time.Second)
			if err := end.Type(sentinel); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(typed.Bytes()); err != nil {
				t.Fatal(err)
			}
			all := got.waitFor(t, sentinel, 1)
			w.Close()
			if err := stop(); err != nil && !errors.Is(err, ErrClosed) {
				t.Fatalf("Run: %v", err)
			}

			all = all[:len(all)-1]
			if fmt.Sprint(codes(all)) != fmt.Sprint(tt.want) {
				t.Fatalf("scans %q, want %q", codes(all), tt.want)
			}
			for i, s := range all {
				if tt.wantSym != nil && s.Symbology != tt.wantSym[i] {
					t.Errorf("scan %d: %s, want %s", i, s.Symbology, tt.wantSym[i])
				}
				if s.Source != "hid test" {
					t.Errorf("scan %d: Source %q", i, s.Source)
				}
				if s.Time.Before(epoch) {
					t.Errorf("scan %d: Time %v not on the clock", i, s.Time)
				}
			}
			if n := strings.Count(logs.String(), "bad read"); n != tt.wantLogs {
				t.Fatalf("%d bad-read log lines, want %d:\n%s", n, tt.wantLogs, logs.String())
			}
		})
	}
}

// TestHIDReaderEnds checks that the end of the stream ends Run with
// ErrClosed, and that the idle timer ends a code without a suffix.
func TestHIDReaderEnds(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := NewHIDReader(r, "pipe", &HIDOpts{KeyTimeout: 20 * time.Millisecond})
	got := newScans()
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, got.emit) }()
	k, _ := NewKeyboardEmulator(w, &KeyboardOpts{Suffix: SuffixNone, Interval: time.Microsecond})
	if err := k.Type("96385074"); err != nil {
		t.Fatal(err)
	}
	got.waitFor(t, "96385074", 1)
	w.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Run = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end with the stream")
	}
}

func TestHIDRunErrors(t *testing.T) {
	if err := NewHID(Match{}, nil).Run(context.Background(), func(Scan) {}); err == nil {
		t.Error("empty Match accepted")
	}
	if err := NewHIDReader(strings.NewReader(""), "x", &HIDOpts{Layout: "dvorak"}).Run(context.Background(), func(Scan) {}); err == nil {
		t.Error("unknown layout accepted")
	}
	h := NewHIDReader(strings.NewReader(""), "twice", nil)
	h.running.Store(true) // a Run in progress
	if err := h.Run(context.Background(), func(Scan) {}); err == nil {
		t.Fatal("second concurrent Run returned nil")
	}
}

// ev builds an event at ms milliseconds after epoch.
func ev(ms int, typ, code uint16, value int32) inputEvent {
	return inputEvent{time: epoch.Add(time.Duration(ms) * time.Millisecond), typ: typ, code: code, value: value}
}

func press(ms int, key uint16) []inputEvent {
	return []inputEvent{ev(ms, evMsc, mscScan, 0x70000), ev(ms, evKey, key, keyDown), ev(ms, evSyn, synReport, 0),
		ev(ms+1, evKey, key, keyUp), ev(ms+1, evSyn, synReport, 0)}
}

func seq(parts ...[]inputEvent) []inputEvent {
	var all []inputEvent
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// TestWedge feeds event sequences straight to the keyboard state machine.
func TestWedge(t *testing.T) {
	var d1, d2, d3, d4 uint16 = key1 + 8, key1 + 1, key1 + 2, key1 + 3 // 9 2 3 4
	four := seq(press(0, d1), press(4, d2), press(8, d3), press(12, d4))
	tests := []struct {
		name string
		evs  []inputEvent
		want []string
		bad  int
	}{
		{"Enter ends", seq(four, press(16, keyEnter)), []string{"9234"}, 0},
		{"idle ends", four, []string{"9234"}, 0},
		{"gap splits", seq(press(0, d1), press(4, d2), press(100, d3), press(104, d4), press(108, keyEnter)), nil, 0},
		{"autorepeat types nothing", seq(four[:5], []inputEvent{ev(2, evKey, d1, keyRepeat)}, four[5:], press(16, keyEnter)), []string{"9234"}, 0},
		{"SYN_DROPPED drops the code", seq(four[:10], []inputEvent{ev(9, evSyn, synDropped, 0), ev(9, evKey, d3, keyDown)}, []inputEvent{ev(9, evSyn, synReport, 0)},
			press(10, d1), press(12, d2), press(14, d3), press(16, d4), press(18, keyEnter)), []string{"9234"}, 0},
		{"Shift", seq([]inputEvent{ev(0, evKey, keyRightShift, keyDown)}, press(0, keyA), []inputEvent{ev(1, evKey, keyRightShift, keyUp)}, press(2, keyA), four, press(20, keyEnter)), []string{"Aa9234"}, 0},
		{"Caps Lock", seq(press(0, keyCapsLock), press(2, keyA), press(4, keyCapsLock), press(6, keyA), four, press(20, keyEnter)), []string{"Aa9234"}, 0},
		{"unmapped key", seq(press(0, 59), four, press(20, keyEnter)), nil, 1}, // KEY_F1
		{"Ctrl", seq([]inputEvent{ev(0, evKey, keyLeftCtrl, keyDown)}, press(0, keyA), []inputEvent{ev(1, evKey, keyLeftCtrl, keyUp)}, four, press(20, keyEnter)), nil, 1},
		{"other event types", seq([]inputEvent{ev(0, 0x02, 0, 5), ev(0, 0x11, 1, 1)}, four, press(20, keyEnter)), []string{"9234"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			var logs bytes.Buffer
			s := &sink{clock: nowZero, emit: func(sc Scan) { got = append(got, sc.Code) }, log: onceLog{l: zerolog.New(&logs)}}
			w := &wedge{km: usLayout, timeout: 50 * time.Millisecond, minLen: 4, sink: s}
			for _, e := range tt.evs {
				w.event(e)
			}
			w.idle()
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("codes %q, want %q", got, tt.want)
			}
			if n := strings.Count(logs.String(), "bad read"); n != tt.bad {
				t.Fatalf("%d bad reads logged, want %d: %s", n, tt.bad, logs.String())
			}
		})
	}
}

// pipeDevices stands in for the device finder: each open returns the next
// pipe, or ErrNotFound until the test plugs one in.
type pipeDevices struct {
	plug  chan *os.File
	opens int
	mu    sync.Mutex
}

func (d *pipeDevices) open() (io.ReadCloser, string, error) {
	d.mu.Lock()
	d.opens++
	n := d.opens
	d.mu.Unlock()
	select {
	case r := <-d.plug:
		return r, fmt.Sprintf("/dev/input/event%d", n), nil
	default:
		return nil, "", ErrNotFound
	}
}

// TestHIDReconnect unplugs the scanner (its pipe closes, as a device read
// fails with ENODEV) and plugs a new one in: Run finds it and goes on.
func TestHIDReconnect(t *testing.T) {
	clk := testclock.New(epoch)
	devs := &pipeDevices{plug: make(chan *os.File, 1)}
	var waits []time.Duration
	var mu sync.Mutex
	h := NewHID(Match{Name: "scanner"}, &HIDOpts{
		Clock:      clk.Now,
		KeyTimeout: time.Second,
		After: func(ctx context.Context, d time.Duration) bool {
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
			return wait.After(ctx, time.Millisecond)
		},
	})
	h.open = devs.open
	got := newScans()
	stop := startRun(t, h, got.emit)

	for i, code := range []string{"8964000123454", "96385074"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		devs.plug <- r
		k, _ := NewKeyboardEmulator(w, &KeyboardOpts{Clock: clk.Now, Sleep: clk.Sleep})
		if err := k.Type(code); err != nil {
			t.Fatal(err)
		}
		got.waitFor(t, code, 1)
		if dev := h.Device(); !strings.HasPrefix(dev, "/dev/input/event") {
			t.Fatalf("device %d: Device() = %q while connected", i, dev)
		}
		w.Close() // unplugged
		deadline := time.Now().Add(10 * time.Second)
		for h.Device() != "" {
			if time.Now().After(deadline) {
				t.Fatal("Device() still set after the unplug")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) < 2 {
		t.Fatalf("Run waited %d times between attempts", len(waits))
	}
	for _, d := range waits {
		if d <= 0 || d > DefaultHIDOpts.MaxBackoff {
			t.Fatalf("backoff %v outside (0, %v]", d, DefaultHIDOpts.MaxBackoff)
		}
	}
}
