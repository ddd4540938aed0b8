package transport

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// Flow is a serial port's flow control, as board profiles name it.
type Flow string

// Flow controls. The empty Flow is FlowNone.
const (
	FlowNone    Flow = "none"    // none: the device must keep up
	FlowRTSCTS  Flow = "rtscts"  // hardware: the device deasserts CTS when its buffer is full
	FlowXONXOFF Flow = "xonxoff" // software: the device sends XOFF (DC3) and XON (DC1)
)

type serialDialer struct {
	path string
	baud int
	flow Flow
}

// Serial dials a UART or USB-serial port at baud, 8N1, raw, with flow
// control, through go.bug.st/serial. The port is opened exclusively.
func Serial(path string, baud int, flow Flow) Dialer {
	if flow == "" {
		flow = FlowNone
	}
	return &serialDialer{path: path, baud: baud, flow: flow}
}

func (d *serialDialer) String() string {
	return fmt.Sprintf("serial %s %d 8N1 %s", d.path, d.baud, d.flow)
}

// Dial opens the port twice: go.bug.st/serial opens and configures it and
// holds its exclusive lock; a second, non-blocking descriptor opened first
// (the lock refuses later opens) carries the I/O through the runtime
// poller, so reads and writes get deadlines and Close wakes them, and sets
// the flow control, which the library cannot. Termios belongs to the tty,
// so settings made through either descriptor hold for both.
func (d *serialDialer) Dial(ctx context.Context) (Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("transport: %s: %w", d, err)
	}
	if d.baud <= 0 {
		return nil, fmt.Errorf("transport: %s: invalid baud rate", d)
	}
	if d.flow != FlowNone && d.flow != FlowRTSCTS && d.flow != FlowXONXOFF {
		return nil, fmt.Errorf("transport: %s: unknown flow control %q", d, string(d.flow))
	}
	f, err := os.OpenFile(d.path, os.O_RDWR|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("transport: %s: %w", d, err)
	}
	port, err := serial.Open(d.path, &serial.Mode{
		BaudRate: d.baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit,
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("transport: %s: %w", d, err)
	}
	if err := setFlow(f, d.flow); err != nil {
		f.Close()
		port.Close()
		return nil, fmt.Errorf("transport: %s: %w", d, err)
	}
	return newFileConn(f, d.String(), port.Close), nil
}

// setFlow sets flow control in the tty's termios and reads it back: a
// driver that cannot do RTS/CTS clears the flag.
func setFlow(f *os.File, flow Flow) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), ioctlGetTermios)
		if err != nil {
			ferr = fmt.Errorf("get termios: %w", err)
			return
		}
		t.Cflag &^= unix.CRTSCTS
		t.Iflag &^= unix.IXON | unix.IXOFF | unix.IXANY
		switch flow {
		case FlowRTSCTS:
			t.Cflag |= unix.CRTSCTS
		case FlowXONXOFF:
			t.Iflag |= unix.IXON | unix.IXOFF
			t.Cc[unix.VSTART] = xon
			t.Cc[unix.VSTOP] = xoff
		}
		if err := unix.IoctlSetTermios(int(fd), ioctlSetTermios, t); err != nil {
			ferr = fmt.Errorf("set termios: %w", err)
			return
		}
		got, err := unix.IoctlGetTermios(int(fd), ioctlGetTermios)
		if err != nil {
			ferr = fmt.Errorf("get termios: %w", err)
			return
		}
		if got.Cflag&unix.CRTSCTS != t.Cflag&unix.CRTSCTS || got.Iflag&(unix.IXON|unix.IXOFF) != t.Iflag&(unix.IXON|unix.IXOFF) {
			ferr = fmt.Errorf("the tty driver refused flow control %q", string(flow))
		}
	})
	if err != nil {
		return err
	}
	return ferr
}
