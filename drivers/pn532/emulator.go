package pn532

import (
	"bytes"
	"errors"
	"sync"

	"github.com/microretail/kioskd/drivers/emu"
	"periph.io/x/conn/v3/gpio"
)

// Emulator is a PN532 in I2C mode for an emu.Bus, with one ISO/IEC 14443
// Type A card that can enter and leave its field. It models the host
// interface as UM0701 chapter 6 describes it: every read starts with the
// status byte, a valid command frame is ACKed and then answered, a host ACK
// aborts the command in progress, a host NACK makes the chip send its last
// response again, and a new command replaces the one in progress. It keeps
// the state the commands set: the SAM mode, P70_IRQ use, the MaxRetries
// configuration item and the listed target.
//
// The card answers READ (30h) with four pages, rolling over to page 0 past
// its last page, and NAKs a start page beyond it (NTAG213/215/216 data
// sheet, READ). Modelled where UM0701 is silent: a host frame with a bad checksum gets
// no ACK at all; bytes read past the frame are 0x00; a card's 4-bit NAK
// is reported as status 0x13. Commands complete at once except
// InListPassiveTarget with MxRtyPassiveActivation 0xFF and no card, which
// waits for Place.
type Emulator struct {
	mu      sync.Mutex
	irq     *emu.Pin
	inReset bool

	// Chip state; PowerOnReset restores it.
	sam     byte   // SAMConfiguration mode, 0 until the first one (LowVbat start-up mode)
	useIRQ  bool   // SAMConfiguration IRQ: the chip drives P70_IRQ
	mxATR   byte   // MaxRetries: MxRtyATR
	mxPSL   byte   // MaxRetries: MxRtyPSL
	mxPass  byte   // MaxRetries: MxRtyPassiveActivation
	listed  bool   // target 1 is activated
	out     []byte // frame the host reads next: an ACK or a response
	ready   bool   // out waits to be read; RDY in the status byte
	next    []byte // response due once the ACK has been read
	last    []byte // last response sent, for a host NACK
	waiting bool   // InListPassiveTarget waits for a card

	cmds []byte
	card *Card
}

var _ emu.Chip = (*Emulator)(nil)

// Card is an ISO/IEC 14443 Type A card: what anticollision reports and its
// memory, in 4-byte pages as NTAG and MIFARE Ultralight organise it.
type Card struct {
	UID     []byte // 4, 7 or 10 bytes
	SensRes uint16
	SelRes  byte
	Pages   [][4]byte
}

const (
	ntag213Pages = 45   // pages 00h to 2Ch
	cascadeTag   = 0x88 // CT, the first byte of BCC0's XOR (ISO/IEC 14443-3)
)

// NTAG213 returns an NTAG213 with the 7-byte uid: ATQA 0044h, SAK 00h and
// 45 pages. Pages 0 to 2 hold the UID and its check bytes, BCC0 =
// CT^UID0^UID1^UID2 and BCC1 = UID3^UID4^UID5^UID6 (NTAG213/215/216 data
// sheet, UID/serial number); page 3 the capability container E1 10 12 00;
// user memory is blank and AUTH0 is FFh (no password protection). Internal
// byte 48h is what production tags hold. It panics if uid is not 7 bytes.
func NTAG213(uid []byte) Card {
	if len(uid) != 7 {
		panic("pn532: NTAG213 needs a 7-byte UID")
	}
	p := make([][4]byte, ntag213Pages)
	p[0] = [4]byte{uid[0], uid[1], uid[2], cascadeTag ^ uid[0] ^ uid[1] ^ uid[2]}
	p[1] = [4]byte{uid[3], uid[4], uid[5], uid[6]}
	p[2] = [4]byte{uid[3] ^ uid[4] ^ uid[5] ^ uid[6], 0x48, 0x00, 0x00} // BCC1, internal, static lock bytes
	p[3] = [4]byte{0xE1, 0x10, 0x12, 0x00}                              // CC: NDEF, version 1.0, 144 bytes, read/write
	p[0x29][3] = 0xFF                                                   // CFG0: AUTH0
	return Card{UID: bytes.Clone(uid), SensRes: 0x0044, SelRes: 0x00, Pages: p}
}

var errInReset = errors.New("pn532 emulator: held in reset")

// NewEmulator returns a PN532 just powered on.
func NewEmulator() *Emulator {
	e := &Emulator{}
	e.powerOnReset()
	return e
}

// SetIRQ wires P70_IRQ to p: the chip drives it low while a frame waits to
// be read and high otherwise.
func (e *Emulator) SetIRQ(p *emu.Pin) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.irq = p
	e.driveIRQ()
}

// ResetLine returns what RSTPDN does to the chip, for emu.Pin.OnOut: low
// holds it in reset, where it acknowledges nothing; the rising edge is a
// power-on reset.
func (e *Emulator) ResetLine() func(gpio.Level) {
	return func(l gpio.Level) {
		e.mu.Lock()
		defer e.mu.Unlock()
		switch {
		case l == gpio.Low:
			e.inReset = true
			e.powerOnReset()
		case e.inReset:
			e.inReset = false
			e.powerOnReset()
		}
	}
}

// PowerOnReset implements emu.Chip. The card stays in the field.
func (e *Emulator) PowerOnReset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.powerOnReset()
}

func (e *Emulator) powerOnReset() {
	e.sam, e.useIRQ = 0, true
	e.mxATR, e.mxPSL, e.mxPass = mxRtyATRReset, mxRtyPSLReset, mxRtyPassiveWait
	e.listed, e.waiting = false, false
	e.out, e.next, e.last = nil, nil, nil
	e.setReady(false)
}

// Place puts c in the field, replacing any card there. A Poll waiting for
// a card completes.
func (e *Emulator) Place(c Card) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.UID = bytes.Clone(c.UID)
	c.Pages = append([][4]byte(nil), c.Pages...)
	e.card = &c
	if e.waiting {
		e.waiting = false
		e.respond(e.listTarget())
	}
}

// Remove takes the card out of the field. The chip notices when it next
// talks to it.
func (e *Emulator) Remove() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.card = nil
}

// SAMMode is the mode the last SAMConfiguration set, 0 since power-on.
func (e *Emulator) SAMMode() byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sam
}

// PassiveRetries is MxRtyPassiveActivation: 0xFF (retry for ever) since
// power-on, else what RFConfiguration set.
func (e *Emulator) PassiveRetries() byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mxPass
}

// Listed reports whether a target is activated.
func (e *Emulator) Listed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.listed
}

// Commands returns the codes of the command frames received, in order,
// resends included.
func (e *Emulator) Commands() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return bytes.Clone(e.cmds)
}

// Tx implements emu.Chip: w is a frame from the host, r gets the status
// byte and the frame waiting to be read.
func (e *Emulator) Tx(w, r []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inReset {
		return errInReset
	}
	if len(w) > 0 {
		e.receive(w)
	}
	if len(r) > 0 {
		e.send(r)
	}
	return nil
}

func (e *Emulator) receive(w []byte) {
	f, _, err := DecodeFrame(w)
	if err != nil {
		return // no ACK: the host times out and sends again
	}
	switch {
	case f.Kind == FrameAck: // abort the command in progress
		e.waiting, e.next, e.out = false, nil, nil
		e.setReady(false)
	case f.Kind == FrameNack:
		if e.last != nil {
			e.out = e.last
			e.setReady(true)
		}
	case f.Kind == FrameInfo && f.TFI == TFIHost:
		e.cmds = append(e.cmds, f.Data[0])
		e.waiting, e.next = false, nil
		e.out = ackFrame
		e.setReady(true)
		e.execute(command(f.Data[0]), f.Data[1:])
	}
}

// send fills r as a read transfer clocks it out.
func (e *Emulator) send(r []byte) {
	clear(r)
	if !e.ready {
		return
	}
	r[0] = statusReady
	if len(r) == 1 {
		return // a status poll leaves the frame waiting
	}
	copy(r[1:], e.out)
	acked := bytes.Equal(e.out, ackFrame)
	e.out = nil
	e.setReady(false)
	if acked && e.next != nil {
		e.out, e.last, e.next = e.next, e.next, nil
		e.setReady(true)
	}
}

// respond makes data the response to the command in progress.
func (e *Emulator) respond(frame []byte) {
	if e.ready && bytes.Equal(e.out, ackFrame) {
		e.next = frame
		return
	}
	e.out, e.last = frame, frame
	e.setReady(true)
}

func (e *Emulator) setReady(v bool) {
	e.ready = v
	e.driveIRQ()
}

func (e *Emulator) driveIRQ() {
	if e.irq == nil {
		return
	}
	if e.ready && e.useIRQ && !e.inReset {
		e.irq.Drive(gpio.Low)
	} else {
		e.irq.Drive(gpio.High)
	}
}

// answer encodes the response to cmd.
func answer(cmd command, data ...byte) []byte {
	f, _ := EncodeFrame(TFIChip, append([]byte{byte(cmd) + 1}, data...))
	return f
}

func (e *Emulator) execute(cmd command, p []byte) {
	syntax := func() { e.respond(errorFrame) }
	switch cmd {
	case cmdGetFirmwareVersion:
		if len(p) != 0 {
			syntax()
			return
		}
		e.respond(answer(cmd, icPN532, fwVersion, fwRevision, fwSupported))
	case cmdSAMConfiguration:
		if len(p) < 1 || len(p) > 3 || p[0] < 1 || p[0] > 4 {
			syntax()
			return
		}
		e.sam = p[0]
		e.useIRQ = len(p) < 3 || p[2] != 0
		e.respond(answer(cmd))
	case cmdRFConfiguration:
		size := map[byte]int{cfgRFField: 1, cfgTimings: 3, cfgMaxRtyCOM: 1, cfgMaxRetries: 3}
		if len(p) < 1 || size[p[0]] == 0 || len(p) != 1+size[p[0]] {
			syntax()
			return
		}
		if p[0] == cfgMaxRetries {
			e.mxATR, e.mxPSL, e.mxPass = p[1], p[2], p[3]
		}
		e.respond(answer(cmd))
	case cmdInListPassiveTarget:
		if len(p) < 2 || p[0] < 1 || p[0] > 2 || p[1] > 0x04 {
			syntax()
			return
		}
		switch {
		case p[1] != brTy106A: // only a Type A card is ever in this field
			e.respond(answer(cmd, 0))
		case e.card != nil:
			e.respond(e.listTarget())
		case e.mxPass == mxRtyPassiveWait:
			e.waiting = true
		default:
			e.listed = false
			e.respond(answer(cmd, 0))
		}
	case cmdInDataExchange:
		if len(p) < 1 {
			syntax()
			return
		}
		e.respond(answer(cmd, e.exchange(p[0]&statusMask, p[1:])...))
	case cmdInRelease:
		if len(p) != 1 {
			syntax()
			return
		}
		st := byte(stOK)
		switch {
		case p[0] == 0 || (p[0] == 1 && e.listed):
			e.listed = false
		default:
			st = stBadContext
		}
		e.respond(answer(cmd, st))
	default:
		syntax()
	}
}

// listTarget activates the card in the field as target 1.
func (e *Emulator) listTarget() []byte {
	c := e.card
	e.listed = true
	d := []byte{1, 1, byte(c.SensRes >> 8), byte(c.SensRes), c.SelRes, byte(len(c.UID))}
	return answer(cmdInListPassiveTarget, append(d, c.UID...)...)
}

// exchange is what the card answers to data, as status and data in.
func (e *Emulator) exchange(tg byte, data []byte) []byte {
	switch {
	case !e.listed || tg != 1:
		return []byte{stBadContext}
	case e.card == nil, len(data) != 2 || data[0] != ntagRead:
		return []byte{stTimeout} // gone, or a command this card ignores
	}
	pages := e.card.Pages
	start := int(data[1])
	if start >= len(pages) {
		return []byte{stDataFormat} // the card NAKs an address past its last page
	}
	out := []byte{stOK}
	for i := range ntagPages {
		// Past the last page the READ rolls over to page 0.
		pg := pages[(start+i)%len(pages)]
		out = append(out, pg[:]...)
	}
	return out
}
