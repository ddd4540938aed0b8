package scanner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/microretail/kioskd/drivers/barcode"
	"github.com/rs/zerolog"
)

// Port is a serial port at 9600 8N1, as go.bug.st/serial opens it: Read
// returns 0 bytes and no error when the read timeout passes.
type Port interface {
	io.ReadWriter
	SetReadTimeout(t time.Duration) error
}

// Mode is when a GM65 reads.
type Mode int

// Read modes NewGM65 sets.
const (
	Continuous Mode = iota // read every code that comes into view
	OnTrigger              // read one code after each Trigger
)

func (m Mode) String() string {
	if m == OnTrigger {
		return "on trigger"
	}
	return "continuous"
}

// GM65Opts configures a GM65.
type GM65Opts struct {
	Mode         Mode
	Name         string        // what String returns; "" means "gm65"
	ReplyTimeout time.Duration // wait for a command's reply; 0 means 500 ms
	CodeTimeout  time.Duration // a code whose CR does not come ends after this silence; 0 means 50 ms
	Dedup        time.Duration // Dedup window; 0 means DefaultDedupWindow, negative turns it off

	Logger zerolog.Logger   // zero value: no logs
	Clock  func() time.Time // nil means time.Now
}

// DefaultGM65Opts is what NewGM65 uses when opts is nil.
var DefaultGM65Opts = GM65Opts{
	Mode:         Continuous,
	Name:         "gm65",
	ReplyTimeout: 500 * time.Millisecond,
	CodeTimeout:  50 * time.Millisecond,
	Dedup:        DefaultDedupWindow,
}

// GM65 is a Grow GM65-class scanner module on a UART. It is a Source;
// Run may run once at a time, and Trigger may be called while it runs.
type GM65 struct {
	port Port
	opts GM65Opts

	xmu  sync.Mutex // serialises exchanges
	wmu  sync.Mutex // serialises writes
	rmu  sync.Mutex // held by the reader of the port: Run, or an exchange while Run is not running
	acks chan frame // replies Run read, for an exchange waiting on them
	rest []byte     // bytes an exchange read past its reply, for Run

	running atomic.Bool
}

var _ Source = (*GM65)(nil)

// NewGM65 sets the module's read mode and a CR after each code, checking
// each reply. The settings are not saved to the module's EEPROM: they are
// set again at every start, so a swapped module needs no preparation.
// The caller owns port; closing it ends Run with ErrClosed.
func NewGM65(port Port, opts *GM65Opts) (*GM65, error) {
	o := DefaultGM65Opts
	if opts != nil {
		o = *opts
	}
	if o.Name == "" {
		o.Name = DefaultGM65Opts.Name
	}
	if o.ReplyTimeout <= 0 {
		o.ReplyTimeout = DefaultGM65Opts.ReplyTimeout
	}
	if o.CodeTimeout <= 0 {
		o.CodeTimeout = DefaultGM65Opts.CodeTimeout
	}
	if o.Dedup == 0 {
		o.Dedup = DefaultGM65Opts.Dedup
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Mode != Continuous && o.Mode != OnTrigger {
		return nil, fmt.Errorf("scanner: %s: unknown mode %d", o.Name, o.Mode)
	}
	g := &GM65{port: port, opts: o, acks: make(chan frame, 1)}
	mode := byte(modeContinuous)
	if o.Mode == OnTrigger {
		mode = modeCommand
	}
	if err := g.update(zoneTail, tailMask, tailCR); err != nil {
		return nil, err
	}
	if err := g.update(zoneControl, modeMask, mode); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *GM65) String() string { return g.opts.Name }

// Trigger starts one read in OnTrigger mode: the module answers, then
// sends the first code it sees, or nothing when its read time runs out.
func (g *GM65) Trigger() error {
	if g.opts.Mode != OnTrigger {
		return fmt.Errorf("scanner: %s: Trigger needs OnTrigger mode", g)
	}
	return g.write(zoneTrigger, triggerStart)
}

// update sets the bits of zone addr under mask to v, keeping the others.
func (g *GM65) update(addr uint16, mask, v byte) error {
	r, err := g.exchange(encodeCommand(typeRead, addr, []byte{1}))
	if err != nil {
		return err
	}
	if r.typ != typeOK || len(r.data) != 1 {
		return fmt.Errorf("scanner: %s: read zone %#04x: unexpected reply % X", g, addr, encodeReply(r.typ, r.data))
	}
	return g.write(addr, r.data[0]&^mask|v)
}

// write writes one zone byte and checks the reply 02 00 00 01 00 33 31.
func (g *GM65) write(addr uint16, v byte) error {
	r, err := g.exchange(encodeCommand(typeWrite, addr, []byte{v}))
	if err != nil {
		return err
	}
	if r.typ != typeOK || len(r.data) != 1 || r.data[0] != 0 {
		return fmt.Errorf("scanner: %s: write zone %#04x: unexpected reply % X", g, addr, encodeReply(r.typ, r.data))
	}
	return nil
}

// exchange sends cmd and returns the reply. While Run owns the port, Run
// hands the reply over; otherwise exchange reads it itself.
func (g *GM65) exchange(cmd []byte) (frame, error) {
	g.xmu.Lock()
	defer g.xmu.Unlock()
	if g.rmu.TryLock() {
		defer g.rmu.Unlock()
		if err := g.send(cmd); err != nil {
			return frame{}, err
		}
		return g.readReply(cmd)
	}
	select {
	case <-g.acks: // stale
	default:
	}
	if err := g.send(cmd); err != nil {
		return frame{}, err
	}
	t := time.NewTimer(g.opts.ReplyTimeout)
	defer t.Stop()
	select {
	case r := <-g.acks:
		return r, nil
	case <-t.C:
		return frame{}, fmt.Errorf("%w: %s: command % X", ErrNoReply, g, cmd)
	}
}

func (g *GM65) send(cmd []byte) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if _, err := g.port.Write(cmd); err != nil {
		return fmt.Errorf("scanner: %s: write: %w", g, err)
	}
	return nil
}

// readReply reads until a reply frame, skipping what comes before it (a
// code in continuous mode, line noise). A silent wait of the whole
// remaining time is ErrNoReply.
func (g *GM65) readReply(cmd []byte) (frame, error) {
	deadline := g.opts.Clock().Add(g.opts.ReplyTimeout)
	var in []byte
	buf := make([]byte, 64)
	for {
		wait := deadline.Sub(g.opts.Clock())
		if wait <= 0 {
			break
		}
		if err := g.port.SetReadTimeout(wait); err != nil {
			return frame{}, fmt.Errorf("scanner: %s: %w", g, err)
		}
		n, err := g.port.Read(buf)
		if err != nil {
			return frame{}, fmt.Errorf("%w (%s read: %w)", ErrClosed, g, err)
		}
		if n == 0 {
			break
		}
		in = append(in, buf[:n]...)
		for len(in) > 0 {
			if in[0] != replyHead {
				in = in[1:]
				continue
			}
			r, n, err := decodeReply(in)
			if err == nil {
				g.rest = append(g.rest, in[n:]...)
				return r, nil
			}
			if errors.Is(err, errShortFrame) {
				break
			}
			in = in[n:]
		}
	}
	return frame{}, fmt.Errorf("%w: %s: command % X", ErrNoReply, g, cmd)
}

// Run implements Source. It fails for good when the port does.
func (g *GM65) Run(ctx context.Context, emit func(Scan)) error {
	if !g.running.CompareAndSwap(false, true) {
		return fmt.Errorf("scanner: %s: Run already running", g)
	}
	defer g.running.Store(false)
	g.rmu.Lock()
	defer g.rmu.Unlock()
	if err := g.port.SetReadTimeout(g.opts.CodeTimeout); err != nil {
		return fmt.Errorf("scanner: %s: %w", g, err)
	}
	l := &lines{g: g, sink: sink{source: g.String(), clock: g.opts.Clock, dedup: newDedup(g.opts.Dedup, g.opts.Clock), log: onceLog{l: g.opts.Logger}, emit: emit}}
	in := g.rest
	g.rest = nil
	buf := make([]byte, 256)
	for {
		in = l.parse(in)
		if ctx.Err() != nil {
			return nil
		}
		n, err := g.port.Read(buf)
		if err != nil {
			return fmt.Errorf("%w (%s read: %w)", ErrClosed, g, err)
		}
		if n == 0 {
			in = l.idle(in)
		}
		in = append(in, buf[:n]...)
	}
}

// lines splits what the module sends into replies and codes: a code is
// the bytes up to CR (or LF or TAB, whatever tail the module is set to),
// a reply starts with 02 00 where a code would start.
type lines struct {
	g        *GM65
	sink     sink
	line     []byte
	overflow bool
}

// parse consumes what it can of in and returns the rest: the start of a
// reply still coming.
func (l *lines) parse(in []byte) []byte {
	for len(in) > 0 {
		if len(l.line) == 0 && !l.overflow && in[0] == replyHead {
			r, n, err := decodeReply(in)
			if err == nil {
				select {
				case l.g.acks <- r:
				default: // nobody waits
				}
				in = in[n:]
				continue
			}
			if errors.Is(err, errShortFrame) {
				return in
			}
			if n > 1 { // a reply with a bad CRC: noise, not the start of a code
				l.sink.bad(fmt.Errorf("%w: corrupt reply % X", ErrInvalid, in[:n]), "")
				in = in[n:]
				continue
			}
		}
		b := in[0]
		in = in[1:]
		switch {
		case b == '\r' || b == '\n' || b == '\t':
			l.end()
		case len(l.line) >= barcode.MaxLen:
			l.overflow = true
		default:
			l.line = append(l.line, b)
		}
	}
	return in
}

// idle handles a silent read timeout: a reply that stopped halfway is
// noise, a code without its tail is complete.
func (l *lines) idle(in []byte) []byte {
	if len(in) > 0 {
		l.line = append(l.line, in...)
	}
	if len(l.line) > 0 || l.overflow {
		l.end()
	}
	return in[:0]
}

func (l *lines) end() {
	code, overflow := string(l.line), l.overflow
	l.line, l.overflow = l.line[:0], false
	switch {
	case overflow:
		l.sink.bad(fmt.Errorf("%w: longer than %d bytes", ErrInvalid, barcode.MaxLen), code)
	case code != "":
		l.sink.read(code)
	}
}
