package escpos

import "time"

// Timing is how fast a printer without flow control takes bytes and
// moves paper, for pacing writes to it the way Adafruit_Thermal does:
// after each chunk the host waits until the printer has had time to print
// it, so that the printer's small receive buffer never overflows.
type Timing struct {
	Baud        int           // serial speed; a byte takes 11 bit times (start, 8 data, stop, idle)
	DotPrint    time.Duration // paper advance of one dot row while printing
	DotFeed     time.Duration // paper advance of one dot row while feeding
	CharHeight  int           // dot rows of a text line at height 1 (font A: 24)
	LineSpacing int           // dot rows fed between text lines at the default spacing
	Columns     int           // characters per line at width 1, after which the printer wraps
}

// DefaultTiming is Adafruit_Thermal's calibration for the CSN-A2 class of
// printers it sells: 30 ms per printed and 2.1 ms per fed dot row, 24-dot
// characters, 6 dots between lines, 32 columns.
func DefaultTiming(baud int) Timing {
	return Timing{
		Baud:        baud,
		DotPrint:    30 * time.Millisecond,
		DotFeed:     2100 * time.Microsecond,
		CharHeight:  24,
		LineSpacing: 6,
		Columns:     32,
	}
}

// ByteTime is the wire time of one byte, rounded to the microsecond as in
// Adafruit_Thermal's BYTE_TIME.
func (t Timing) ByteTime() time.Duration {
	if t.Baud <= 0 {
		return 0
	}
	return time.Duration((11_000_000+t.Baud/2)/t.Baud) * time.Microsecond
}

// QR Code byte-mode capacity of versions 1 to 10 by error correction
// level (ISO/IEC 18004), to estimate a symbol's height.
var qrBytes = [10][4]int{
	{17, 14, 11, 7}, {32, 26, 20, 14}, {53, 42, 32, 24}, {78, 62, 46, 34}, {106, 84, 60, 44},
	{134, 106, 74, 58}, {154, 122, 86, 64}, {192, 152, 108, 84}, {230, 180, 130, 98}, {271, 213, 151, 119},
}

// hriRows is what Adafruit_Thermal adds to a bar code's height for its
// human-readable line.
const hriRows = 40

// pacer knows how long the printer takes for each token.
type pacer struct {
	t      Timing
	m      modes
	col    int  // characters on the current line
	inLine bool // text waits in the line buffer
}

func newPacer(t Timing) *pacer {
	p := &pacer{t: t}
	p.m.reset()
	return p
}

// textLine is the time to print a line of text and feed the spacing
// after it; blankLine the time to feed an empty one.
func (p *pacer) textLine() time.Duration {
	h := p.t.CharHeight * p.m.height
	return time.Duration(h)*p.t.DotPrint + time.Duration(p.spacing(h))*p.t.DotFeed
}

func (p *pacer) blankLine() time.Duration {
	h := p.t.CharHeight * p.m.height
	return time.Duration(h+p.spacing(h)) * p.t.DotFeed
}

// spacing is the dot rows fed after a line of h rows.
func (p *pacer) spacing(h int) int {
	if p.m.pitch == 0 {
		return p.t.LineSpacing
	}
	return max(0, p.m.pitch-h)
}

// endLine is the time the line buffer takes to print, if it holds text.
func (p *pacer) endLine() time.Duration {
	d := time.Duration(0)
	if p.inLine {
		d = time.Duration(p.t.CharHeight*p.m.height) * p.t.DotPrint
	}
	p.col, p.inLine = 0, false
	return d
}

// cost is the time the printer needs, beyond receiving its bytes, for the
// complete token b of kind o:
//
//	a text line:     CharHeight×height×DotPrint + spacing×DotFeed (also on a wrap)
//	an empty line:   (CharHeight×height + spacing)×DotFeed
//	ESC d n:         LF, then n-1 empty lines (n=0: the text line without the feed)
//	ESC J n:         the text line without the feed, then n×DotFeed
//	GS v 0 image:    rows×DotPrint
//	GS k bar code:   (height + 40)×DotPrint
//	GS ( k QR print: module×(17+4×version)×DotPrint, version 40 past version 10
//	GS V 65/66 n:    n×DotFeed
func (p *pacer) cost(o op, b []byte) time.Duration {
	var d time.Duration
	switch o {
	case opText:
		cols := max(1, p.t.Columns/p.m.width)
		for range b {
			if p.col == cols {
				d += p.textLine()
				p.col = 0
			}
			p.col++
			p.inLine = true
		}
	case lf:
		if p.inLine {
			d = p.textLine()
		} else {
			d = p.blankLine()
		}
		p.col, p.inLine = 0, false
	case opFeedLines:
		n := int(b[2])
		switch {
		case n == 0:
			d = p.endLine()
		case p.inLine:
			d = p.textLine() + time.Duration(n-1)*p.blankLine()
		default:
			d = time.Duration(n) * p.blankLine()
		}
		p.col, p.inLine = 0, false
	case opFeedDots:
		d = p.endLine() + time.Duration(b[2])*p.t.DotFeed
	case opRaster:
		d = p.endLine() + time.Duration(int(b[6])|int(b[7])<<8)*p.t.DotPrint
	case opBarcode:
		d = p.endLine() + time.Duration(p.m.barHeight+hriRows)*p.t.DotPrint
	case opSymbol:
		p.m.apply(o, b)
		if len(b) > 6 && b[5] == qrSymbol && b[6] == qrFnPrint {
			d = p.endLine() + time.Duration(p.qrRows())*p.t.DotPrint
		}
	case opCut:
		d = p.endLine()
		if len(b) == 4 {
			d += time.Duration(b[3]) * p.t.DotFeed
		}
	case opInit:
		p.m.reset()
		p.col, p.inLine = 0, false
	default:
		p.m.apply(o, b)
	}
	return d
}

// qrRows estimates the height of the stored QR Code in dot rows.
func (p *pacer) qrRows() int {
	version := 40
	for v, c := range qrBytes {
		if len(p.m.qrData) <= c[p.m.qrECC] {
			version = v + 1
			break
		}
	}
	return p.m.qrModule * (17 + 4*version)
}
