package transport

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// No USB printer here: a raw pty slave, reached through a symlink as udev
// names printers, stands in for /dev/usb/lp0. Like usblp it is a pollable
// character device that reads what the printer sends and fails I/O once
// the device is gone; it has no LPGETSTATUS and never returns the
// zero-length reads of usblp.

// usbPrinter is a stand-in printer plugged in at the symlink node.
func usbPrinter(t *testing.T, node string) *pty {
	t.Helper()
	p := openPTY(t)
	p.raw(t)
	os.Remove(node)
	if err := os.Symlink(p.slave, node); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUSBLPBytesBothWays(t *testing.T) {
	noLeaks(t)
	node := filepath.Join(t.TempDir(), "lp0")
	p := usbPrinter(t, node)
	c, err := USBLP(node).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dleEOT := []byte{0x10, 0x04, 0x01}
	if _, err := c.Write(dleEOT); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, p.master, 3); string(got) != string(dleEOT) {
		t.Errorf("printer got % x", got)
	}
	if _, err := p.master.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	if n, err := c.Read(b); err != nil || n != 1 || b[0] != 0x16 {
		t.Errorf("Read = % x, %v; want 16", b[:n], err)
	}
	if err := c.SetReadTimeout(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read with nothing sent = %v, want a timeout", err)
	}
	// A pty is no usblp node: the ioctl is refused, not misread.
	if _, err := LPStatus(c); !errors.Is(err, unix.ENOTTY) {
		t.Errorf("LPStatus = %v, want ENOTTY", err)
	}
}

// The printer is unplugged and plugged back: the link drops on the I/O
// error, fails fast during the backoff, and redials the new node.
func TestUSBLPLinkReplug(t *testing.T) {
	noLeaks(t)
	node := filepath.Join(t.TempDir(), "lp0")
	p := usbPrinter(t, node)
	clk := newClock()
	l := NewLink(USBLP(node), &Opts{MinBackoff: time.Second, MaxBackoff: time.Second, Clock: clk.Now})
	defer l.Close()
	if _, err := l.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, p.master, 3); string(got) != "one" {
		t.Fatalf("printer got %q", got)
	}

	p.master.Close() // unplugged
	if _, err := l.Write([]byte("two")); !errors.Is(err, ErrDisconnected) || !errors.Is(err, unix.EIO) {
		t.Fatalf("Write after unplug = %v, want ErrDisconnected wrapping EIO", err)
	}
	if l.Connected() {
		t.Error("Connected after the write failed")
	}
	p = usbPrinter(t, node) // plugged back
	if _, err := l.Write([]byte("two")); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Write within the backoff = %v, want ErrDisconnected", err)
	}
	clk.Advance(time.Second)
	if _, err := l.Write([]byte("two")); err != nil {
		t.Fatalf("Write after the backoff: %v", err)
	}
	if got := readN(t, p.master, 3); string(got) != "two" {
		t.Errorf("replugged printer got %q", got)
	}
}

func TestLPStatusUnsupported(t *testing.T) {
	c, err := NewEmulator("printer", 16).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := LPStatus(c); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("LPStatus = %v, want ErrUnsupported", err)
	}
}

// A node that keeps returning 0 bytes without blocking (here a hung-up
// tty) is not taken for usblp's zero-length transfers for ever.
func TestUSBLPEmptyReadsEnd(t *testing.T) {
	noLeaks(t)
	node := filepath.Join(t.TempDir(), "lp0")
	p := usbPrinter(t, node)
	c, err := USBLP(node).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.master.Close()
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("Read = %v, want io.ErrNoProgress", err)
	}
}
