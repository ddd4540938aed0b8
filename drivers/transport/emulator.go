package transport

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Emulator is a peripheral at the far end of a serial or USB cable, for
// tests and the sim board: attach a device emulator to its device side
// (Recv, Send) and give the host side, a Dialer, to a Link.
//
// It models what the host sees of the cable and the device's port. The
// host opens it like a device node, once at a time (EBUSY). The device
// takes what the host writes into a receive buffer of fixed size; when
// the buffer is full the host's writes stop, as CTS or XOFF would stop
// them, until the device takes bytes with Recv. Send queues bytes for the
// host to read while it has the port open; unread ones are lost when it
// closes. Unplug takes the device away: the open conn fails with ENODEV
// and dials fail with ENOENT until Plug; buffered bytes are lost.
type Emulator struct {
	name string
	size int

	mu      sync.Mutex
	plugged bool
	host    *emuConn // the host's open conn, or nil
	rx      []byte   // host to device, at most size bytes
	tx      []byte   // device to host
	opens   int
	changed chan struct{} // closed and replaced at every change
}

// NewEmulator returns a plugged-in device with a receive buffer of size
// bytes (at least 1).
func NewEmulator(name string, size int) *Emulator {
	return &Emulator{name: name, size: max(size, 1), plugged: true, changed: make(chan struct{})}
}

func (e *Emulator) String() string { return "emulator " + e.name }

// Dial opens the device's port, as the host.
func (e *Emulator) Dial(ctx context.Context) (Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("transport: %s: %w", e, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.plugged:
		return nil, fmt.Errorf("transport: %s: open: %w", e, syscall.ENOENT)
	case e.host != nil:
		return nil, fmt.Errorf("transport: %s: open: %w", e, syscall.EBUSY)
	}
	c := &emuConn{e: e}
	c.wto.Store(int64(DefaultOpts.WriteTimeout))
	e.host = c
	e.opens++
	e.notify()
	return c, nil
}

// Unplug disconnects the device.
func (e *Emulator) Unplug() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.plugged, e.host, e.rx, e.tx = false, nil, nil, nil
	e.notify()
}

// Plug connects the device again.
func (e *Emulator) Plug() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.plugged = true
	e.notify()
}

// Recv is the device taking what the host sent: it waits until there is
// at least one byte, or ctx ends, and empties the receive buffer.
func (e *Emulator) Recv(ctx context.Context) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.rx) == 0 {
		ch := e.changed
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			e.mu.Lock()
			return nil, ctx.Err()
		}
		e.mu.Lock()
	}
	b := e.rx
	e.rx = nil
	e.notify()
	return b, nil
}

// Send is the device sending p to the host. It reports false, and the
// bytes are lost, when the host does not have the port open.
func (e *Emulator) Send(p []byte) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.host == nil {
		return false
	}
	e.tx = append(e.tx, p...)
	e.notify()
	return true
}

// Opens is how many times the host opened the port.
func (e *Emulator) Opens() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.opens
}

// Buffered is how many bytes the host sent that the device has not taken.
func (e *Emulator) Buffered() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.rx)
}

// notify wakes everyone waiting for a change. e.mu is held.
func (e *Emulator) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// wait waits for a change until dl (zero: no limit) and reports false if
// dl came first. e.mu is held, and released while waiting.
func (e *Emulator) wait(dl time.Time) bool {
	ch := e.changed
	e.mu.Unlock()
	defer e.mu.Lock()
	if dl.IsZero() {
		<-ch
		return true
	}
	t := time.NewTimer(time.Until(dl))
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// emuConn is the host's end of an Emulator.
type emuConn struct {
	e        *Emulator
	rto, wto atomic.Int64
	closed   bool // under e.mu
}

// usable is nil if c can do I/O. e.mu is held.
func (c *emuConn) usable(op string) error {
	switch {
	case c.closed:
		return fmt.Errorf("%w: %s", ErrClosed, c.e)
	case c.e.host != c:
		return fmt.Errorf("transport: %s: %s: %w", c.e, op, syscall.ENODEV)
	}
	return nil
}

func (c *emuConn) Read(p []byte) (int, error) {
	e := c.e
	dl := deadline(c.rto.Load())
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		if err := c.usable("read"); err != nil {
			return 0, err
		}
		if len(e.tx) > 0 || len(p) == 0 {
			n := copy(p, e.tx)
			e.tx = e.tx[n:]
			return n, nil
		}
		if !e.wait(dl) {
			return 0, fmt.Errorf("transport: %s: read: %w", e, os.ErrDeadlineExceeded)
		}
	}
}

// Write fills the device's receive buffer, waiting while it is full.
func (c *emuConn) Write(p []byte) (int, error) {
	e := c.e
	dl := deadline(c.wto.Load())
	e.mu.Lock()
	defer e.mu.Unlock()
	total := 0
	for {
		if err := c.usable("write"); err != nil {
			return total, err
		}
		if n := min(len(p)-total, e.size-len(e.rx)); n > 0 {
			e.rx = append(e.rx, p[total:total+n]...)
			total += n
			e.notify()
			dl = deadline(c.wto.Load())
		}
		if total == len(p) {
			return total, nil
		}
		if !e.wait(dl) {
			return total, fmt.Errorf("transport: %s: write: %w", e, os.ErrDeadlineExceeded)
		}
	}
}

func (c *emuConn) SetReadTimeout(d time.Duration) error  { return setTimeout(&c.rto, d) }
func (c *emuConn) SetWriteTimeout(d time.Duration) error { return setTimeout(&c.wto, d) }

// Close releases the port; bytes the host did not read are lost.
func (c *emuConn) Close() error {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	c.closed = true
	if e.host == c {
		e.host, e.tx = nil, nil
	}
	e.notify()
	return nil
}
