package escpos

import (
	"errors"
	"fmt"
	"strings"
)

// Errors callers act on.
var (
	ErrPaperOut  = errors.New("escpos: paper out")
	ErrCoverOpen = errors.New("escpos: cover open")
	ErrOffline   = errors.New("escpos: offline")
	ErrPrinter   = errors.New("escpos: printer error")
	ErrNoReply   = errors.New("escpos: no reply")      // nothing answered a status request in time: unplugged or off
	ErrBadReply  = errors.New("escpos: bad reply")     // the printer answered with bytes that are no status
	ErrInvalid   = errors.New("escpos: invalid")       // data the printer cannot print as asked
	ErrOverflow  = errors.New("escpos: buffer full")   // the emulator's receive buffer is full: bytes were lost
	ErrHalted    = errors.New("escpos: device halted") // the Dev was halted
	// ErrNotSent: Print sent no byte of the job (the printer could not
	// print, did not answer, or the first write failed), so sending it
	// again cannot print it twice.
	ErrNotSent = errors.New("escpos: job not sent")
	// ErrHeld: Print sent all of the job over a flow-controlled link and
	// the printer then stopped (paper out mid-receipt): it holds the rest
	// and prints it when the cause clears. Do not send the job again.
	ErrHeld = errors.New("escpos: job held by the printer")
)

// Fixed bits of the replies (ESC/POS reference, "transmission status
// identification"): a DLE EOT reply is 0xx1xx10, the first byte of an ASB
// packet 0xx1xx00 and its other three bytes 0xx0xxxx.
const (
	rtMask   = 0x93 // bits 0, 1, 4, 7 of a DLE EOT reply
	rtFixed  = 0x12 // their values: bit 1 and bit 4 set
	asbMask0 = 0x93 // bits 0, 1, 4, 7 of the first ASB byte
	asbFixed = 0x10 // their values: bit 4 set
	asbMaskN = 0x90 // bits 4 and 7 of ASB bytes 2 to 4, both clear
)

// DLE EOT n replies.
const (
	rt1Drawer    = 0x04 // n=1 bit 2: drawer kick-out connector pin 3 high
	rt1Offline   = 0x08 // n=1 bit 3: offline
	rt2Cover     = 0x04 // n=2 bit 2: cover open
	rt2PaperStop = 0x20 // n=2 bit 5: printing stopped at a paper end
	rt2Error     = 0x40 // n=2 bit 6: an error occurred
	rt3Mech      = 0x04 // n=3 bit 2: recoverable (mechanical) error, model-dependent
	rt3Cutter    = 0x08 // n=3 bit 3: autocutter error
	rt3Fatal     = 0x20 // n=3 bit 5: unrecoverable error
	rt3Auto      = 0x40 // n=3 bit 6: automatically recoverable error (head temperature)
	rt4NearEnd   = 0x0c // n=4 bits 2, 3: roll paper near-end sensor: near end
	rt4End       = 0x60 // n=4 bits 5, 6: roll paper end sensor: no paper
)

// ASB packet bits (GS a).
const (
	asb0Drawer  = 0x04 // byte 1 bit 2: drawer kick-out connector pin 3 high
	asb0Offline = 0x08 // byte 1 bit 3: offline
	asb0Cover   = 0x20 // byte 1 bit 5: cover open
	asb0Feed    = 0x40 // byte 1 bit 6: paper feed button pressed
	asb1Mech    = 0x04 // byte 2 bit 2: recoverable (mechanical) error
	asb1Cutter  = 0x08 // byte 2 bit 3: autocutter error
	asb1Fatal   = 0x20 // byte 2 bit 5: unrecoverable error
	asb1Auto    = 0x40 // byte 2 bit 6: automatically recoverable error
	asb2NearEnd = 0x03 // byte 3 bits 0, 1: roll paper near end
	asb2End     = 0x0c // byte 3 bits 2, 3: no roll paper
)

// Status is what the printer reports about itself.
type Status struct {
	PaperNearEnd, PaperOut, CoverOpen, Offline, Error bool
	DrawerHigh                                        bool // drawer kick-out connector pin 3
	Recoverable                                       bool // with Error: the error clears (by itself, or once its cause is removed); false: unrecoverable
	CutterError                                       bool // with Error: the autocutter failed (a jam)
}

// DecodeRealTime builds a Status from the replies to DLE EOT 1 (printer),
// 2 (offline cause), 3 (error cause) and 4 (roll paper sensor). Pass 0x12,
// a reply without flags, for errCause when DLE EOT 3 was not asked. A byte
// whose fixed bits are wrong is ErrBadReply.
func DecodeRealTime(printer, offline, errCause, paper byte) (Status, error) {
	for i, b := range [4]byte{printer, offline, errCause, paper} {
		if b&rtMask != rtFixed {
			return Status{}, fmt.Errorf("%w: DLE EOT %d answered 0x%02x", ErrBadReply, i+1, b)
		}
	}
	s := Status{
		DrawerHigh:   printer&rt1Drawer != 0,
		Offline:      printer&rt1Offline != 0,
		CoverOpen:    offline&rt2Cover != 0,
		PaperOut:     offline&rt2PaperStop != 0 || paper&rt4End != 0,
		PaperNearEnd: paper&rt4NearEnd != 0,
		Error:        offline&rt2Error != 0 || errCause&(rt3Mech|rt3Cutter|rt3Fatal|rt3Auto) != 0,
		CutterError:  errCause&rt3Cutter != 0,
	}
	s.Recoverable = s.Error && errCause&rt3Fatal == 0
	return s, nil
}

// DecodeASB builds a Status from an Automatic Status Back packet.
func DecodeASB(p [4]byte) (Status, error) {
	if p[0]&asbMask0 != asbFixed || p[1]&asbMaskN != 0 || p[2]&asbMaskN != 0 || p[3]&asbMaskN != 0 {
		return Status{}, fmt.Errorf("%w: ASB packet % x", ErrBadReply, p[:])
	}
	s := Status{
		DrawerHigh:   p[0]&asb0Drawer != 0,
		Offline:      p[0]&asb0Offline != 0,
		CoverOpen:    p[0]&asb0Cover != 0,
		Error:        p[1]&(asb1Mech|asb1Cutter|asb1Fatal|asb1Auto) != 0,
		CutterError:  p[1]&asb1Cutter != 0,
		PaperNearEnd: p[2]&asb2NearEnd != 0,
		PaperOut:     p[2]&asb2End != 0,
	}
	s.Recoverable = s.Error && p[1]&asb1Fatal == 0
	return s, nil
}

// Err is nil when the printer can print. Otherwise it is ErrCoverOpen,
// ErrPaperOut or ErrPrinter, all that apply (errors.Is matches each), or
// ErrOffline when the printer gives no cause. A near end is no error.
func (s Status) Err() error {
	var errs multiError
	if s.CoverOpen {
		errs = append(errs, ErrCoverOpen)
	}
	if s.PaperOut {
		errs = append(errs, ErrPaperOut)
	}
	if s.Error {
		errs = append(errs, fmt.Errorf("%w (%s)", ErrPrinter, s.errorKind()))
	}
	switch {
	case len(errs) == 1:
		return errs[0]
	case len(errs) > 1:
		return errs
	case s.Offline:
		return ErrOffline
	}
	return nil
}

func (s Status) errorKind() string {
	k := "unrecoverable"
	if s.Recoverable {
		k = "recoverable"
	}
	if s.CutterError {
		k += ", autocutter"
	}
	return k
}

// String lists the conditions, or says "ok".
func (s Status) String() string {
	var f []string
	add := func(on bool, what string) {
		if on {
			f = append(f, what)
		}
	}
	add(s.Offline, "offline")
	add(s.CoverOpen, "cover open")
	add(s.PaperOut, "paper out")
	add(s.PaperNearEnd && !s.PaperOut, "paper near end")
	add(s.Error, "error ("+s.errorKind()+")")
	add(s.DrawerHigh, "drawer pin 3 high")
	if len(f) == 0 {
		return "ok"
	}
	return strings.Join(f, ", ")
}

// multiError is several status errors at once.
type multiError []error

func (m multiError) Error() string {
	s := make([]string, len(m))
	for i, e := range m {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (m multiError) Unwrap() []error { return m }

// ReplyKind tells what a printer sent back.
type ReplyKind uint8

// Kinds of reply.
const (
	RealTime   ReplyKind = iota + 1 // one byte answering DLE EOT n
	AutoStatus                      // a 4-byte Automatic Status Back packet
	Garbage                         // a byte that is neither: line noise, or part of a broken ASB packet
)

func (k ReplyKind) String() string {
	switch k {
	case RealTime:
		return "real-time status"
	case AutoStatus:
		return "ASB"
	case Garbage:
		return "garbage"
	}
	return fmt.Sprintf("ReplyKind(%d)", uint8(k))
}

// Reply is one item of the reply stream.
type Reply struct {
	Kind ReplyKind
	Data [4]byte // RealTime and Garbage: Data[0]; AutoStatus: the packet
}

// StatusReader splits the bytes a printer sends into DLE EOT replies and
// ASB packets by their fixed bits, drops XON and XOFF (which may come
// even inside an ASB packet), and resynchronises after garbage: a byte
// that breaks an ASB packet ends it, the bytes so far are Garbage, and the
// byte is read again as the start of something new. The zero value is
// ready to use.
type StatusReader struct {
	pkt  [4]byte
	n    int // bytes of pkt so far; 0 between packets
	out  []Reply
	head int
}

// Feed reads p.
func (r *StatusReader) Feed(p []byte) {
	for _, b := range p {
		r.feed(b)
	}
}

func (r *StatusReader) feed(b byte) {
	if b == xon || b == xoff {
		return
	}
	if r.n > 0 {
		if b&asbMaskN == 0 {
			r.pkt[r.n] = b
			if r.n++; r.n == len(r.pkt) {
				r.out = append(r.out, Reply{Kind: AutoStatus, Data: r.pkt})
				r.n = 0
			}
			return
		}
		for _, g := range r.pkt[:r.n] {
			r.out = append(r.out, Reply{Kind: Garbage, Data: [4]byte{g}})
		}
		r.n = 0
	}
	switch {
	case b&rtMask == rtFixed:
		r.out = append(r.out, Reply{Kind: RealTime, Data: [4]byte{b}})
	case b&asbMask0 == asbFixed:
		r.pkt[0], r.n = b, 1
	default:
		r.out = append(r.out, Reply{Kind: Garbage, Data: [4]byte{b}})
	}
}

// Next returns the oldest reply not yet returned.
func (r *StatusReader) Next() (Reply, bool) {
	if r.head == len(r.out) {
		r.out, r.head = r.out[:0], 0
		return Reply{}, false
	}
	rep := r.out[r.head]
	r.head++
	return rep, true
}

// Reset forgets everything fed so far.
func (r *StatusReader) Reset() {
	r.n, r.out, r.head = 0, r.out[:0], 0
}
