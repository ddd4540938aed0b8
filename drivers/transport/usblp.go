package transport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

type usblpDialer struct{ path string }

// USBLP dials a USB printer through the kernel's usblp driver
// (/dev/usb/lp0 …). Reads return what the printer sends back on its bulk
// IN endpoint, such as the replies to DLE EOT; a unidirectional printer
// fails reads with ErrWriteOnly. The node goes away when the printer is
// unplugged (I/O fails with ENODEV) and comes back when it is plugged in.
func USBLP(path string) Dialer { return &usblpDialer{path: path} }

func (d *usblpDialer) String() string { return "usblp " + d.path }

// Dial opens the node O_RDWR|O_NONBLOCK: usblp_poll reports EPOLLIN when a
// bulk IN transfer completes and EPOLLOUT when the last write's completes,
// so the runtime poller gives reads and writes deadlines. usblp allows one
// open at a time (EBUSY).
func (d *usblpDialer) Dial(ctx context.Context) (Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("transport: %s: %w", d, err)
	}
	f, err := os.OpenFile(d.path, os.O_RDWR|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("transport: %s: %w", d, err)
	}
	if err := f.SetDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("transport: %s: node cannot be polled: %w", d, err)
	}
	c := &usblpConn{newFileConn(f, d.String(), nil)}
	// usblp_read returns 0 bytes for a zero-length IN transfer and starts
	// the next one: that is no data yet, not the end of the stream.
	c.emptyEOF = true
	return c, nil
}

type usblpConn struct{ *fileConn }

// Read is the fileConn's, except that usblp_read fails with EINVAL only
// when the printer has no IN endpoint.
func (c *usblpConn) Read(p []byte) (int, error) {
	n, err := c.fileConn.Read(p)
	if errors.Is(err, syscall.EINVAL) {
		err = fmt.Errorf("%w: %s", ErrWriteOnly, c.name)
	}
	return n, err
}

func (c *usblpConn) portStatus() (PortStatus, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return 0, c.wrap(err)
	}
	var s byte
	var ierr error
	if err := rc.Control(func(fd uintptr) { s, ierr = lpGetStatusIoctl(fd) }); err != nil {
		return 0, c.wrap(err)
	}
	if ierr != nil {
		return 0, fmt.Errorf("transport: %s: LPGETSTATUS: %w", c.name, ierr)
	}
	return PortStatus(s), nil
}

// PortStatus is the status byte of the USB printer class GET_PORT_STATUS
// request, in the layout of a PC parallel port's status register.
type PortStatus byte

// PaperEmpty reports the Paper Empty bit.
func (s PortStatus) PaperEmpty() bool { return s&lpPOutPa != 0 }

// Selected reports the Select bit: the printer is on line.
func (s PortStatus) Selected() bool { return s&lpPSelecd != 0 }

// Fault reports the Not Error bit clear: the printer has an error.
func (s PortStatus) Fault() bool { return s&lpPErrorP == 0 }

func (s PortStatus) String() string {
	var b []string
	if s.PaperEmpty() {
		b = append(b, "paper empty")
	}
	if s.Selected() {
		b = append(b, "selected")
	} else {
		b = append(b, "not selected")
	}
	if s.Fault() {
		b = append(b, "fault")
	}
	return strings.Join(b, ", ")
}

// portStatuser is a Conn that can ask for the printer's port status.
type portStatuser interface {
	portStatus() (PortStatus, error)
}

// LPStatus asks a USBLP conn, or a Link over one, for the printer's port
// status with the LPGETSTATUS ioctl; the usblp driver answers it with a
// GET_PORT_STATUS control request on the default pipe, beside the print
// data. Other conns fail with errors.ErrUnsupported.
func LPStatus(c Conn) (PortStatus, error) {
	s, ok := c.(portStatuser)
	if !ok {
		return 0, fmt.Errorf("transport: LPGETSTATUS: %T: %w", c, errors.ErrUnsupported)
	}
	return s.portStatus()
}
