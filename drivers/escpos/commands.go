package escpos

import "errors"

// The ESC/POS byte stream, from the Epson ESC/POS Command Reference (TM
// series). The tokenizer below is the one parser of it: the emulator runs
// the stream through it to print, the pacer to time it.

// Control bytes.
const (
	nul  = 0x00 // terminates ESC D and the data of GS k form 1
	eot  = 0x04 // EOT, second byte of DLE EOT
	enq  = 0x05 // ENQ, second byte of DLE ENQ
	ht   = 0x09 // HT: move to the next tab stop (every 8 columns by default)
	lf   = 0x0a // LF: print the line buffer and feed one line
	dle  = 0x10 // DLE: starts the real-time commands
	xon  = 0x11 // XON (DC1) in the reply stream: the printer can receive
	xoff = 0x13 // XOFF (DC3) in the reply stream: the printer's buffer is nearly full
	dc4  = 0x14 // DC4, second byte of DLE DC4
	esc  = 0x1b // ESC: command prefix
	fs   = 0x1c // FS: command prefix (kanji and NV graphics)
	gs   = 0x1d // GS: command prefix
)

// op names a token of the stream: a command's leading bytes packed
// big-endian (ESC @ is 0x1b40, GS ( k is 0x1d286b), a lone control byte
// (LF is 0x0a), opText or opUnknown.
type op uint32

const (
	opText    op = 0x100 // a run of printable bytes, 0x20 and up, through the code page
	opUnknown op = 0x101 // ESC, GS, FS or DLE command of unknown length: its two leading bytes
)

// Commands the encoder emits or the emulator acts on.
const (
	opInit        op = 0x1b40   // ESC @: clear the print buffer, reset the print modes
	opCodePage    op = 0x1b74   // ESC t n: character code table n
	opBold        op = 0x1b45   // ESC E n: emphasised when bit 0 of n is set
	opUnderline   op = 0x1b2d   // ESC - n: underline off (0, 48), 1 dot (1, 49), 2 dots (2, 50)
	opAlign       op = 0x1b61   // ESC a n: left (0, 48), centre (1, 49), right (2, 50); only at a line start
	opFeedLines   op = 0x1b64   // ESC d n: print the line buffer and feed n lines
	opFeedDots    op = 0x1b4a   // ESC J n: print the line buffer and feed n motion units
	opSpacing     op = 0x1b33   // ESC 3 n: line spacing n motion units
	opSpacingStd  op = 0x1b32   // ESC 2: default line spacing, 1/6 inch
	opPulse       op = 0x1b70   // ESC p m t1 t2: drawer pulse, pin 2 (m 0, 48) or 5 (1, 49), on t1×2 ms, off t2×2 ms
	opSize        op = 0x1d21   // GS ! n: width (bits 4-7) and height (bits 0-3) magnification minus one, 0 to 7
	opBarHeight   op = 0x1d68   // GS h n: bar code height, n dots, 1 to 255
	opBarWidth    op = 0x1d77   // GS w n: bar code module width, n dots, 2 to 6
	opHRI         op = 0x1d48   // GS H n: human-readable digits none (0), above (1), below (2), both (3)
	opBarcode     op = 0x1d6b   // GS k m ...: print a bar code of system m
	opCut         op = 0x1d56   // GS V m [n]: cut; m 65 full, 66 partial after feeding to the cutter plus n units
	opASB         op = 0x1d61   // GS a n: automatic status back for the items in n, 0 disables
	opRaster      op = 0x1d7630 // GS v 0 m xL xH yL yH d...: raster bit image, x bytes wide, y dots high
	opSymbol      op = 0x1d286b // GS ( k pL pH cn fn ...: 2D symbol function fn of symbol cn
	opStatus      op = 0x1004   // DLE EOT n: real-time status n, 1 to 4
	opRecover     op = 0x1005   // DLE ENQ n: real-time request: recover from an error (1, 2)
	opPulseNow    op = 0x1014   // DLE DC4 fn ...: real-time; fn 1 m t: drawer pulse on pin m, t×100 ms on and off
	opTabs        op = 0x1b44   // ESC D n1 ... nk NUL: tab stops
	opUserChars   op = 0x1b26   // ESC & y c1 c2 [x d1 ... d(y×x)] ...: define user characters
	opBitImage    op = 0x1b2a   // ESC * m nL nH d...: bit image, 8-dot (m 0, 1) or 24-dot (32, 33) columns
	opDefineImage op = 0x1d2a   // GS * x y d...: define a downloaded image of x×8 by y×8 dots
)

// Parameters of the commands above.
const (
	cutFullAfterFeed    = 65 // GS V m: feed to the cutter, then full cut
	cutPartialAfterFeed = 66 // GS V m: feed to the cutter, then partial cut (one point left)

	barEAN13   = 67 // GS k m: JAN13/EAN-13, n 12 or 13 digits
	barEAN8    = 68 // GS k m: JAN8/EAN-8, n 7 or 8 digits
	barCode128 = 73 // GS k m: CODE128, n 2 to 255 bytes, led by a code set selection {A, {B or {C

	hriBelow = 2 // GS H n: digits below the bars

	rasterNormal = 0 // GS v 0 m: normal density (m 0, 48)

	qrSymbol   = 49 // cn of GS ( k: QR Code
	qrFnModel  = 65 // fn 165: model n1, 49 model 1, 50 model 2, 51 micro; n2 0
	qrModel2   = 50 // QR Code model 2
	qrFnModule = 67 // fn 167: module size n dots, 1 to 16
	qrFnECC    = 69 // fn 169: error correction 48 L (7%), 49 M (15%), 50 Q (25%), 51 H (30%)
	qrFnStore  = 80 // fn 180: store m=48 and the data in the symbol storage area
	qrFnPrint  = 81 // fn 181: print the stored symbol, m=48
	qrM        = 48 // m of fn 180 and fn 181

	asbDrawer = 0x01 // GS a n bit 0: drawer kick-out connector pin 3
	asbOnline = 0x02 // GS a n bit 1: online/offline
	asbError  = 0x04 // GS a n bit 2: error
	asbPaper  = 0x08 // GS a n bit 3: roll paper sensors
)

// errShort means the command's length is not known yet: more bytes must come.
var errShort = errors.New("escpos: command incomplete")

// maxToken bounds a command's length; longer ones (a GS v 0 image of
// 65535×65535 bytes) are not taken as commands.
const maxToken = 1 << 24

// fixedLen is the length, leading bytes included, of the commands whose
// parameters have a fixed size.
var fixedLen = map[op]int{
	0x1b0c: 2,  // ESC FF: print data in page mode
	0x1b20: 3,  // ESC SP n: right-side character spacing
	0x1b21: 3,  // ESC ! n: print mode
	0x1b24: 4,  // ESC $ nL nH: absolute print position
	0x1b25: 3,  // ESC % n: user-defined character set on/off
	0x1b2d: 3,  // ESC - n: underline
	0x1b32: 2,  // ESC 2: default line spacing
	0x1b33: 3,  // ESC 3 n: line spacing
	0x1b37: 5,  // ESC 7 n1 n2 n3: heating dots, time and interval (CSN-A2 and clones)
	0x1b3c: 2,  // ESC <: return home
	0x1b3d: 3,  // ESC = n: select peripheral device
	0x1b3f: 3,  // ESC ? n: cancel user-defined character
	0x1b40: 2,  // ESC @: initialise
	0x1b45: 3,  // ESC E n: emphasis
	0x1b47: 3,  // ESC G n: double strike
	0x1b4a: 3,  // ESC J n: print and feed n units
	0x1b4b: 3,  // ESC K n: print and reverse feed n units
	0x1b4c: 2,  // ESC L: page mode
	0x1b4d: 3,  // ESC M n: character font
	0x1b52: 3,  // ESC R n: international character set
	0x1b53: 2,  // ESC S: standard mode
	0x1b54: 3,  // ESC T n: print direction in page mode
	0x1b55: 3,  // ESC U n: unidirectional printing
	0x1b56: 3,  // ESC V n: 90° rotation
	0x1b57: 10, // ESC W xL xH yL yH dxL dxH dyL dyH: page mode print area
	0x1b5c: 4,  // ESC \ nL nH: relative print position
	0x1b61: 3,  // ESC a n: justification
	0x1b63: 4,  // ESC c n m: paper sensors (ESC c 3, ESC c 4) and panel buttons (ESC c 5)
	0x1b64: 3,  // ESC d n: print and feed n lines
	0x1b65: 3,  // ESC e n: print and reverse feed n lines
	0x1b69: 2,  // ESC i: partial cut (legacy)
	0x1b6d: 2,  // ESC m: partial cut (legacy)
	0x1b70: 5,  // ESC p m t1 t2: drawer pulse
	0x1b72: 3,  // ESC r n: print colour
	0x1b74: 3,  // ESC t n: character code table
	0x1b75: 3,  // ESC u n: transmit peripheral status
	0x1b76: 2,  // ESC v: transmit paper sensor status
	0x1b7b: 3,  // ESC { n: upside-down printing
	0x1c21: 3,  // FS ! n: kanji print mode
	0x1c26: 2,  // FS &: kanji mode on
	0x1c2d: 3,  // FS - n: kanji underline
	0x1c2e: 2,  // FS .: kanji mode off
	0x1c32: 76, // FS 2 c1 c2 d1 ... d72: define a user kanji
	0x1c43: 3,  // FS C n: kanji code system
	0x1c53: 4,  // FS S n1 n2: kanji spacing
	0x1c57: 3,  // FS W n: kanji quadruple size
	0x1c70: 4,  // FS p n m: print NV bit image n
	0x1d21: 3,  // GS ! n: character size
	0x1d24: 4,  // GS $ nL nH: absolute vertical position in page mode
	0x1d2f: 3,  // GS / m: print downloaded image
	0x1d3a: 2,  // GS :: start or end a macro
	0x1d42: 3,  // GS B n: white/black reverse
	0x1d45: 3,  // GS E n: print density (clones)
	0x1d48: 3,  // GS H n: HRI position
	0x1d49: 3,  // GS I n: transmit printer ID
	0x1d4c: 4,  // GS L nL nH: left margin
	0x1d50: 4,  // GS P x y: motion units
	0x1d54: 3,  // GS T n: print position to line start
	0x1d57: 4,  // GS W nL nH: print area width
	0x1d5c: 4,  // GS \ nL nH: relative vertical position in page mode
	0x1d5e: 5,  // GS ^ r t m: run macro
	0x1d61: 3,  // GS a n: automatic status back
	0x1d62: 3,  // GS b n: smoothing
	0x1d63: 2,  // GS c: print counter
	0x1d66: 3,  // GS f n: HRI font
	0x1d68: 3,  // GS h n: bar code height
	0x1d72: 3,  // GS r n: transmit status
	0x1d77: 3,  // GS w n: bar code width
}

// scan reads the token at the start of p and returns it with its length
// in bytes. Once a command's header is complete the length is known even
// if its data has not all arrived: n may then exceed len(p). scan returns
// errShort when the header itself is incomplete. A command whose length
// cannot be known is opUnknown, two bytes long. It never panics.
func scan(p []byte) (o op, n int, err error) {
	if len(p) == 0 {
		return 0, 0, errShort
	}
	b := p[0]
	switch {
	case b >= 0x20:
		n = 1
		for n < len(p) && p[n] >= 0x20 {
			n++
		}
		return opText, n, nil
	case b != esc && b != gs && b != fs && b != dle:
		return op(b), 1, nil
	case len(p) < 2:
		return 0, 0, errShort
	}
	o = op(b)<<8 | op(p[1])
	if n, ok := fixedLen[o]; ok {
		return o, n, nil
	}
	need := func(k int) bool { return len(p) >= k }
	switch o {
	case 0x1b28, 0x1c28, 0x1d28: // ESC (, FS (, GS ( x pL pH ...
		if !need(5) {
			return 0, 0, errShort
		}
		return o<<8 | op(p[2]), 5 + int(p[3]) + int(p[4])<<8, nil
	case opBitImage:
		if !need(5) {
			return 0, 0, errShort
		}
		k := int(p[3]) + int(p[4])<<8
		switch p[2] {
		case 0, 1:
			return o, 5 + k, nil
		case 32, 33:
			return o, 5 + 3*k, nil
		}
	case opUserChars:
		if !need(5) {
			return 0, 0, errShort
		}
		y, c1, c2 := int(p[2]), p[3], p[4]
		if y == 0 || y > 3 || c1 > c2 {
			break
		}
		n = 5
		for c := int(c1); c <= int(c2); c++ {
			if !need(n + 1) {
				return 0, 0, errShort
			}
			n += 1 + y*int(p[n])
		}
		return o, n, nil
	case opTabs:
		const most = 2 + 32 + 1 // 32 tab stops and the NUL
		for i := 2; i < most; i++ {
			if !need(i + 1) {
				return 0, 0, errShort
			}
			if p[i] == nul {
				return o, i + 1, nil
			}
		}
	case opDefineImage:
		if !need(4) {
			return 0, 0, errShort
		}
		return o, 4 + int(p[2])*int(p[3])*8, nil
	case opCut:
		if !need(3) {
			return 0, 0, errShort
		}
		switch p[2] {
		case 0, 1, 48, 49:
			return o, 3, nil
		case 65, 66, 97, 98, 103, 104:
			return o, 4, nil
		}
	case opBarcode:
		if !need(3) {
			return 0, 0, errShort
		}
		m := p[2]
		switch {
		case m <= 6: // form 1: data up to a NUL
			const most = 3 + 255 + 1
			for i := 3; i < most; i++ {
				if !need(i + 1) {
					return 0, 0, errShort
				}
				if p[i] == nul {
					return o, i + 1, nil
				}
			}
		case m >= 65 && m <= 79: // form 2: n, then n bytes
			if !need(4) {
				return 0, 0, errShort
			}
			return o, 4 + int(p[3]), nil
		}
	case 0x1d76: // GS v
		if !need(3) {
			return 0, 0, errShort
		}
		if p[2] != '0' {
			break
		}
		if !need(8) {
			return 0, 0, errShort
		}
		size := int64(int(p[4])|int(p[5])<<8) * int64(int(p[6])|int(p[7])<<8)
		if size <= maxToken {
			return opRaster, 8 + int(size), nil
		}
	case opStatus, opRecover:
		if !need(3) {
			return 0, 0, errShort
		}
		if (o == opStatus && p[2] >= 1 && p[2] <= 4) || (o == opRecover && p[2] >= 1 && p[2] <= 2) {
			return o, 3, nil
		}
	case opPulseNow:
		if !need(3) {
			return 0, 0, errShort
		}
		if p[2] == 1 {
			return o, 5, nil
		}
	}
	return opUnknown, 2, nil
}

// modes is the state the stream sets and ESC @ resets, as far as it
// decides what prints and how long it takes. The emulator and the pacer
// keep one each and feed it every token.
type modes struct {
	page          CodePage
	bold          bool
	underline     int
	width, height int // character magnification, 1 to 8
	align         Align
	pitch         int // line spacing in dots; 0 is the default of ESC 2
	barHeight     int
	barWidth      int
	hri           int
	qrModule      int
	qrECC         ECC
	qrData        []byte // stored by GS ( k fn 180
}

// reset sets the power-on modes (Epson defaults).
func (m *modes) reset() {
	*m = modes{page: PC437, width: 1, height: 1, barHeight: 162, barWidth: 3, qrModule: 3}
}

// apply updates the modes for the complete command p of kind o.
func (m *modes) apply(o op, p []byte) {
	arg := func(i int) int {
		if i < len(p) {
			return int(p[i])
		}
		return -1
	}
	n := arg(2)
	if n >= '0' && (o == opUnderline || o == opAlign || o == opHRI) {
		n -= '0' // these also take ASCII digits
	}
	switch o {
	case opInit:
		m.reset()
	case opCodePage:
		if cp, ok := pageByNumber(byte(n)); ok {
			m.page = cp
		}
	case opBold:
		m.bold = n&1 == 1
	case opUnderline:
		if n >= 0 && n <= 2 {
			m.underline = n
		}
	case opAlign:
		if n >= 0 && n <= 2 {
			m.align = Align(n)
		}
	case opSize:
		if n >= 0 && n>>4 <= 7 && n&0xf <= 7 {
			m.width, m.height = n>>4+1, n&0xf+1
		}
	case opSpacing:
		m.pitch = n
	case opSpacingStd:
		m.pitch = 0
	case opBarHeight:
		if n >= 1 {
			m.barHeight = n
		}
	case opBarWidth:
		if n >= 1 && n <= 6 {
			m.barWidth = n
		}
	case opHRI:
		if n >= 0 && n <= 3 {
			m.hri = n
		}
	case opSymbol:
		if arg(5) != qrSymbol {
			return
		}
		switch v := arg(7); arg(6) {
		case qrFnModule:
			if v >= 1 && v <= 16 {
				m.qrModule = v
			}
		case qrFnECC:
			if v >= '0' && v <= '3' {
				m.qrECC = ECC(v - '0')
			}
		case qrFnStore:
			if v == qrM {
				m.qrData = append(m.qrData[:0], p[8:]...)
			}
		}
	}
}
