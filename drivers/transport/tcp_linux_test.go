package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A listener with a backlog of 0 that never accepts: once one connection
// waits in its queue, Linux drops further SYNs, so a dial hangs as it does
// to a printer that is off. It stands for a printer that does not answer.
func deafListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}).String()
	// Fill the queue.
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	return addr
}

func TestTCPDialTimeout(t *testing.T) {
	noLeaks(t)
	addr := deafListener(t)
	l := NewLink(TCP(addr), &Opts{DialTimeout: 100 * time.Millisecond})
	defer l.Close()
	start := time.Now()
	_, err := l.Write([]byte("job"))
	// The dial's deadline ends it through the context or the socket's poller.
	timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
	if !errors.Is(err, ErrDisconnected) || !timedOut {
		t.Fatalf("Write = %v, want ErrDisconnected wrapping the dial timeout", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("dial took %v with a 100ms DialTimeout", d)
	}
}
