package scanner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/microretail/kioskd/drivers/barcode"
	"github.com/microretail/kioskd/internal/wait"
	"github.com/rs/zerolog"
)

// Match says which input device is the scanner. Every field set must
// match; at least one must be set.
type Match struct {
	Path    string // glob of device paths, such as /dev/input/by-id/usb-*-event-kbd; empty means /dev/input/event*
	Name    string // substring of the device name (EVIOCGNAME), any case
	Vendor  uint16 // USB vendor id (EVIOCGID); 0 matches any
	Product uint16 // USB product id (EVIOCGID); 0 matches any
}

func (m Match) String() string {
	var p []string
	if m.Path != "" {
		p = append(p, m.Path)
	}
	if m.Name != "" {
		p = append(p, fmt.Sprintf("name~%q", m.Name))
	}
	if m.Vendor != 0 || m.Product != 0 {
		p = append(p, fmt.Sprintf("%04x:%04x", m.Vendor, m.Product))
	}
	return strings.Join(p, " ")
}

// HIDOpts configures a HID.
type HIDOpts struct {
	Layout     string        // keyboard layout the scanner is set to: "us" (the default) or "fr"
	KeyTimeout time.Duration // a code without Enter ends after this gap between keys; 0 means 50 ms
	MinLen     int           // shorter codes are dropped as keyboard typing; 0 means 4, negative keeps all
	Dedup      time.Duration // Dedup window; 0 means DefaultDedupWindow, negative turns it off
	Backoff    time.Duration // first reconnect delay; 0 means 100 ms
	MaxBackoff time.Duration // longest reconnect delay, and so how late a replugged scanner is seen; 0 means 2 s

	Logger zerolog.Logger                                  // zero value: no logs
	Clock  func() time.Time                                // nil means time.Now
	After  func(ctx context.Context, d time.Duration) bool // waits d, false if ctx ended; nil means the wall clock
}

// DefaultHIDOpts is what NewHID and NewHIDReader use when opts is nil.
var DefaultHIDOpts = HIDOpts{
	Layout:     "us",
	KeyTimeout: 50 * time.Millisecond,
	MinLen:     4,
	Dedup:      DefaultDedupWindow,
	Backoff:    100 * time.Millisecond,
	MaxBackoff: 2 * time.Second,
}

func (o HIDOpts) withDefaults() HIDOpts {
	d := DefaultHIDOpts
	if o.Layout == "" {
		o.Layout = d.Layout
	}
	if o.KeyTimeout <= 0 {
		o.KeyTimeout = d.KeyTimeout
	}
	if o.MinLen == 0 {
		o.MinLen = d.MinLen
	}
	if o.Dedup == 0 {
		o.Dedup = d.Dedup
	}
	if o.Backoff <= 0 {
		o.Backoff = d.Backoff
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = max(d.MaxBackoff, o.Backoff)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.After == nil {
		o.After = wait.After
	}
	return o
}

// HID is a USB HID keyboard-wedge scanner read through evdev. It is a
// Source; Run may run once at a time.
type HID struct {
	match Match
	r     io.Reader // NewHIDReader's stream, nil for a device
	name  string
	opts  HIDOpts
	size  int                                   // bytes per input_event
	open  func() (io.ReadCloser, string, error) // finds, opens and grabs the device

	running atomic.Bool
	mu      sync.Mutex
	dev     string
}

var _ Source = (*HID)(nil)

// NewHID returns the scanner match selects. Run finds the device, opens it,
// grabs it (EVIOCGRAB) so that its keys never reach the till's focused
// field, and reopens it when it is unplugged and comes back.
func NewHID(match Match, opts *HIDOpts) *HID {
	h := newHID(opts)
	h.match = match
	h.open = func() (io.ReadCloser, string, error) { return openDevice(match) }
	return h
}

// NewHIDReader returns a scanner whose input_event records come from r,
// such as a pipe from a KeyboardEmulator; nothing is opened or grabbed.
// Run stops a blocked Read with a past read deadline, or by closing r when
// r takes no deadline. When r ends, Run returns ErrClosed.
func NewHIDReader(r io.Reader, name string, opts *HIDOpts) *HID {
	h := newHID(opts)
	h.r, h.name = r, name
	return h
}

func newHID(opts *HIDOpts) *HID {
	o := DefaultHIDOpts
	if opts != nil {
		o = *opts
	}
	return &HID{opts: o.withDefaults(), size: eventSize}
}

func (h *HID) String() string {
	if h.r != nil {
		return "hid " + h.name
	}
	return "hid " + h.match.String()
}

// Device returns the path of the device Run has open (for NewHIDReader,
// its name while Run reads), "" while it has none.
func (h *HID) Device() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dev
}

func (h *HID) setDevice(p string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dev = p
}

// Run implements Source. For a device it fails for good only on a bad
// Match or Layout; a missing or unplugged device is waited for.
func (h *HID) Run(ctx context.Context, emit func(Scan)) error {
	if !h.running.CompareAndSwap(false, true) {
		return fmt.Errorf("scanner: %s: Run already running", h)
	}
	defer h.running.Store(false)
	km, err := layoutByName(h.opts.Layout)
	if err != nil {
		return err
	}
	s := &sink{source: h.String(), clock: h.opts.Clock, dedup: newDedup(h.opts.Dedup, h.opts.Clock), log: onceLog{l: h.opts.Logger}, emit: emit}
	w := &wedge{km: km, timeout: h.opts.KeyTimeout, minLen: h.opts.MinLen, sink: s}
	if h.r != nil {
		h.setDevice(h.name)
		defer h.setDevice("")
		_, err := h.session(ctx, h.r, w)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: %s", ErrClosed, h)
		}
		return fmt.Errorf("scanner: %s: %w", h, err)
	}
	if h.match == (Match{}) {
		return fmt.Errorf("scanner: %s: empty Match would grab any keyboard", h)
	}
	log := onceLog{l: h.opts.Logger}
	b := wait.Backoff{Min: h.opts.Backoff, Max: h.opts.MaxBackoff}
	for {
		dev, path, err := h.open()
		if err == nil {
			log.reset()
			h.opts.Logger.Info().Str("device", path).Msg("scanner: connected")
			h.setDevice(path)
			var got bool
			got, err = h.session(ctx, dev, w)
			_ = dev.Close()
			h.setDevice("")
			if ctx.Err() != nil {
				return nil
			}
			if got {
				b.Reset()
			}
		}
		log.warn(err, "scanner: waiting for the device", "")
		if !h.opts.After(ctx, b.Next()) {
			return nil
		}
	}
}

// session decodes events from r until ctx ends (nil) or r fails; got
// reports whether any bytes came.
func (h *HID) session(ctx context.Context, r io.Reader, w *wedge) (got bool, err error) {
	p := startPump(r, 256*h.size)
	defer p.stop()
	w.reset()
	w.caps = false
	idle := time.NewTimer(h.opts.KeyTimeout)
	idle.Stop()
	var buf []byte
	for {
		var c chunk
		select {
		case <-ctx.Done():
			return got, nil
		case c = <-p.ch:
		case <-idle.C:
			select {
			case c = <-p.ch: // bytes already here decide, by their timestamps
			default:
				w.idle()
				continue
			}
		}
		got = got || len(c.b) > 0
		buf = append(buf, c.b...)
		n := 0
		for ; len(buf)-n >= h.size; n += h.size {
			ev, err := decodeEvent(buf[n:], h.size)
			if err != nil {
				w.reset()
				return got, err
			}
			w.event(ev)
		}
		buf = buf[:copy(buf, buf[n:])]
		if c.err != nil {
			w.reset()
			return got, c.err
		}
		idle.Stop()
		if w.pending() {
			idle.Reset(h.opts.KeyTimeout)
		}
	}
}

// wedge turns key events into codes the way a keyboard-wedge scanner
// types them: a code ends at Enter (KEY_ENTER or KEY_KPENTER), or when
// no key follows within timeout. Codes shorter than minLen are dropped
// unreported: that is someone typing on a keyboard. A code with
// a key the layout has no character for, or typed with Ctrl or Alt, is
// invalid.
type wedge struct {
	km      *keymap
	timeout time.Duration
	minLen  int
	sink    *sink

	shiftL, shiftR   bool      // Shift keys held
	altgr, ctrl, alt bool      // right Alt (AltGr), a Ctrl, left Alt held
	caps             bool      // Caps Lock toggled on by this keyboard
	code             []rune    // the code in progress
	keys             int       // key presses in it
	bad              error     // why it is invalid
	last             time.Time // event time of its last key press
	dropping         bool      // after SYN_DROPPED, until SYN_REPORT
}

func (w *wedge) reset() {
	w.shiftL, w.shiftR, w.altgr, w.ctrl, w.alt = false, false, false, false, false
	w.code, w.bad, w.keys, w.dropping = w.code[:0], nil, 0, false
}

func (w *wedge) pending() bool { return w.keys > 0 }

// idle ends the code in progress: no key came within the timeout.
func (w *wedge) idle() { w.finish() }

func (w *wedge) event(ev inputEvent) {
	switch {
	case ev.typ == evSyn && ev.code == synDropped:
		// Lost events: the code in progress is unreliable, and so is the
		// modifier state; scanners release their modifiers within a report.
		w.reset()
		w.dropping = true
		return
	case ev.typ == evSyn && ev.code == synReport:
		w.dropping = false
		return
	case w.dropping || ev.typ != evKey:
		return // EV_MSC MSC_SCAN and the rest carry nothing a code needs
	}
	down := ev.value != keyUp
	switch ev.code {
	case keyLeftShift:
		w.shiftL = down
		return
	case keyRightShift:
		w.shiftR = down
		return
	case keyRightAlt:
		w.altgr = down
		return
	case keyLeftCtrl, keyRightCtrl:
		w.ctrl = down
		return
	case keyLeftAlt:
		w.alt = down
		return
	}
	if ev.value != keyDown {
		return // releases and autorepeat type nothing
	}
	if w.pending() && ev.time.Sub(w.last) > w.timeout {
		w.finish()
	}
	w.last = ev.time
	switch ev.code {
	case keyCapsLock:
		w.caps = !w.caps
		return
	case keyEnter, keyKPEnter:
		w.finish()
		return
	}
	w.keys++
	r, ok := w.km.char(ev.code, w.shiftL || w.shiftR, w.altgr, w.caps)
	switch {
	case w.bad != nil:
	case w.ctrl || w.alt || !ok:
		w.bad = fmt.Errorf("%w: key %d with Shift=%t AltGr=%t Ctrl=%t Alt=%t types no character in layout %s",
			ErrInvalid, ev.code, w.shiftL || w.shiftR, w.altgr, w.ctrl, w.alt, w.km.name)
	case len(w.code) >= barcode.MaxLen:
		w.bad = fmt.Errorf("%w: longer than %d characters", ErrInvalid, barcode.MaxLen)
	default:
		w.code = append(w.code, r)
	}
}

// finish ends the code in progress.
func (w *wedge) finish() {
	code, bad, keys := string(w.code), w.bad, w.keys
	w.code, w.bad, w.keys = w.code[:0], nil, 0
	switch {
	case keys < w.minLen:
		// someone typing, or nothing
	case bad != nil:
		w.sink.bad(bad, code)
	default:
		w.sink.read(code)
	}
}
