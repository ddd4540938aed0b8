package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is an open link. Reads honour SetReadTimeout (0 = block); a
// timed-out read returns an error wrapping os.ErrDeadlineExceeded. A write
// fails with such an error when the device has taken no byte for the write
// timeout (0 = never); a slow device that keeps taking bytes does not time
// out. The dialers of this package return conns that block on reads and
// use DefaultOpts.WriteTimeout for writes.
type Conn interface {
	io.ReadWriteCloser
	SetReadTimeout(d time.Duration) error
	SetWriteTimeout(d time.Duration) error
}

// Dialer opens a Conn to one peripheral. Dial honours ctx while it waits.
type Dialer interface {
	Dial(ctx context.Context) (Conn, error)
	String() string
}

// Errors callers act on. I/O errors wrap the system's error (errors.Is
// with syscall.ENODEV, syscall.EIO, io.EOF …), timeouts wrap
// os.ErrDeadlineExceeded.
var (
	// ErrDisconnected: the Link is down; it redials after its backoff.
	// The error wraps the cause.
	ErrDisconnected = errors.New("transport: disconnected")
	// ErrClosed: the Link or Conn was closed.
	ErrClosed = errors.New("transport: closed")
	// ErrWriteOnly: the device cannot send anything back, such as a USB
	// printer bound in its unidirectional protocol.
	ErrWriteOnly = errors.New("transport: device is write-only")
)

// maxEmptyReads is how many 0-byte reads in a row a usblp conn takes
// before it gives up with io.ErrNoProgress.
const maxEmptyReads = 64

// fileConn is a Conn on a device node opened non-blocking: the runtime
// poller gives its reads and writes deadlines, and Close wakes them.
type fileConn struct {
	f        *os.File
	name     string       // the dialer's String, for errors
	rto, wto atomic.Int64 // read and write timeouts; 0 is none
	emptyEOF bool         // a 0-byte read is an empty transfer, not the end (usblp)
	release  func() error // frees what else the conn holds, or nil
	once     sync.Once
}

func newFileConn(f *os.File, name string, release func() error) *fileConn {
	c := &fileConn{f: f, name: name, release: release}
	c.wto.Store(int64(DefaultOpts.WriteTimeout))
	return c
}

func (c *fileConn) Read(p []byte) (int, error) {
	if err := c.f.SetReadDeadline(deadline(c.rto.Load())); err != nil {
		return 0, c.wrap(err)
	}
	for empty := 0; ; empty++ {
		n, err := c.f.Read(p)
		if n != 0 || err != io.EOF || !c.emptyEOF || len(p) == 0 {
			return n, c.wrap(err)
		}
		// usblp_read returns 0 bytes for a zero-length IN transfer and
		// starts the next: no data yet, so read again (the deadline
		// holds). A node that does nothing else, such as a hung-up tty,
		// is broken.
		if empty == maxEmptyReads {
			return 0, c.wrap(io.ErrNoProgress)
		}
	}
}

func (c *fileConn) Write(p []byte) (int, error) {
	n, err := writeAll(c.f, p, time.Duration(c.wto.Load()))
	return n, c.wrap(err)
}

func (c *fileConn) SetReadTimeout(d time.Duration) error  { return setTimeout(&c.rto, d) }
func (c *fileConn) SetWriteTimeout(d time.Duration) error { return setTimeout(&c.wto, d) }

// Close closes the conn and wakes its pending reads and writes; a second
// Close does nothing.
func (c *fileConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.f.Close()
		if c.release != nil {
			err = errors.Join(err, c.release())
		}
		err = c.wrap(err)
	})
	return err
}

func (c *fileConn) wrap(err error) error {
	switch {
	case err == nil || errors.Is(err, ErrClosed):
		return err
	case errors.Is(err, os.ErrClosed):
		return fmt.Errorf("%w: %s", ErrClosed, c.name)
	}
	return fmt.Errorf("transport: %s: %w", c.name, err)
}

// deadlineWriter is an *os.File or a net.Conn.
type deadlineWriter interface {
	io.Writer
	SetWriteDeadline(t time.Time) error
}

// writeAll writes p, giving the device d to take each next part of it: a
// device that takes bytes slowly is fine, one that takes none for d fails.
func writeAll(w deadlineWriter, p []byte, d time.Duration) (int, error) {
	total := 0
	for {
		if err := w.SetWriteDeadline(deadline(int64(d))); err != nil {
			return total, err
		}
		n, err := w.Write(p[total:])
		total += n
		if err == nil || total == len(p) {
			return total, nil
		}
		if n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
	}
}

func deadline(d int64) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(d))
}

func setTimeout(v *atomic.Int64, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("transport: negative timeout %v", d)
	}
	v.Store(int64(d))
	return nil
}
