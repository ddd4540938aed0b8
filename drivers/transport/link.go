package transport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/microretail/kioskd/internal/wait"
	"github.com/rs/zerolog"
)

// Opts configures a Link. Zero fields take DefaultOpts' values.
type Opts struct {
	DialTimeout  time.Duration // bound on one dial
	WriteTimeout time.Duration // a write that moves no byte for this long drops the link
	ReadTimeout  time.Duration // read timeout until SetReadTimeout changes it (SetReadTimeout(0) blocks)
	MinBackoff   time.Duration // wait before the first redial; doubles per failure
	MaxBackoff   time.Duration // cap on the wait

	Clock  func() time.Time                                // backoff time; nil is time.Now
	After  func(ctx context.Context, d time.Duration) bool // Connect's wait: false if ctx ended first; nil is a timer
	Logger zerolog.Logger                                  // link up and down, logged when it changes; zero value is off
}

// DefaultOpts is what zero Opts fields mean.
var DefaultOpts = Opts{
	DialTimeout:  5 * time.Second,
	WriteTimeout: 5 * time.Second,
	ReadTimeout:  time.Second,
	MinBackoff:   250 * time.Millisecond,
	MaxBackoff:   30 * time.Second,
}

// Link is a Conn that reconnects. After an I/O error, other than a read
// timeout or ErrWriteOnly, it closes its conn; the next Read or Write redials, but not
// before the backoff has passed (exponential with jitter, reset by
// successful I/O), failing fast meanwhile with ErrDisconnected wrapping
// the cause, so callers never hang. It dials lazily, or in Connect. A Link
// is safe for concurrent use; it starts no goroutines.
type Link struct {
	d    Dialer
	opts Opts
	log  zerolog.Logger

	ctx    context.Context // ended by Close: stops dials and Connect
	cancel context.CancelFunc
	dialMu sync.Mutex // one dial at a time; Close waits for it

	mu       sync.Mutex
	conn     Conn // nil while down
	closed   bool
	backoff  wait.Backoff // the next dial's delay; reset by successful I/O
	cause    error        // why the link is down; nil before the first dial
	retry    time.Time    // no dial before this
	rto, wto time.Duration
}

var _ Conn = (*Link)(nil)

// NewLink returns a Link that dials d; opts may be nil.
func NewLink(d Dialer, opts *Opts) *Link {
	o := DefaultOpts
	if opts != nil {
		o = *opts
		def := func(v *time.Duration, dv time.Duration) {
			if *v <= 0 {
				*v = dv
			}
		}
		def(&o.DialTimeout, DefaultOpts.DialTimeout)
		def(&o.WriteTimeout, DefaultOpts.WriteTimeout)
		def(&o.ReadTimeout, DefaultOpts.ReadTimeout)
		def(&o.MinBackoff, DefaultOpts.MinBackoff)
		def(&o.MaxBackoff, DefaultOpts.MaxBackoff)
		o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.After == nil {
		o.After = wait.After
	}
	l := &Link{d: d, opts: o, log: o.Logger.With().Str("link", d.String()).Logger(), rto: o.ReadTimeout, wto: o.WriteTimeout,
		backoff: wait.Backoff{Min: o.MinBackoff, Max: o.MaxBackoff}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

func (l *Link) String() string { return "link " + l.d.String() }

// Connected reports whether the link has an open conn.
func (l *Link) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn != nil
}

// Read reads from the current conn, dialing if the backoff allows.
func (l *Link) Read(p []byte) (int, error) {
	c, err := l.get()
	if err != nil {
		return 0, err
	}
	n, err := c.Read(p)
	if n > 0 {
		l.ok()
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, ErrWriteOnly) {
		err = l.fail(c, err)
	}
	return n, err
}

// Write writes to the current conn, dialing if the backoff allows. A write
// that times out drops the link too: the device has stalled.
func (l *Link) Write(p []byte) (int, error) {
	c, err := l.get()
	if err != nil {
		return 0, err
	}
	n, err := c.Write(p)
	if n > 0 {
		l.ok()
	}
	if err != nil {
		err = l.fail(c, err)
	}
	return n, err
}

// SetReadTimeout sets the read timeout of this conn and the ones after it.
func (l *Link) SetReadTimeout(d time.Duration) error {
	return l.setTimeout(d, &l.rto, Conn.SetReadTimeout)
}

// SetWriteTimeout sets the write timeout of this conn and the ones after it.
func (l *Link) SetWriteTimeout(d time.Duration) error {
	return l.setTimeout(d, &l.wto, Conn.SetWriteTimeout)
}

func (l *Link) setTimeout(d time.Duration, v *time.Duration, set func(Conn, time.Duration) error) error {
	if d < 0 {
		return fmt.Errorf("transport: negative timeout %v", d)
	}
	l.mu.Lock()
	*v = d
	c := l.conn
	l.mu.Unlock()
	if c == nil {
		return nil
	}
	if err := set(c, d); err != nil {
		return l.fail(c, err)
	}
	return nil
}

// Connect dials now if the link is down, first waiting out the backoff. It
// returns nil once the link is up, or when ctx ends, ctx's error and the
// last failure.
func (l *Link) Connect(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	for {
		_, err := l.get()
		if err == nil || errors.Is(err, ErrClosed) {
			return err
		}
		l.mu.Lock()
		left := l.retry.Sub(l.opts.Clock())
		l.mu.Unlock()
		if left > 0 && !l.opts.After(ctx, left) || ctx.Err() != nil {
			if l.ctx.Err() != nil {
				return ErrClosed
			}
			return fmt.Errorf("%w; %w", ctx.Err(), err)
		}
	}
}

// LPGETSTATUS through the link's conn; see LPStatus.
func (l *Link) portStatus() (PortStatus, error) {
	c, err := l.get()
	if err != nil {
		return 0, err
	}
	s, err := LPStatus(c)
	if errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.EIO) {
		err = l.fail(c, err)
	}
	return s, err
}

// Close closes the link for good, waking pending reads and writes; a
// second Close does nothing.
func (l *Link) Close() error {
	l.cancel()
	l.dialMu.Lock()
	defer l.dialMu.Unlock()
	l.mu.Lock()
	c := l.conn
	wasClosed := l.closed
	l.conn, l.closed = nil, true
	l.mu.Unlock()
	if wasClosed || c == nil {
		return nil
	}
	return c.Close()
}

// get returns the open conn or dials one, or fails fast.
func (l *Link) get() (Conn, error) {
	if c, err := l.current(); c != nil || err != nil {
		return c, err
	}
	l.dialMu.Lock()
	defer l.dialMu.Unlock()
	if c, err := l.current(); c != nil || err != nil {
		return c, err // another caller dialed, or failed to, meanwhile
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.DialTimeout)
	c, err := l.d.Dial(ctx)
	cancel()
	if err == nil {
		l.mu.Lock()
		rto, wto := l.rto, l.wto
		l.mu.Unlock()
		if err = errors.Join(c.SetReadTimeout(rto), c.SetWriteTimeout(wto)); err != nil {
			c.Close()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		if err == nil {
			c.Close()
		}
		return nil, ErrClosed
	case err != nil:
		return nil, l.down(err)
	}
	l.conn = c
	l.log.Info().Msg("transport: link up")
	l.cause = nil
	return c, nil
}

// current is the open conn, or the error to fail fast with, or neither
// when it is time to dial.
func (l *Link) current() (Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return nil, ErrClosed
	case l.conn != nil:
		return l.conn, nil
	case l.cause != nil && l.opts.Clock().Before(l.retry):
		return nil, l.disconnected(l.cause)
	}
	return nil, nil
}

// ok records successful I/O: the next failure backs off from the start.
func (l *Link) ok() {
	l.mu.Lock()
	l.backoff.Reset()
	l.mu.Unlock()
}

// fail takes down the link after c failed with err, unless it already
// went down or was replaced.
func (l *Link) fail(c Conn, err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case l.conn != c:
		return l.disconnected(err)
	}
	return l.down(err)
}

// down closes the conn and schedules the next dial. l.mu is held.
func (l *Link) down(cause error) error {
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
	delay := l.backoff.Next()
	l.retry = l.opts.Clock().Add(delay)
	if l.cause == nil || l.cause.Error() != cause.Error() {
		l.log.Warn().Err(cause).Dur("retry_in", delay).Msg("transport: link down")
	}
	l.cause = cause
	return l.disconnected(cause)
}

func (l *Link) disconnected(cause error) error { return &downError{cause} }

// downError is ErrDisconnected and its cause.
type downError struct{ cause error }

func (e *downError) Error() string {
	return "transport: disconnected: " + strings.TrimPrefix(e.cause.Error(), "transport: ")
}

func (e *downError) Unwrap() []error { return []error{ErrDisconnected, e.cause} }
