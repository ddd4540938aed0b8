package escpos

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Port is the byte link to a printer: a UART, /dev/usb/lp0, a TCP socket,
// or the Emulator. A Read that times out returns an error wrapping
// os.ErrDeadlineExceeded (a Read of no bytes and no error counts as a
// timeout too).
type Port interface {
	io.ReadWriter
	SetReadTimeout(d time.Duration) error
}

// Opts configures a Dev.
type Opts struct {
	Timeout time.Duration       // per status reply; 0 means DefaultOpts.Timeout
	Pace    *Timing             // non-nil: the link has no flow control, so pace writes (see Timing)
	Sleep   func(time.Duration) // nil is time.Sleep
	Clock   func() time.Time    // nil is time.Now
	Log     zerolog.Logger      // the zero value logs nothing
}

// DefaultOpts is what New uses for a nil opts.
var DefaultOpts = Opts{Timeout: 500 * time.Millisecond}

// Driver limits.
const (
	drainWait  = time.Millisecond       // read timeout while discarding stale replies
	maxNoise   = 256                    // bytes read while waiting for one reply before giving up
	sleepSlice = 100 * time.Millisecond // longest pacing sleep between checks for Halt
)

// Dev is an ESC/POS receipt printer. It is safe for concurrent use; calls
// are serialised.
type Dev struct {
	mu     sync.Mutex
	port   Port
	opts   Opts
	sr     StatusReader
	pace   *pacer
	last   Status
	sent   int // bytes of the job in Print that left
	halted atomic.Bool
}

// New initialises the printer with ESC @ and asks for its status. It
// fails with ErrNoReply when nothing valid answers; a printer that answers
// but cannot print (paper out) is returned without error.
func New(port Port, opts *Opts) (*Dev, error) {
	if port == nil {
		return nil, errors.New("escpos: nil port")
	}
	o := DefaultOpts
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultOpts.Timeout
	}
	if o.Sleep == nil {
		o.Sleep = time.Sleep
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	d := &Dev{port: port, opts: o}
	if o.Pace != nil {
		if o.Pace.Baud <= 0 || o.Pace.DotPrint < 0 || o.Pace.DotFeed < 0 || o.Pace.CharHeight <= 0 || o.Pace.Columns <= 0 {
			return nil, fmt.Errorf("escpos: pacing %+v: need a baud rate, a character height and columns", *o.Pace)
		}
		d.pace = newPacer(*o.Pace)
	}
	if err := d.write([]byte{esc, '@'}); err != nil {
		return nil, err
	}
	if d.pace != nil {
		d.pace.cost(opInit, nil)
	}
	st, err := d.status()
	if err != nil {
		return nil, err
	}
	o.Log.Debug().Stringer("status", st).Msg("escpos: printer found")
	return d, nil
}

func (d *Dev) String() string {
	if s, ok := d.port.(fmt.Stringer); ok {
		return "ESC/POS printer on " + s.String()
	}
	return "ESC/POS printer"
}

// Halt stops the Dev: a Print in progress stops between two chunks and
// later calls fail with ErrHalted. The port stays open; it belongs to the
// caller. Halt is safe to call twice.
func (d *Dev) Halt() error {
	d.halted.Store(true)
	d.mu.Lock() // wait for a call in progress
	defer d.mu.Unlock()
	return nil
}

// Status asks the printer with DLE EOT 1, 2 and 4, and 3 when 2 reports
// an error. These are real-time requests: the printer answers them while
// offline and with data waiting in its buffer.
func (d *Dev) Status() (Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted.Load() {
		return Status{}, ErrHalted
	}
	return d.status()
}

func (d *Dev) status() (Status, error) {
	if err := d.drain(); err != nil {
		return Status{}, err
	}
	var r [5]byte
	for _, n := range []byte{1, 2, 4} {
		b, err := d.ask(n)
		if err != nil {
			return Status{}, err
		}
		r[n] = b
	}
	r[3] = rtFixed
	if r[2]&rt2Error != 0 {
		b, err := d.ask(3)
		if err != nil {
			return Status{}, err
		}
		r[3] = b
	}
	st, err := DecodeRealTime(r[1], r[2], r[3], r[4])
	if err != nil {
		return Status{}, err
	}
	if st != d.last {
		d.opts.Log.Info().Stringer("status", st).Stringer("was", d.last).Msg("escpos: printer status changed")
		d.last = st
	}
	return st, nil
}

// drain discards replies that came late or unasked (an ASB packet, or a
// status sequence inside image data), so that the next one read answers
// the next request.
func (d *Dev) drain() error {
	d.sr.Reset()
	if err := d.port.SetReadTimeout(drainWait); err != nil {
		return fmt.Errorf("escpos: set read timeout: %w", err)
	}
	var buf [64]byte
	for range maxNoise / len(buf) {
		n, err := d.port.Read(buf[:])
		if n == 0 || err != nil {
			return nil // a timeout: nothing left; other errors show on the request
		}
	}
	return nil
}

// ask sends DLE EOT n and returns the reply, skipping ASB packets.
func (d *Dev) ask(n byte) (byte, error) {
	if err := d.write([]byte{dle, eot, n}); err != nil {
		return 0, err
	}
	deadline := d.opts.Clock().Add(d.opts.Timeout)
	var buf [16]byte
	for read := 0; ; {
		for {
			rep, ok := d.sr.Next()
			if !ok {
				break
			}
			switch rep.Kind {
			case RealTime:
				return rep.Data[0], nil
			case Garbage:
				return 0, fmt.Errorf("%w: 0x%02x to DLE EOT %d", ErrBadReply, rep.Data[0], n)
			}
		}
		left := deadline.Sub(d.opts.Clock())
		if left <= 0 || read > maxNoise {
			return 0, fmt.Errorf("%w to DLE EOT %d in %v", ErrNoReply, n, d.opts.Timeout)
		}
		if err := d.port.SetReadTimeout(left); err != nil {
			return 0, fmt.Errorf("escpos: set read timeout: %w", err)
		}
		k, err := d.port.Read(buf[:])
		d.sr.Feed(buf[:k])
		read += k
		switch {
		case err != nil && errors.Is(err, os.ErrDeadlineExceeded), err == nil && k == 0:
			if _, ok := d.peek(); !ok {
				return 0, fmt.Errorf("%w to DLE EOT %d in %v", ErrNoReply, n, d.opts.Timeout)
			}
		case err != nil:
			return 0, fmt.Errorf("%w to DLE EOT %d: %w", ErrNoReply, n, err)
		}
	}
}

// peek reports whether a reply waits.
func (d *Dev) peek() (Reply, bool) {
	if d.sr.head < len(d.sr.out) {
		return d.sr.out[d.sr.head], true
	}
	return Reply{}, false
}

// Print sends a job, such as an Encoder's Bytes. It asks for the status
// first and returns its error, sending nothing, when the printer cannot
// print. After sending (and, when paced, after the time the printer needs
// to print it) it asks again: if printing stopped it returns that error.
// The printer then holds the rest of the job and prints it once the cause
// is cleared, and the error wraps ErrHeld; do not send it again. (Paced,
// without flow control, what did not fit the printer's buffer is lost, so
// the error does not wrap ErrHeld: see the package doc.) Every error
// returned before the first byte left wraps ErrNotSent.
func (d *Dev) Print(data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted.Load() {
		return fmt.Errorf("%w: %w", ErrNotSent, ErrHalted)
	}
	st, err := d.status()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	if err := st.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	d.sent = 0
	if d.pace != nil {
		err = d.writePaced(data)
	} else {
		err = d.write(data)
	}
	if err != nil && d.sent == 0 {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	if err != nil {
		// Cut off part way: the printer has only part of the job, whatever
		// it says now (never ErrHeld). Say why, if it can.
		err = fmt.Errorf("escpos: job cut off after %d of %d bytes: %w", d.sent, len(data), err)
		if st, serr := d.status(); serr == nil && st.Err() != nil {
			return fmt.Errorf("%w (%w)", st.Err(), err)
		}
		return err
	}
	if st, err = d.status(); err != nil {
		return err
	}
	if err := st.Err(); err != nil {
		if d.pace != nil {
			// Without flow control, what did not fit its buffer is lost.
			return fmt.Errorf("escpos: printing stopped, and a printer without flow control may have dropped part of the job: %w", err)
		}
		return fmt.Errorf("escpos: printing stopped: %w: %w", ErrHeld, err)
	}
	return nil
}

// OpenDrawer pulses the cash drawer on connector pin 2 or 5. A printer
// that can print takes ESC p, which every ESC/POS printer knows; one that
// cannot (paper out, cover open) gets the real-time DLE DC4 pulse, which
// it runs at once.
func (d *Dev) OpenDrawer(pin int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted.Load() {
		return ErrHalted
	}
	st, err := d.status()
	if err != nil {
		return err
	}
	e := NewEncoder()
	if st.Err() == nil {
		e.Pulse(pin, drawerOn, drawerOff)
	} else {
		e.PulseNow(pin, drawerNow)
	}
	if err := e.Err(); err != nil {
		return err
	}
	return d.write(e.Bytes())
}

// Drawer pulse timing: long enough for a drawer solenoid to release the
// latch (drawer makers ask for 100-200 ms), short enough not to cook it.
const (
	drawerOn  = 120 // ms, ESC p
	drawerOff = 240 // ms, ESC p
	drawerNow = 100 // ms, DLE DC4: the shortest it takes
)

func (d *Dev) write(p []byte) error {
	for len(p) > 0 {
		n, err := d.port.Write(p)
		d.sent += n
		p = p[n:]
		if err != nil {
			return fmt.Errorf("escpos: write (%d bytes unsent): %w", len(p), err)
		}
		if n == 0 {
			return fmt.Errorf("escpos: write: %w", io.ErrShortWrite)
		}
	}
	return nil
}

// writePaced sends data in chunks, each ending with a token that moves
// paper, and before each chunk waits until the printer has had the time
// the previous one costs (Timing). It waits for the last chunk too.
func (d *Dev) writePaced(data []byte) error {
	byteTime := d.pace.t.ByteTime()
	resume := d.opts.Clock()
	start := 0
	for i := 0; i < len(data); {
		o, n, err := scan(data[i:])
		var cost time.Duration
		if err != nil || n > len(data)-i {
			n = len(data) - i // a truncated command: send the rest as it is
		} else {
			cost = d.pace.cost(o, data[i:i+n])
		}
		i += n
		if cost == 0 && i < len(data) {
			continue
		}
		if err := d.waitUntil(resume); err != nil {
			return err
		}
		if err := d.write(data[start:i]); err != nil {
			return err
		}
		resume = d.opts.Clock().Add(time.Duration(i-start)*byteTime + cost)
		start = i
	}
	return d.waitUntil(resume)
}

// waitUntil sleeps until t, in slices so that Halt is seen.
func (d *Dev) waitUntil(t time.Time) error {
	for {
		if d.halted.Load() {
			return ErrHalted
		}
		left := t.Sub(d.opts.Clock())
		if left <= 0 {
			return nil
		}
		d.opts.Sleep(min(left, sleepSlice))
	}
}
