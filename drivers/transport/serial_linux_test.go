package transport

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests stand a pseudo-terminal in for the UART: the kiosk's side is
// the slave, which the pty driver treats as a tty (termios, flow control),
// and the test plays the device on the master.

func dialSerial(t *testing.T, p *pty, baud int, flow Flow) Conn {
	t.Helper()
	c, err := Serial(p.slave, baud, flow).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSerialTermios(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		name   string
		baud   int
		flow   Flow
		cbaud  uint32 // Cflag&CBAUD
		speed  uint32 // termios2 c_ospeed
		rtscts bool
		xonoff bool
	}{
		{"9600 none", 9600, FlowNone, unix.B9600, 9600, false, false},
		{"default flow", 19200, "", unix.B19200, 19200, false, false},
		{"115200 rtscts", 115200, FlowRTSCTS, unix.B115200, 115200, true, false},
		{"38400 xonxoff", 38400, FlowXONXOFF, unix.B38400, 38400, false, true},
		{"250000 BOTHER", 250000, FlowNone, unix.BOTHER, 250000, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := openPTY(t)
			dialSerial(t, p, tc.baud, tc.flow)
			tio := p.termios(t, unix.TCGETS)
			if got := tio.Cflag & unix.CBAUD; got != tc.cbaud {
				t.Errorf("CBAUD = %#o, want %#o", got, tc.cbaud)
			}
			if got := p.termios(t, unix.TCGETS2).Ospeed; got != tc.speed {
				t.Errorf("c_ospeed = %d, want %d", got, tc.speed)
			}
			if got := tio.Cflag&unix.CSIZE == unix.CS8 && tio.Cflag&(unix.PARENB|unix.CSTOPB) == 0; !got {
				t.Errorf("Cflag %#x is not 8N1", tio.Cflag)
			}
			if tio.Lflag&(unix.ICANON|unix.ECHO) != 0 || tio.Oflag&unix.OPOST != 0 {
				t.Errorf("not raw: Lflag %#x Oflag %#x", tio.Lflag, tio.Oflag)
			}
			if got := tio.Cflag&unix.CRTSCTS != 0; got != tc.rtscts {
				t.Errorf("CRTSCTS = %v, want %v", got, tc.rtscts)
			}
			if got := tio.Iflag&(unix.IXON|unix.IXOFF) == unix.IXON|unix.IXOFF; got != tc.xonoff {
				t.Errorf("IXON|IXOFF = %v, want %v (Iflag %#x)", got, tc.xonoff, tio.Iflag)
			}
			if tc.xonoff && (tio.Cc[unix.VSTART] != 0x11 || tio.Cc[unix.VSTOP] != 0x13) {
				t.Errorf("VSTART, VSTOP = %#x, %#x, want DC1, DC3", tio.Cc[unix.VSTART], tio.Cc[unix.VSTOP])
			}
		})
	}
}

func TestSerialDialErrors(t *testing.T) {
	p := openPTY(t)
	for _, tc := range []struct {
		name string
		d    Dialer
		is   error
	}{
		{"no such port", Serial("/dev/nonexistent-tty", 9600, FlowNone), os.ErrNotExist},
		{"bad flow", Serial(p.slave, 9600, "dtrdsr"), nil},
		{"bad baud", Serial(p.slave, 0, FlowNone), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.d.Dial(context.Background())
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
		})
	}
}

func TestSerialBytesBothWays(t *testing.T) {
	noLeaks(t)
	p := openPTY(t)
	c := dialSerial(t, p, 9600, FlowNone)
	// Raw mode: every byte value passes untouched, CR and LF included.
	job := []byte{0x1b, 0x40, 'O', 'K', '\r', '\n', 0x00, 0xff, 0x1d, 0x56, 0x00}
	if n, err := c.Write(job); n != len(job) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := readN(t, p.master, len(job)); string(got) != string(job) {
		t.Errorf("device got % x, want % x", got, job)
	}
	status := []byte{0x12, 0x0d}
	if _, err := p.master.Write(status); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(status) {
		t.Errorf("host got % x, %v, want % x", got, err, status)
	}
}

func TestSerialReadTimeout(t *testing.T) {
	noLeaks(t)
	p := openPTY(t)
	c := dialSerial(t, p, 9600, FlowNone)
	if err := c.SetReadTimeout(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 8))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read = %d, %v; want a timeout", n, err)
	}
}

func TestSerialCloseWakesRead(t *testing.T) {
	noLeaks(t)
	p := openPTY(t)
	c := dialSerial(t, p, 9600, FlowNone) // read timeout 0: blocks
	done := make(chan error)
	go func() {
		_, err := c.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it block; the test passes either way
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Read after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Read")
	}
}

// The device sends XOFF: the tty stops sending, the write times out; XON
// lets it through.
func TestSerialXOFFStallsWrite(t *testing.T) {
	noLeaks(t)
	p := openPTY(t)
	c := dialSerial(t, p, 9600, FlowXONXOFF)
	// XOFF, then a marker: once the marker is read, the tty has seen XOFF.
	if _, err := p.master.Write([]byte{0x13, 'M'}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "M" {
		t.Fatalf("Read = %q, %v; want the marker alone (XOFF is taken by the tty)", b[:n], err)
	}
	if err := c.SetWriteTimeout(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write([]byte("receipt")); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write while stopped = %d, %v; want a timeout", n, err)
	}
	if _, err := p.master.Write([]byte{0x11}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriteTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write([]byte("receipt")); n != 7 || err != nil {
		t.Fatalf("Write after XON = %d, %v", n, err)
	}
	if got := readN(t, p.master, 7); string(got) != "receipt" {
		t.Errorf("device got %q", got)
	}
}

// A USB-serial adapter pulled out hangs the tty up: reads see the end,
// writes fail with EIO, and the node is gone.
func TestSerialHangup(t *testing.T) {
	noLeaks(t)
	p := openPTY(t)
	c := dialSerial(t, p, 9600, FlowNone)
	p.master.Close()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("Read after hangup = %v, want EOF", err)
	}
	if _, err := c.Write([]byte{0}); !errors.Is(err, unix.EIO) {
		t.Errorf("Write after hangup = %v, want EIO", err)
	}
}
