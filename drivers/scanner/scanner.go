package scanner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/microretail/kioskd/drivers/barcode"
	"github.com/rs/zerolog"
)

// Scan is one code a scanner read and Validate accepted.
type Scan struct {
	Code      string            // the code; a UPC-A code in its EAN-13 form (barcode.Normalize)
	Symbology barcode.Symbology // what barcode.Classify made of it
	Source    string            // the scanner, as its String method names it
	Time      time.Time         // when the code was complete, on the scanner's Clock
}

// Source is a scanner; Run delivers scans until ctx ends or the scanner fails for good.
// Run calls emit from its own goroutine, one scan at a time, and returns nil
// when ctx ends.
type Source interface {
	Run(ctx context.Context, emit func(Scan)) error
	String() string
}

// Errors callers act on.
var (
	// ErrInvalid: a read that is not a valid code: bad check digit, control
	// characters, a key the layout has no character for, too long.
	ErrInvalid = errors.New("scanner: invalid read")
	// ErrClosed: the scanner's byte stream ended (pipe closed, port gone).
	ErrClosed = errors.New("scanner: closed")
	// ErrNotFound: no input device matches.
	ErrNotFound = errors.New("scanner: no such device")
	// ErrNoReply: a GM65 did not answer a command in time (wiring, baud
	// rate, or not a GM65).
	ErrNoReply = errors.New("scanner: no reply from the module")
)

// DefaultDedupWindow is the Dedup window sources use unless told otherwise.
// A cashier scanning two identical items waits this long between them.
const DefaultDedupWindow = time.Second

// Validate checks a read the way every Source does before emitting it, so
// that a code typed into the till is held to the same rules. All-digit
// codes of 8, 12 or 13 digits must carry a correct GS1 check digit; UPC-A
// comes back in its EAN-13 form. Other codes are text: printable ASCII
// (CODE128) or, for QR payloads, valid UTF-8 without control characters.
// No code is longer than barcode.MaxLen bytes.
func Validate(code string) (string, barcode.Symbology, error) {
	if len(code) > barcode.MaxLen {
		return "", barcode.Text, fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalid, len(code), barcode.MaxLen)
	}
	sym, err := barcode.Classify(code)
	switch {
	case err == nil:
		return barcode.Normalize(code), sym, nil
	case errors.Is(err, barcode.ErrMalformed) && isText(code):
		return code, barcode.Text, nil // a QR payload beyond ASCII
	}
	return "", sym, fmt.Errorf("%w: %w", ErrInvalid, err)
}

// isText reports whether s is non-empty valid UTF-8 without control characters.
func isText(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// Dedup drops the same code seen again within Window (configurable), so one physical scan
// that a scanner repeats (or an operator double-taps) counts once. Each
// sighting restarts the window, so a code left in front of a scanner in
// continuous mode counts once however long it stays. It is safe for
// concurrent use.
type Dedup struct {
	Window time.Duration    // 0 means DefaultDedupWindow
	Clock  func() time.Time // nil means time.Now

	mu   sync.Mutex
	last string
	seen time.Time
}

// Admit reports whether code counts: false when it is the code seen last
// and that was less than Window ago.
func (d *Dedup) Admit(code string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if d.Clock != nil {
		now = d.Clock()
	}
	w := d.Window
	if w == 0 {
		w = DefaultDedupWindow
	}
	repeat := code == d.last && now.Sub(d.seen) < w
	d.last, d.seen = code, now
	return !repeat
}

// newDedup returns the Dedup a source with window w uses; nil when w < 0.
func newDedup(w time.Duration, clock func() time.Time) *Dedup {
	if w < 0 {
		return nil
	}
	return &Dedup{Window: w, Clock: clock}
}

// sink turns raw reads into Scans: it validates them, drops repeats and
// logs bad reads. A bad read is logged once however often the scanner
// repeats it; a good read re-arms the log.
type sink struct {
	source string
	clock  func() time.Time
	dedup  *Dedup
	log    onceLog
	emit   func(Scan)
}

func (s *sink) read(raw string) {
	code, sym, err := Validate(raw)
	if err != nil {
		s.log.warn(err, "scanner: bad read dropped", raw)
		return
	}
	s.log.reset()
	if s.dedup != nil && !s.dedup.Admit(code) {
		return
	}
	s.emit(Scan{Code: code, Symbology: sym, Source: s.source, Time: s.clock()})
}

// bad drops a read that failed before validation.
func (s *sink) bad(err error, raw string) { s.log.warn(err, "scanner: bad read dropped", raw) }

// onceLog logs an error only when it differs from the one it logged last,
// so a repeating error is logged when it changes, not a thousand times a second.
type onceLog struct {
	l    zerolog.Logger
	last string
}

func (o *onceLog) warn(err error, msg, raw string) {
	if err.Error() == o.last {
		return
	}
	o.last = err.Error()
	ev := o.l.Warn().Err(err)
	if raw != "" {
		ev = ev.Str("read", raw)
	}
	ev.Msg(msg)
}

func (o *onceLog) reset() { o.last = "" }

type deadliner interface {
	SetReadDeadline(time.Time) error
}

// chunk is what one Read returned.
type chunk struct {
	b   []byte
	err error
}

// pump reads r in a goroutine, so that its owner can wait for bytes, a
// timer and its context at once. stop ends the goroutine and waits for it.
type pump struct {
	r    io.Reader
	ch   chan chunk
	quit chan struct{}
	done chan struct{}
}

func startPump(r io.Reader, size int) *pump {
	if d, ok := r.(deadliner); ok {
		_ = d.SetReadDeadline(time.Time{}) // a previous stop left a deadline
	}
	p := &pump{r: r, ch: make(chan chunk), quit: make(chan struct{}), done: make(chan struct{})}
	go p.run(size)
	return p
}

func (p *pump) run(size int) {
	defer close(p.done)
	for {
		b := make([]byte, size)
		n, err := p.r.Read(b)
		if n == 0 && err == nil {
			continue
		}
		select {
		case p.ch <- chunk{b[:n], err}:
		case <-p.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// stop unblocks a Read in progress with a past deadline, or by closing
// the reader when it takes no deadline, and waits for the goroutine. A
// reader that does neither must return from Read by itself.
func (p *pump) stop() {
	close(p.quit)
	if d, ok := p.r.(deadliner); !ok || d.SetReadDeadline(time.Unix(1, 0)) != nil {
		if c, ok := p.r.(io.Closer); ok {
			_ = c.Close()
		}
	}
	<-p.done
}
