package transport

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	ioctlGetTermios = unix.TCGETS // tcgetattr
	ioctlSetTermios = unix.TCSETS // tcsetattr(TCSANOW)
)

func lpGetStatusIoctl(fd uintptr) (byte, error) {
	v, err := unix.IoctlGetUint32(int(fd), lpGetStatus)
	return byte(v), err
}

// tcpControl sets TCP_USER_TIMEOUT, so that data a vanished printer never
// acknowledges drops the connection in seconds, not in the ~15 minutes of
// the kernel's retransmissions.
func tcpControl(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(tcpUserTimeout/time.Millisecond))
	})
	if err != nil {
		return err
	}
	return serr
}
