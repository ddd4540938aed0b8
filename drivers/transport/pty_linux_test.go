package transport

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// pty is a pseudo-terminal pair: the slave stands in for a device node,
// the test plays the device on the master.
type pty struct {
	master *os.File // non-blocking, so reads take deadlines
	slave  string   // /dev/pts/N
}

// openPTY is posix_openpt, unlockpt and ptsname by hand.
func openPTY(t *testing.T) *pty {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var n int
	ctl(t, m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlockpt: %w", err)
		}
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		return err
	})
	return &pty{master: m, slave: fmt.Sprintf("/dev/pts/%d", n)}
}

// termios reads the slave's termios through the master: the pty driver
// answers termios ioctls on the master for its slave.
func (p *pty) termios(t *testing.T, req uint) *unix.Termios {
	t.Helper()
	var tio *unix.Termios
	ctl(t, p.master, func(fd int) (err error) {
		tio, err = unix.IoctlGetTermios(fd, req)
		return err
	})
	return tio
}

// raw puts the slave in raw mode, as the serial library does for a UART;
// USBLP stand-ins need it, a real usblp node has no line discipline.
func (p *pty) raw(t *testing.T) {
	t.Helper()
	tio := p.termios(t, unix.TCGETS)
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	ctl(t, p.master, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, tio) })
}

func ctl(t *testing.T, f *os.File, fn func(fd int) error) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
}
