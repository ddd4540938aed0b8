//go:build unix && !linux

package transport

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	ioctlGetTermios = unix.TIOCGETA // tcgetattr
	ioctlSetTermios = unix.TIOCSETA // tcsetattr(TCSANOW)
)

// lpGetStatusIoctl: LPGETSTATUS is the Linux usblp driver's.
func lpGetStatusIoctl(uintptr) (byte, error) { return 0, errors.ErrUnsupported }

// tcpControl: TCP_USER_TIMEOUT is Linux's; keepalive still applies.
func tcpControl(_, _ string, _ syscall.RawConn) error { return nil }
