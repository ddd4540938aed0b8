package escpos

import (
	"fmt"
	"image"
	"unicode/utf8"

	"github.com/microretail/kioskd/drivers/barcode"
)

// Paper is a roll width: characters per line in font A (12×24 dots) and
// printable dots per line at 8 dots/mm.
type Paper struct{ Columns, Dots int }

// Paper widths.
var (
	Paper58 = Paper{Columns: 32, Dots: 384}
	Paper80 = Paper{Columns: 48, Dots: 576}
)

// Align is a line's justification.
type Align uint8

// Justifications, the n of ESC a.
const (
	Left Align = iota
	Center
	Right
)

// ECC is a QR Code error correction level.
type ECC uint8

// QR Code error correction levels; fn 169 of GS ( k sends 48 plus these.
const (
	ECCLow      ECC = iota // 7 % of the symbol can be restored; the printer's default
	ECCMedium              // 15 %
	ECCQuartile            // 25 %
	ECCHigh                // 30 %
)

// QR is how a QR Code prints.
type QR struct {
	Module int // dots per module, 1 to 16; 0 is 6
	ECC    ECC
}

// Encoder settings that are no printer command.
const (
	defaultModule = 6  // QR dots per module when QR.Module is 0: 0.75 mm
	barHeight     = 80 // bar code height: 10 mm
	eanWidth      = 3  // EAN module width: 0.375 mm, 113 % of nominal
	code128Width  = 2  // CODE128 module width: 0.25 mm, so that 14 characters fit 58 mm paper
	maxBand       = 255
)

// QR capacity at version 40 by error correction level (ISO/IEC 18004),
// for numeric, alphanumeric and byte data.
var qrCapacity = [3][4]int{
	{7089, 5596, 3993, 3057},
	{4296, 3391, 2420, 1852},
	{2953, 2331, 1663, 1273},
}

// Encoder appends ESC/POS commands to a buffer. Its errors are sticky: the
// first one is kept and later calls do nothing, like bufio.Writer; start
// a new Encoder after one. Align, bar codes, QR codes, images and Cut
// begin on a new line: with text pending they end it with LF first, since
// the printer ignores them in mid-line.
type Encoder struct {
	buf     []byte
	err     error
	page    CodePage
	paper   Paper
	midLine bool // text since the last line end
}

// NewEncoder returns an encoder for 58 mm paper with the power-on code
// page, PC437.
func NewEncoder() *Encoder { return &Encoder{page: PC437, paper: Paper58} }

// Bytes returns the commands so far. The slice aliases the encoder's
// buffer until the next call.
func (e *Encoder) Bytes() []byte { return e.buf }

// Err returns the first error, if any.
func (e *Encoder) Err() error { return e.err }

func (e *Encoder) fail(format string, a ...any) error {
	if e.err == nil {
		e.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
	}
	return e.err
}

func (e *Encoder) put(b ...byte) { e.buf = append(e.buf, b...) }

// lineStart ends pending text.
func (e *Encoder) lineStart() {
	if e.midLine {
		e.put(lf)
		e.midLine = false
	}
}

// SetPaper says what paper the printer has; bar codes and images are
// checked against its width. It sends nothing.
func (e *Encoder) SetPaper(p Paper) {
	if e.err == nil && (p.Columns <= 0 || p.Dots <= 0 || p.Dots%8 != 0) {
		e.fail("paper %+v", p)
		return
	}
	e.paper = p
}

// Init sends ESC @: the printer drops any unprinted text and resets its
// print modes and code page; so does the encoder.
func (e *Encoder) Init() {
	if e.err != nil {
		return
	}
	e.put(esc, '@')
	e.page, e.midLine = PC437, false
}

// SetCodePage sends ESC t n; Text encodes through cp from then on.
func (e *Encoder) SetCodePage(cp CodePage) {
	if e.err != nil {
		return
	}
	if cp.cm == nil {
		e.fail("code page %q has no character map", cp.Name)
		return
	}
	e.put(esc, 't', cp.Number)
	e.page = cp
}

// Bold sends ESC E n.
func (e *Encoder) Bold(on bool) {
	if e.err != nil {
		return
	}
	var n byte
	if on {
		n = 1
	}
	e.put(esc, 'E', n)
}

// Underline sends ESC - n: 0 off, 1 or 2 dots thick.
func (e *Encoder) Underline(dots int) {
	if e.err != nil {
		return
	}
	if dots < 0 || dots > 2 {
		e.fail("underline of %d dots (0 to 2)", dots)
		return
	}
	e.put(esc, '-', byte(dots))
}

// Size sends GS ! n: characters width and height times as large, 1 to 8.
func (e *Encoder) Size(width, height int) {
	if e.err != nil {
		return
	}
	if width < 1 || width > 8 || height < 1 || height > 8 {
		e.fail("character size %d×%d (1 to 8)", width, height)
		return
	}
	e.put(gs, '!', byte(width-1)<<4|byte(height-1))
}

// Align sends ESC a n.
func (e *Encoder) Align(a Align) {
	if e.err != nil {
		return
	}
	if a > Right {
		e.fail("alignment %d", a)
		return
	}
	e.lineStart()
	e.put(esc, 'a', byte(a))
}

// Text sends s through the code page: '\n' becomes LF, other control
// characters are dropped, and characters the page lacks print as '?'.
func (e *Encoder) Text(s string) {
	if e.err != nil {
		return
	}
	for _, r := range s {
		switch {
		case r == '\n':
			e.put(lf)
			e.midLine = false
			continue
		case r < 0x20 || (r >= 0x7f && r < 0xa0):
			continue
		case r == utf8.RuneError:
			e.put('?')
		default:
			e.put(e.page.encode(r))
		}
		e.midLine = true
	}
}

// Line sends Text(s) and LF.
func (e *Encoder) Line(s string) {
	e.Text(s)
	if e.err == nil {
		e.put(lf)
		e.midLine = false
	}
}

// Feed sends ESC d n: it prints pending text and feeds lines lines.
func (e *Encoder) Feed(lines int) {
	if e.err != nil {
		return
	}
	if lines < 0 || lines > 255 {
		e.fail("feed of %d lines (0 to 255)", lines)
		return
	}
	e.put(esc, 'd', byte(lines))
	e.midLine = false
}

// barcode sends the bar code settings and GS k m n d1 ... dn.
func (e *Encoder) barcode(m byte, width byte, data []byte) {
	e.lineStart()
	e.put(gs, 'h', barHeight, gs, 'w', width, gs, 'H', hriBelow, gs, 'k', m, byte(len(data)))
	e.put(data...)
}

// EAN13 prints code as an EAN-13 bar code (GS k, form 2, m=67) with the
// digits below. Twelve digits get their check digit added; thirteen must
// carry the right one. All 13 digits are sent.
func (e *Encoder) EAN13(code string) error {
	return e.ean(code, 13, 95, barEAN13, barcode.EAN13)
}

// EAN8 prints code as an EAN-8 bar code (GS k, form 2, m=68): 7 digits
// and the check digit added, or 8 with the right one.
func (e *Encoder) EAN8(code string) error {
	return e.ean(code, 8, 67, barEAN8, barcode.EAN8)
}

// ean checks an EAN code of n digits, modules wide with its guard bars.
func (e *Encoder) ean(code string, n, modules int, m byte, want barcode.Symbology) error {
	if e.err != nil {
		return e.err
	}
	if len(code) == n-1 {
		c, err := barcode.CheckDigit(code)
		if err != nil {
			return e.fail("%v %q: %w", want, code, err)
		}
		code += string(c)
	}
	s, err := barcode.Classify(code)
	switch {
	case err != nil:
		return e.fail("%v %q: %w", want, code, err)
	case s != want:
		return e.fail("%v %q: %d digits", want, code, len(code))
	case modules*eanWidth > e.paper.Dots:
		return e.fail("%v %q: wider than the paper", want, code)
	}
	e.barcode(m, eanWidth, []byte(code))
	return nil
}

// Code128 prints data as a CODE128 bar code (GS k, form 2, m=73) with the
// text below: in code set C ({C, two digits a byte) when data is an even
// number of digits, else in code set B ({B, with '{' sent as "{{"). Data
// must be printable ASCII and fit the paper.
func (e *Encoder) Code128(data string) error {
	if e.err != nil {
		return e.err
	}
	if data == "" {
		return e.fail("empty CODE128")
	}
	digits := len(data)%2 == 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c < 0x20 || c > 0x7e {
			return e.fail("CODE128 %q: byte 0x%02x at %d is not printable ASCII", data, c, i)
		}
		digits = digits && c >= '0' && c <= '9'
	}
	var d []byte
	symbols := len(data)
	if digits {
		symbols /= 2
		d = append(d, '{', 'C')
		for i := 0; i < len(data); i += 2 {
			d = append(d, (data[i]-'0')*10+data[i+1]-'0')
		}
	} else {
		d = append(d, '{', 'B')
		for i := 0; i < len(data); i++ {
			if data[i] == '{' {
				d = append(d, '{')
			}
			d = append(d, data[i])
		}
	}
	// Start, data and check symbols of 11 modules, stop of 13.
	if (11*(symbols+2)+13)*code128Width > e.paper.Dots {
		return e.fail("CODE128 %q: wider than the paper", data)
	}
	if len(d) > 255 {
		return e.fail("CODE128 %q: %d bytes (255 at most)", data, len(d))
	}
	e.barcode(barCode128, code128Width, d)
	return nil
}

// symbol sends GS ( k pL pH 49 fn params.
func (e *Encoder) symbol(fn byte, params ...byte) {
	k := 2 + len(params)
	e.put(gs, '(', 'k', byte(k), byte(k>>8), qrSymbol, fn)
	e.put(params...)
}

// QRCode prints data as a QR Code, model 2, with the standard GS ( k
// sequence: functions 165 (model), 167 (module size), 169 (error
// correction), 180 (store the data) and 181 (print). Data that no QR
// version holds at q.ECC is ErrInvalid.
func (e *Encoder) QRCode(data string, q QR) error {
	if e.err != nil {
		return e.err
	}
	if q.Module == 0 {
		q.Module = defaultModule
	}
	switch {
	case data == "":
		return e.fail("empty QR Code")
	case q.Module < 1 || q.Module > 16:
		return e.fail("QR module of %d dots (1 to 16)", q.Module)
	case q.ECC > ECCHigh:
		return e.fail("QR error correction %d", q.ECC)
	case len(data) > qrCapacity[qrMode(data)][q.ECC]:
		return e.fail("QR Code of %d bytes: more than version 40 holds", len(data))
	}
	e.lineStart()
	e.symbol(qrFnModel, qrModel2, 0)
	e.symbol(qrFnModule, byte(q.Module))
	e.symbol(qrFnECC, '0'+byte(q.ECC))
	e.symbol(qrFnStore, append([]byte{qrM}, data...)...)
	e.symbol(qrFnPrint, qrM)
	return nil
}

// qrMode is the densest QR mode for data: 0 numeric, 1 alphanumeric, 2 byte.
func qrMode(data string) int {
	mode := 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c >= '0' && c <= '9':
		case (c >= 'A' && c <= 'Z') || c == ' ' || c == '$' || c == '%' || c == '*' ||
			c == '+' || c == '-' || c == '.' || c == '/' || c == ':':
			mode = max(mode, 1)
		default:
			return 2
		}
	}
	return mode
}

// Image prints img as a raster bit image (GS v 0, m=0) in bands of at most
// 255 rows. A pixel prints black when it is darker than mid-grey over
// white paper. Images wider than the paper are ErrInvalid.
func (e *Encoder) Image(img image.Image) error {
	if e.err != nil {
		return e.err
	}
	r := img.Bounds()
	w, h := r.Dx(), r.Dy()
	if w <= 0 || h <= 0 || w > e.paper.Dots {
		return e.fail("image of %d×%d dots on paper %d dots wide", w, h, e.paper.Dots)
	}
	e.lineStart()
	xb := (w + 7) / 8
	for y0 := 0; y0 < h; y0 += maxBand {
		rows := min(maxBand, h-y0)
		e.put(gs, 'v', '0', rasterNormal, byte(xb), byte(xb>>8), byte(rows), byte(rows>>8))
		for y := y0; y < y0+rows; y++ {
			row := make([]byte, xb)
			for x := 0; x < w; x++ {
				if dark(img, r.Min.X+x, r.Min.Y+y) {
					row[x/8] |= 0x80 >> (x % 8)
				}
			}
			e.put(row...)
		}
	}
	return nil
}

// dark reports whether the pixel, laid over white paper, is darker than
// mid-grey (ITU-R BT.601 luma).
func dark(img image.Image, x, y int) bool {
	r, g, b, a := img.At(x, y).RGBA() // alpha-premultiplied, 16 bits
	luma := (19595*r+38470*g+7471*b+1<<15)>>16 + (0xffff - a)
	return luma < 0x8000
}

// Cut sends GS V 66 0 (partial) or GS V 65 0 (full): the printer feeds the
// last line past the cutter, then cuts.
func (e *Encoder) Cut(partial bool) {
	if e.err != nil {
		return
	}
	e.lineStart()
	m := byte(cutFullAfterFeed)
	if partial {
		m = cutPartialAfterFeed
	}
	e.put(gs, 'V', m, 0)
}

// drawerPin is m of ESC p and DLE DC4 for connector pin 2 or 5.
func (e *Encoder) drawerPin(pin int) (byte, bool) {
	switch pin {
	case 2:
		return 0, true
	case 5:
		return 1, true
	}
	e.fail("drawer pin %d (2 or 5)", pin)
	return 0, false
}

// Pulse sends ESC p m t1 t2: a pulse on drawer kick-out connector pin 2
// or 5, on for onMs and off for offMs, in 2 ms steps up to 510 ms. It
// runs in turn with the data before it; while the printer is offline it
// waits (see PulseNow).
func (e *Encoder) Pulse(pin, onMs, offMs int) {
	if e.err != nil {
		return
	}
	m, ok := e.drawerPin(pin)
	if !ok {
		return
	}
	if onMs < 2 || onMs > 510 || offMs < 0 || offMs > 510 {
		e.fail("drawer pulse %d ms on, %d ms off (2 to 510, 0 to 510)", onMs, offMs)
		return
	}
	e.put(esc, 'p', m, byte((onMs+1)/2), byte((offMs+1)/2))
}

// PulseNow sends DLE DC4 1 m t, a real-time pulse: on for onMs and off as
// long, in 100 ms steps from 100 to 800 ms. The printer runs it as it
// arrives, even offline (paper out, cover open). Send it alone, not in
// the middle of another command's data.
func (e *Encoder) PulseNow(pin, onMs int) {
	if e.err != nil {
		return
	}
	m, ok := e.drawerPin(pin)
	if !ok {
		return
	}
	if onMs < 100 || onMs > 800 {
		e.fail("real-time drawer pulse of %d ms (100 to 800)", onMs)
		return
	}
	e.put(dle, dc4, 1, m, byte((onMs+50)/100))
}
