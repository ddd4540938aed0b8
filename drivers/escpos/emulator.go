package escpos

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/microretail/kioskd/drivers/barcode"
)

// PaperLevel is what the roll paper sensors see.
type PaperLevel string

// Paper levels.
const (
	PaperOK      PaperLevel = "ok"
	PaperNearEnd PaperLevel = "near_end" // the near-end sensor: the printer goes on printing
	PaperOut     PaperLevel = "out"      // the end sensor: the printer stops and goes offline
)

// Valid reports whether l is one of the paper levels.
func (l PaperLevel) Valid() bool { return l == PaperOK || l == PaperNearEnd || l == PaperOut }

// Receipt is what the emulated printer printed between two cuts.
type Receipt struct {
	Job    string `json:"job"`    // the payload of the receipt's first QR code; "" if none
	Text   string `json:"text"`   // printed lines and markers such as [qr …], '\n'-joined
	Cut    bool   `json:"cut"`    // ended by a cut; false for the receipt in progress
	Drawer int    `json:"drawer"` // drawer pulses during this receipt
}

// Emulator sizes.
const (
	RxBuffer  = 4096 // bytes the emulator's receive buffer holds
	txBuffer  = 4096 // reply bytes kept for a host that does not read them
	headerMax = 8    // bytes of a long command the emulator reads: GS v 0 m xL xH yL yH
)

// Emulator is a thermal receipt printer as the ESC/POS reference
// describes it, on a byte link. It implements Port: the host writes
// commands with Write and reads replies with Read, in memory; Serve runs
// it on a real byte stream instead.
//
// Received bytes enter a receive buffer of RxBuffer bytes and are printed
// in order. Offline (paper out, cover open, cutter jam) the printer stops
// printing and bytes wait in the buffer; beyond its size they are lost
// and Write returns ErrOverflow (real-time commands still work). When the
// cause clears, the buffer prints.
// Real-time commands (DLE EOT, DLE ENQ, DLE DC4) are carried out as they
// arrive, even offline and even inside another command's data, as on the
// TM series; their bytes then also pass through the buffer, where they do
// nothing. GS a enables Automatic Status Back: a packet at once, then one
// whenever an enabled item changes. A cut ends a receipt.
//
// Where the reference says a printer ignores a bar code, image or cut in
// mid-line, the emulator prints the line first. ESC @ keeps the GS a
// setting. Unknown commands whose length the tokenizer cannot tell become
// a marker [unknown 1d xx] and their bytes after the first two print as
// data, as on a printer.
type Emulator struct {
	mu    sync.Mutex
	paper Paper

	// The physical world.
	level      PaperLevel
	cover, jam bool
	drawerHigh bool
	power      bool

	// The link.
	rxSize   int           // RxBuffer; less in fuzz tests
	rx       []byte        // receive buffer
	part     *partial      // a command larger than the buffer, being read from it
	tx       []byte        // replies not yet read by the host
	txWake   chan struct{} // closed when tx gets bytes
	roomWake chan struct{} // closed when rx gets room
	timeout  time.Duration // Read timeout
	rt       []byte        // a real-time command arriving

	// The printer.
	m       modes
	asb     byte    // GS a n
	lastASB [4]byte // packet last sent
	printed int

	// Output.
	receipts []Receipt
	cur      sheet
}

// partial is a command being read from the buffer bit by bit: only its
// first headerMax bytes are kept, or all of it for the commands whose data
// the emulator reads (bar codes, 2D symbols).
type partial struct {
	o    op
	n    int    // the command's length
	got  int    // bytes taken so far
	keep bool   // keep all the data
	b    []byte // bytes kept
}

// sheet is the receipt being printed.
type sheet struct {
	lines  []string
	line   []rune // the line buffer
	job    string
	drawer int
	image  struct{ at, w, h int } // the image the last command printed: its line, or at -1
}

func newSheet() sheet {
	var s sheet
	s.image.at = -1
	return s
}

// NewEmulator returns a powered, online printer with paper p loaded.
func NewEmulator(p Paper) *Emulator {
	e := &Emulator{
		paper:    p,
		level:    PaperOK,
		power:    true,
		txWake:   make(chan struct{}),
		roomWake: make(chan struct{}),
		timeout:  -1,
		rxSize:   RxBuffer,
	}
	e.m.reset()
	e.cur = newSheet()
	return e
}

var errReadTimeout = fmt.Errorf("escpos: emulator read: %w", os.ErrDeadlineExceeded)

// SetReadTimeout sets how long Read waits for a reply: 0 returns at once,
// a negative d waits for ever.
func (e *Emulator) SetReadTimeout(d time.Duration) error {
	e.mu.Lock()
	e.timeout = d
	e.mu.Unlock()
	return nil
}

// Read returns reply bytes, waiting up to the read timeout for them.
func (e *Emulator) Read(b []byte) (int, error) {
	e.mu.Lock()
	var timer *time.Timer
	for len(e.tx) == 0 {
		if e.timeout == 0 {
			e.mu.Unlock()
			return 0, errReadTimeout
		}
		if timer == nil && e.timeout > 0 {
			timer = time.NewTimer(e.timeout)
			defer timer.Stop()
		}
		wake := e.txWake
		e.mu.Unlock()
		var expired <-chan time.Time
		if timer != nil {
			expired = timer.C
		}
		select {
		case <-wake:
		case <-expired:
			return 0, errReadTimeout
		}
		e.mu.Lock()
	}
	n := copy(b, e.tx)
	e.tx = e.tx[:copy(e.tx, e.tx[n:])]
	e.mu.Unlock()
	return n, nil
}

// Write receives b from the host. Powered off, the bytes are lost.
func (e *Emulator) Write(b []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.power {
		return len(b), nil
	}
	n, lost := len(b), 0 // n: bytes before the first one lost
	for i, c := range b {
		if len(e.rx) == e.rxSize {
			e.process()
		}
		stored := len(e.rx) < e.rxSize
		if stored {
			e.rx = append(e.rx, c)
		}
		if !e.realTime(c) && !stored {
			n = min(n, i)
			lost++
		}
	}
	e.process()
	if lost > 0 {
		return n, fmt.Errorf("%w: %d of %d bytes lost", ErrOverflow, lost, len(b))
	}
	return len(b), nil
}

// SetPaper sets what the roll paper sensors see; other values are ignored.
func (e *Emulator) SetPaper(l PaperLevel) {
	if !l.Valid() {
		return
	}
	e.change(func() { e.level = l })
}

// SetCover opens or closes the paper cover.
func (e *Emulator) SetCover(open bool) { e.change(func() { e.cover = open }) }

// SetCutterJam jams the autocutter, an error that takes the printer
// offline, or clears it, as an operator does by freeing the blade and
// closing the cover.
func (e *Emulator) SetCutterJam(jam bool) { e.change(func() { e.jam = jam }) }

// SetDrawerHigh sets the level of drawer kick-out connector pin 3, the
// drawer switch.
func (e *Emulator) SetDrawerHigh(high bool) { e.change(func() { e.drawerHigh = high }) }

// SetPower switches the printer. Off, it neither answers nor keeps what
// it is sent; on again, it starts from power-on state with an empty
// buffer. Printed receipts stay.
func (e *Emulator) SetPower(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on == e.power {
		return
	}
	e.power = on
	e.rx, e.part, e.rt, e.tx = e.rx[:0], nil, e.rt[:0], e.tx[:0]
	e.cur.line = e.cur.line[:0]
	e.m.reset()
	e.asb = 0
	close(e.roomWake)
	e.roomWake = make(chan struct{})
}

func (e *Emulator) change(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f()
	e.asbChanged()
	e.process()
}

// Paper is what the paper sensors see.
func (e *Emulator) Paper() PaperLevel {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.level
}

// CoverOpen reports whether the cover is open.
func (e *Emulator) CoverOpen() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cover
}

// Receipts returns the receipts ended by a cut and, if it has anything on
// it, the one in progress.
func (e *Emulator) Receipts() []Receipt {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := append([]Receipt(nil), e.receipts...)
	if r, ok := e.cur.receipt(false); ok {
		out = append(out, r)
	}
	return out
}

// Printed is the number of bytes taken from the receive buffer.
func (e *Emulator) Printed() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.printed
}

// Held is the number of bytes waiting in the receive buffer.
func (e *Emulator) Held() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.rx)
}

// Clear forgets the receipts printed so far.
func (e *Emulator) Clear() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.receipts = nil
	e.cur = newSheet()
}

// realTime watches the incoming bytes for DLE EOT n, DLE ENQ n and
// DLE DC4 1 m t and carries them out, after what came before them has
// been printed if the printer is online. It reports whether c is part of
// such a command.
func (e *Emulator) realTime(c byte) bool {
	e.rt = append(e.rt, c)
	rt := e.rt
	switch {
	case rt[0] != dle:
		e.rt = e.rt[:0]
		return false
	case len(rt) == 1:
		return true
	case rt[1] != eot && rt[1] != enq && rt[1] != dc4:
		e.rt = e.rt[:0]
		return e.realTime(c) // it may start the next one
	case len(rt) == 2:
		return true
	case rt[1] == dc4 && rt[2] == 1 && len(rt) < 5:
		return true
	}
	e.rt = e.rt[:0]
	e.process()
	switch rt[1] {
	case eot:
		if c >= 1 && c <= 4 {
			e.send(e.statusByte(c))
			return true
		}
	case enq:
		// Recovery needs no action: the causes modelled clear with the sensors.
		return c >= 1 && c <= 2
	case dc4:
		if rt[2] == 1 && rt[3] <= 1 && rt[4] >= 1 && rt[4] <= 8 {
			e.pulse(rt[3])
			return true
		}
	}
	return false
}

// statusByte is the reply to DLE EOT n.
func (e *Emulator) statusByte(n byte) byte {
	b := byte(rtFixed)
	switch n {
	case 1:
		if e.drawerHigh {
			b |= rt1Drawer
		}
		if e.offline() {
			b |= rt1Offline
		}
	case 2:
		if e.cover {
			b |= rt2Cover
		}
		if e.level == PaperOut {
			b |= rt2PaperStop
		}
		if e.jam {
			b |= rt2Error
		}
	case 3:
		if e.jam {
			b |= rt3Cutter
		}
	case 4:
		switch e.level {
		case PaperNearEnd:
			b |= rt4NearEnd
		case PaperOut:
			b |= rt4NearEnd | rt4End
		}
	}
	return b
}

func (e *Emulator) offline() bool { return e.cover || e.jam || e.level == PaperOut }

// asbPacket is the Automatic Status Back packet for the present state.
func (e *Emulator) asbPacket() [4]byte {
	p := [4]byte{asbFixed, 0, 0, 0}
	if e.drawerHigh {
		p[0] |= asb0Drawer
	}
	if e.offline() {
		p[0] |= asb0Offline
	}
	if e.cover {
		p[0] |= asb0Cover
	}
	if e.jam {
		p[1] |= asb1Cutter
	}
	switch e.level {
	case PaperNearEnd:
		p[2] |= asb2NearEnd
	case PaperOut:
		p[2] |= asb2NearEnd | asb2End
	}
	return p
}

// asbChanged sends an ASB packet when an enabled item changed.
func (e *Emulator) asbChanged() {
	if e.asb == 0 || !e.power {
		return
	}
	var mask [4]byte
	if e.asb&asbDrawer != 0 {
		mask[0] |= asb0Drawer
	}
	if e.asb&asbOnline != 0 {
		mask[0] |= asb0Offline | asb0Cover | asb0Feed
	}
	if e.asb&asbError != 0 {
		mask[1] = asb1Mech | asb1Cutter | asb1Fatal | asb1Auto
	}
	if e.asb&asbPaper != 0 {
		mask[2] = asb2NearEnd | asb2End
	}
	p := e.asbPacket()
	for i := range p {
		if (p[i]^e.lastASB[i])&mask[i] != 0 {
			e.lastASB = p
			e.send(p[:]...)
			return
		}
	}
}

func (e *Emulator) send(b ...byte) {
	n := min(len(b), txBuffer-len(e.tx))
	if n == 0 {
		return
	}
	e.tx = append(e.tx, b[:n]...)
	close(e.txWake)
	e.txWake = make(chan struct{})
}

// process prints from the receive buffer while the printer is online.
func (e *Emulator) process() {
	done := 0 // bytes taken from the front of rx
	for done < len(e.rx) && !e.offline() {
		rx := e.rx[done:]
		if p := e.part; p != nil {
			k := min(len(rx), p.n-p.got)
			if p.keep {
				p.b = append(p.b, rx[:k]...)
			} else if h := min(k, headerMax-len(p.b)); h > 0 {
				p.b = append(p.b, rx[:h]...)
			}
			done += k
			if p.got += k; p.got == p.n {
				e.part = nil
				e.apply(p.o, p.b)
			}
			continue
		}
		o, n, err := scan(rx)
		if err != nil {
			if len(rx) < e.rxSize {
				break // the rest of the header has not arrived
			}
			o, n = opUnknown, 2 // a header larger than the buffer
		}
		if n > len(rx) {
			e.part = &partial{o: o, n: n, keep: o == opSymbol || o == opBarcode}
			continue
		}
		e.apply(o, rx[:n])
		done += n
	}
	if done > 0 {
		e.rx = e.rx[:copy(e.rx, e.rx[done:])]
		e.printed += done
		close(e.roomWake)
		e.roomWake = make(chan struct{})
	}
}

// apply carries out the complete command p of kind o.
func (e *Emulator) apply(o op, p []byte) {
	if o != opRaster {
		e.cur.image.at = -1
	}
	switch o {
	case opText:
		for _, b := range p {
			if len(e.cur.line) == e.columns() {
				e.endLine()
			}
			e.cur.line = append(e.cur.line, e.m.page.decode(b))
		}
	case lf:
		e.endLine()
	case ht: // default tab stops every 8 columns
		stop := min(e.columns(), (len(e.cur.line)/8+1)*8)
		for len(e.cur.line) < stop {
			e.cur.line = append(e.cur.line, ' ')
		}
	case opFeedLines: // LF, then n-1 more; n=0 prints the line without feeding
		n := int(p[2])
		if len(e.cur.line) > 0 {
			e.endLine()
			n--
		}
		for ; n > 0; n-- {
			e.endLine()
		}
	case opFeedDots:
		if len(e.cur.line) > 0 {
			e.endLine()
		}
	case opInit:
		e.cur.line = e.cur.line[:0] // ESC @ clears the print buffer
		e.m.reset()
	case opBarcode:
		e.marker(decodeBarcode(p))
	case opSymbol:
		e.m.apply(o, p)
		if len(p) > 7 && p[5] == qrSymbol && p[6] == qrFnPrint && p[7] == qrM && len(e.m.qrData) > 0 {
			e.marker("[qr " + string(e.m.qrData) + "]")
			if e.cur.job == "" {
				e.cur.job = string(e.m.qrData)
			}
		}
	case opRaster:
		e.raster(int(p[4])|int(p[5])<<8, int(p[6])|int(p[7])<<8)
	case opCut:
		e.flushLine()
		e.finish(true)
	case opPulse:
		m := p[2]
		if m >= '0' {
			m -= '0'
		}
		if m <= 1 {
			e.pulse(m)
		}
	case opASB:
		e.asb = p[2]
		if e.asb != 0 {
			e.lastASB = e.asbPacket()
			e.send(e.lastASB[:]...)
		}
	case opStatus, opRecover, opPulseNow:
		// Carried out on arrival (realTime).
	case opUnknown:
		e.marker(fmt.Sprintf("[unknown %02x %02x]", p[0], p[1]))
	default:
		e.m.apply(o, p)
	}
}

// columns is the number of characters that fit a line at the present width.
func (e *Emulator) columns() int { return max(1, e.paper.Columns/e.m.width) }

// endLine prints the line buffer and feeds a line.
func (e *Emulator) endLine() {
	e.cur.lines = append(e.cur.lines, string(e.cur.line))
	e.cur.line = e.cur.line[:0]
}

// flushLine prints text waiting in the line buffer.
func (e *Emulator) flushLine() {
	if len(e.cur.line) > 0 {
		e.endLine()
	}
}

// marker prints the line buffer, then s on a line of its own.
func (e *Emulator) marker(s string) {
	e.flushLine()
	e.cur.lines = append(e.cur.lines, s)
}

// raster prints x bytes by y dots; bands that follow each other at the
// same width are one image.
func (e *Emulator) raster(x, y int) {
	if x == 0 || y == 0 {
		return
	}
	img := &e.cur.image
	if img.at >= 0 && img.w == 8*x {
		img.h += y
	} else {
		e.marker("")
		img.at, img.w, img.h = len(e.cur.lines)-1, 8*x, y
	}
	e.cur.lines[img.at] = fmt.Sprintf("[image %dx%d]", img.w, img.h)
}

// pulse drives the drawer on connector pin 2 (m=0) or 5 (m=1). It moves
// no paper: text waiting in the line buffer prints after its marker.
func (e *Emulator) pulse(m byte) {
	e.cur.drawer++
	e.cur.lines = append(e.cur.lines, fmt.Sprintf("[drawer %d]", 2+3*int(m)))
}

// finish ends the receipt at a cut; one with nothing on it is not kept.
func (e *Emulator) finish(cut bool) {
	if r, ok := e.cur.receipt(cut); ok {
		e.receipts = append(e.receipts, r)
	}
	e.cur = newSheet()
}

func (s *sheet) receipt(cut bool) (Receipt, bool) {
	lines := s.lines
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 && s.drawer == 0 {
		return Receipt{}, false
	}
	return Receipt{Job: s.job, Text: strings.Join(lines, "\n"), Cut: cut, Drawer: s.drawer}, true
}

// decodeBarcode is the marker for the bar code command p.
func decodeBarcode(p []byte) string {
	m := p[2]
	var data []byte
	if m <= 6 {
		data = p[3 : len(p)-1] // up to the NUL
		m += 65
	} else {
		data = p[4:]
	}
	name := map[byte]string{65: "UPC-A", 66: "UPC-E", 67: "EAN13", 68: "EAN8", 69: "CODE39", 70: "ITF", 71: "CODABAR", 72: "CODE93", 73: "CODE128"}[m]
	if name == "" {
		return fmt.Sprintf("[barcode m=%d invalid]", p[2])
	}
	text := string(data)
	ok := true
	switch m {
	case barEAN13:
		text, ok = decodeEAN(text, 13)
	case barEAN8:
		text, ok = decodeEAN(text, 8)
	case barCode128:
		text, ok = decodeCode128(data)
	}
	if !ok {
		return "[barcode " + name + " invalid]"
	}
	return "[barcode " + name + " " + text + "]"
}

// decodeEAN checks an EAN of n digits, or n-1 to which the printer adds
// the check digit.
func decodeEAN(s string, n int) (string, bool) {
	if len(s) == n-1 {
		c, err := barcode.CheckDigit(s)
		if err != nil {
			return "", false
		}
		s += string(c)
	}
	if len(s) != n {
		return "", false
	}
	_, err := barcode.Classify(s)
	return s, err == nil
}

// decodeCode128 reads CODE128 data: code set selections {A, {B, {C,
// "{{" for '{' in code sets A and B, and one byte per two digits in C.
func decodeCode128(d []byte) (string, bool) {
	var b strings.Builder
	set := byte(0)
	for i := 0; i < len(d); i++ {
		c := d[i]
		if c == '{' {
			if i++; i == len(d) {
				return "", false
			}
			switch d[i] {
			case 'A', 'B', 'C':
				set = d[i]
				continue
			case '{':
				if set == 'C' {
					return "", false
				}
			case 'S', '1', '2', '3', '4':
				continue // shift and function characters print nothing
			default:
				return "", false
			}
		}
		switch set {
		case 'A', 'B':
			if c > 0x7f || (set == 'B' && c < 0x20) || (set == 'A' && c > 0x5f) {
				return "", false
			}
			b.WriteByte(c)
		case 'C':
			if c > 99 {
				return "", false
			}
			fmt.Fprintf(&b, "%02d", c)
		default:
			return "", false // no code set selected
		}
	}
	return b.String(), set != 0
}

// Serve runs the emulator on rw, a pty master or a network connection:
// it reads commands from rw, not reading while its buffer is full (flow
// control), and writes the replies to rw. It returns nil when ctx is done,
// or the error that stopped it. On the way out it interrupts a blocked
// Read or Write with SetDeadline, or by closing rw: rw must have one of
// them. Use the emulator either through Serve or as a Port, not both.
func (e *Emulator) Serve(ctx context.Context, rw io.ReadWriter) error {
	dl, hasDeadline := rw.(interface{ SetDeadline(time.Time) error })
	cl, hasClose := rw.(io.Closer)
	if !hasDeadline && !hasClose {
		return fmt.Errorf("escpos: Serve: %T can be neither interrupted nor closed", rw)
	}
	ctx, cancel := context.WithCancel(ctx)
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(interrupted)
		if !hasDeadline || dl.SetDeadline(time.Unix(1, 0)) != nil {
			if hasClose {
				cl.Close()
			}
		}
	})
	var wg sync.WaitGroup
	readErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		readErr <- e.receive(ctx, rw)
	}()
	err := e.transmit(ctx, rw, readErr)
	cancel()
	if !stop() {
		<-interrupted
	}
	wg.Wait()
	return err
}

// receive feeds bytes from r to the printer while there is room.
func (e *Emulator) receive(ctx context.Context, r io.Reader) error {
	buf := make([]byte, 512)
	for {
		e.mu.Lock()
		room, wake := e.rxSize-len(e.rx), e.roomWake
		e.mu.Unlock()
		if room == 0 {
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		n, err := r.Read(buf[:min(room, len(buf))])
		if n > 0 {
			e.Write(buf[:n]) // fits: only this goroutine fills the buffer
		}
		if err != nil {
			if ctx.Err() != nil || err == io.EOF {
				return nil
			}
			return fmt.Errorf("escpos: Serve: read: %w", err)
		}
	}
}

// transmit writes replies to w until ctx is done (nil) or the reader stops.
func (e *Emulator) transmit(ctx context.Context, w io.Writer, readErr <-chan error) error {
	for {
		e.mu.Lock()
		out := append([]byte(nil), e.tx...)
		e.tx = e.tx[:0]
		wake := e.txWake
		e.mu.Unlock()
		if len(out) > 0 {
			if _, err := w.Write(out); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("escpos: Serve: write: %w", err)
			}
			continue
		}
		select {
		case <-wake:
		case err := <-readErr:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}
