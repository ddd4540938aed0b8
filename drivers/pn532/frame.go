package pn532

import (
	"bytes"
	"errors"
	"fmt"
)

// Frame identifiers (TFI), UM0701 §6.2.1.1.
const (
	TFIHost byte = 0xD4 // a frame from the host controller to the PN532
	TFIChip byte = 0xD5 // a frame from the PN532 to the host controller
)

// MaxFrameLen is the most TFI and packet data bytes one frame carries: the
// extended frame's firmware limit (UM0701 §6.2.1.2).
const MaxFrameLen = 265

// Errors DecodeFrame returns. ErrShortFrame means "read more bytes"; the
// other two mean the bytes are corrupt and the frame must be sent again.
var (
	ErrShortFrame = errors.New("pn532: frame incomplete")
	ErrChecksum   = errors.New("pn532: frame checksum mismatch")
	ErrFrame      = errors.New("pn532: malformed frame")
)

// FrameKind tells the four frame types of UM0701 §6.2.1 apart.
type FrameKind uint8

// Frame kinds.
const (
	FrameInfo  FrameKind = iota + 1 // normal or extended information frame: a command or a response
	FrameAck                        // 00 00 FF 00 FF 00: frame received; from the host, abort
	FrameNack                       // 00 00 FF FF 00 00: host asks for the last response again
	FrameError                      // 00 00 FF 01 FF 7F 81 00: syntax error at application level
)

func (k FrameKind) String() string {
	switch k {
	case FrameInfo:
		return "info"
	case FrameAck:
		return "ACK"
	case FrameNack:
		return "NACK"
	case FrameError:
		return "error"
	}
	return fmt.Sprintf("FrameKind(%d)", uint8(k))
}

// Frame is one decoded frame.
type Frame struct {
	Kind FrameKind
	// TFI is TFIHost or TFIChip for an information frame, 0x7F for an
	// error frame.
	TFI byte
	// Data is PD0..PDn of an information frame; PD0 is the command code
	// (or the response code, the command code plus one). It aliases the
	// decoded bytes.
	Data []byte
	// Extended is set when the frame used the extended length field.
	Extended bool
}

var (
	startCode  = []byte{0x00, 0x00, 0xFF} // preamble and start code
	ackFrame   = []byte{0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}
	nackFrame  = []byte{0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00}
	errorFrame = []byte{0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00}
)

const (
	tfiError      = 0x7F // the error frame's single byte
	frameOverhead = 7    // preamble, start code (2), LEN, LCS, DCS, postamble
)

// EncodeFrame returns the information frame carrying tfi and data, data[0]
// being the command code. It uses the normal frame up to 255 bytes of TFI
// and data and the extended frame above, as the PN532 itself does.
//
// Layout (UM0701 §6.2.1.1 and §6.2.1.2), LEN counting TFI and data:
//
//	normal:   00 00 FF LEN LCS TFI PD0..PDn DCS 00
//	extended: 00 00 FF FF FF LENM LENL LCS TFI PD0..PDn DCS 00
//
// LCS makes the length bytes sum to 0 and DCS makes TFI and data sum to 0,
// modulo 256.
func EncodeFrame(tfi byte, data []byte) ([]byte, error) {
	return appendFrame(nil, tfi, data, len(data)+1 > 255)
}

func appendFrame(dst []byte, tfi byte, data []byte, extended bool) ([]byte, error) {
	if tfi != TFIHost && tfi != TFIChip {
		return nil, fmt.Errorf("%w: TFI 0x%02x is neither 0xD4 nor 0xD5", ErrFrame, tfi)
	}
	n := len(data) + 1
	if len(data) == 0 || n > MaxFrameLen {
		return nil, fmt.Errorf("%w: %d data bytes, want 1 to %d", ErrFrame, len(data), MaxFrameLen-1)
	}
	dst = append(dst, startCode...)
	if extended {
		m, l := byte(n>>8), byte(n)
		dst = append(dst, 0xFF, 0xFF, m, l, -(m + l))
	} else {
		dst = append(dst, byte(n), -byte(n))
	}
	sum := tfi
	for _, b := range data {
		sum += b
	}
	dst = append(dst, tfi)
	dst = append(dst, data...)
	return append(dst, -sum, 0x00), nil
}

// DecodeFrame decodes the first frame in b, skipping any bytes before its
// preamble and start code (00 00 FF). n is how many bytes of b the caller
// is done with: on success, up to the frame's postamble; on ErrShortFrame,
// the garbage before a start code (keep the rest and read more); on
// ErrChecksum or ErrFrame, enough to move past the bad start code and
// decode again. DecodeFrame never panics, whatever b holds.
func DecodeFrame(b []byte) (f Frame, n int, err error) {
	i := bytes.Index(b, startCode)
	if i < 0 {
		// The last two bytes may begin a start code.
		return Frame{}, max(0, len(b)-2), fmt.Errorf("%w: no start code in %d bytes", ErrShortFrame, len(b))
	}
	f, m, err := decodeAt(b[i:])
	switch {
	case err == nil:
		return f, i + m, nil
	case errors.Is(err, ErrShortFrame):
		return Frame{}, i, err
	}
	return Frame{}, i + 1, err
}

// decodeAt decodes the frame p begins with; p starts with 00 00 FF.
func decodeAt(p []byte) (Frame, int, error) {
	if len(p) < 5 {
		return Frame{}, 0, fmt.Errorf("%w: %d bytes, no length yet", ErrShortFrame, len(p))
	}
	l, lcs := p[3], p[4]
	switch {
	case l == 0x00 && lcs == 0xFF:
		return fixed(p, ackFrame, FrameAck)
	case l == 0xFF && lcs == 0x00:
		return fixed(p, nackFrame, FrameNack)
	case l == 0xFF && lcs == 0xFF:
		if len(p) < 8 {
			return Frame{}, 0, fmt.Errorf("%w: %d bytes, no extended length yet", ErrShortFrame, len(p))
		}
		m, ll, lcs := p[5], p[6], p[7]
		if m+ll+lcs != 0 {
			return Frame{}, 0, fmt.Errorf("%w: LCS 0x%02x for LENM 0x%02x LENL 0x%02x", ErrChecksum, lcs, m, ll)
		}
		return body(p, 8, int(m)<<8|int(ll), true)
	}
	if l+lcs != 0 {
		return Frame{}, 0, fmt.Errorf("%w: LCS 0x%02x for LEN 0x%02x", ErrChecksum, lcs, l)
	}
	return body(p, 5, int(l), false)
}

// fixed checks p against one of the fixed six-byte frames whose length
// code it carries.
func fixed(p, want []byte, k FrameKind) (Frame, int, error) {
	if len(p) < len(want) {
		return Frame{}, 0, fmt.Errorf("%w: %d bytes of a %s frame", ErrShortFrame, len(p), k)
	}
	if p[len(want)-1] != 0x00 {
		return Frame{}, 0, fmt.Errorf("%w: postamble 0x%02x after %s", ErrFrame, p[len(want)-1], k)
	}
	return Frame{Kind: k}, len(want), nil
}

// body decodes TFI, data, DCS and postamble: n bytes of TFI and data start
// at p[off].
func body(p []byte, off, n int, extended bool) (Frame, int, error) {
	if n == 0 || n > MaxFrameLen {
		return Frame{}, 0, fmt.Errorf("%w: length %d, want 1 to %d", ErrFrame, n, MaxFrameLen)
	}
	end := off + n + 2
	if len(p) < end {
		return Frame{}, 0, fmt.Errorf("%w: %d of %d bytes", ErrShortFrame, len(p), end)
	}
	var sum byte
	for _, b := range p[off : off+n+1] {
		sum += b
	}
	if sum != 0 {
		return Frame{}, 0, fmt.Errorf("%w: DCS 0x%02x", ErrChecksum, p[off+n])
	}
	if p[end-1] != 0x00 {
		return Frame{}, 0, fmt.Errorf("%w: postamble 0x%02x", ErrFrame, p[end-1])
	}
	tfi := p[off]
	switch {
	case tfi == tfiError && n == 1 && !extended:
		return Frame{Kind: FrameError, TFI: tfi}, end, nil
	case tfi != TFIHost && tfi != TFIChip:
		return Frame{}, 0, fmt.Errorf("%w: TFI 0x%02x", ErrFrame, tfi)
	case n < 2:
		return Frame{}, 0, fmt.Errorf("%w: no command code after the TFI", ErrFrame)
	}
	return Frame{Kind: FrameInfo, TFI: tfi, Data: p[off+1 : off+n], Extended: extended}, end, nil
}
