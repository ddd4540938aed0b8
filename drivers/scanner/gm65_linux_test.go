package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/microretail/kioskd/internal/testclock"
	"github.com/rs/zerolog"
	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// newPTY opens a pty pair: the master for the emulated module, the slave
// opened with go.bug.st/serial at 9600 8N1 as the driver would open a UART.
func newPTY(t *testing.T) (*os.File, serial.Port) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr == nil { // unlock the slave
			n, ierr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN) // its number
		}
	}); err != nil || ierr != nil {
		t.Fatal(err, ierr)
	}
	port, err := serial.Open(fmt.Sprintf("/dev/pts/%d", n), &serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		m.Close()
		t.Fatalf("serial.Open on the pty slave: %v", err)
	}
	t.Cleanup(func() {
		port.Close()
		m.Close()
	})
	return m, port
}

// serveModule runs a GM65Emulator on the pty master until the test ends.
func serveModule(t *testing.T, m *os.File, clock func() time.Time) *GM65Emulator {
	t.Helper()
	e := NewGM65Emulator(m, clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, os.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func present(t *testing.T, e *GM65Emulator, code string, wantRead bool) {
	t.Helper()
	read, err := e.Present(code)
	if err != nil || read != wantRead {
		t.Fatalf("Present(%q) = %t, %v; want %t", code, read, err, wantRead)
	}
}

func TestGM65Continuous(t *testing.T) {
	m, port := newPTY(t)
	clk := testclock.New(epoch)
	e := serveModule(t, m, clk.Now)
	var logs bytes.Buffer
	g, err := NewGM65(port, &GM65Opts{Mode: Continuous, Clock: clk.Now, Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Zone(zoneControl); got != 0xD6 {
		t.Fatalf("zone 0x0000 = %#x, want D6h: continuous, other bits kept", got)
	}
	if got := e.Zone(zoneTail); got&tailMask != tailCR {
		t.Fatalf("zone 0x0060 = %#x, want CR tail", got)
	}
	if e.Saved(zoneControl) != 0xD4 {
		t.Fatal("settings were saved to EEPROM")
	}
	got := newScans()
	stop := startRun(t, g, got.emit)

	present(t, e, "8964000123454", true)
	present(t, e, "8964000123454", true) // the same code again: Dedup drops it
	present(t, e, "036000291452", true)
	present(t, e, "8964000123455", true) // bad check digit
	present(t, e, "8964000123455", true)
	if _, err := m.Write([]byte("\xff\xfeNOISE\r\x02\x00\x00\x01\x00\x33\x32")); err != nil { // noise, a reply with a bad CRC
		t.Fatal(err)
	}
	present(t, e, sentinel, true)
	all := got.waitFor(t, sentinel, 1)
	if want := []string{"8964000123454", "0036000291452", sentinel}; fmt.Sprint(codes(all)) != fmt.Sprint(want) {
		t.Fatalf("scans %q, want %q", codes(all), want)
	}
	if all[0].Source != "gm65" || !all[0].Time.Equal(epoch) {
		t.Fatalf("scan %+v", all[0])
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "bad read"); n != 3 { // check digit once, the noise, the bad reply
		t.Fatalf("%d bad reads logged, want 3:\n%s", n, logs.String())
	}
	if err := g.Trigger(); err == nil {
		t.Fatal("Trigger in continuous mode")
	}
}

func TestGM65OnTrigger(t *testing.T) {
	m, port := newPTY(t)
	clk := testclock.New(epoch)
	e := serveModule(t, m, clk.Now)
	g, err := NewGM65(port, &GM65Opts{Mode: OnTrigger, Name: "counter", Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Zone(zoneControl); got != 0xD5 {
		t.Fatalf("zone 0x0000 = %#x, want D5h: command mode", got)
	}
	present(t, e, "96385074", false) // not triggered: not read

	if err := g.Trigger(); err != nil { // Run not running: Trigger reads the reply itself
		t.Fatal(err)
	}
	if !e.Reading() {
		t.Fatal("no read after Trigger")
	}
	present(t, e, "96385074", true)
	if e.Reading() {
		t.Fatal("still reading after a code")
	}
	got := newScans()
	stop := startRun(t, g, got.emit)
	got.waitFor(t, "96385074", 1)

	clk.Advance(2 * time.Second)        // past the Dedup window
	if err := g.Trigger(); err != nil { // Run owns the port and hands the reply over
		t.Fatal(err)
	}
	present(t, e, "96385074", true)
	all := got.waitFor(t, "96385074", 2)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[1].Source != "counter" {
		t.Fatalf("scans %+v", all)
	}
}

// TestGM65NoTail: a module that sends no tail still works; the code ends
// with the silence after it.
func TestGM65NoTail(t *testing.T) {
	m, port := newPTY(t)
	e := serveModule(t, m, nil)
	g, err := NewGM65(port, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.receive(encodeCommand(typeWrite, zoneTail, []byte{tailNone})); err != nil {
		t.Fatal(err)
	}
	got := newScans()
	startRun(t, g, got.emit)
	present(t, e, "KIOSK-7", true)
	got.waitFor(t, "KIOSK-7", 1)
}

func TestGM65PortGone(t *testing.T) {
	m, port := newPTY(t)
	serveModule(t, m, nil)
	g, err := NewGM65(port, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(context.Background(), func(Scan) {}) }()
	m.Close() // the module side hangs up
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Run = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end")
	}
}

func TestGM65NoModule(t *testing.T) {
	_, port := newPTY(t) // nobody answers on the master
	_, err := NewGM65(port, &GM65Opts{ReplyTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrNoReply) {
		t.Fatalf("NewGM65 = %v, want ErrNoReply", err)
	}
}
