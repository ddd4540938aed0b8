package scanner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"
)

// GM65 serial protocol (GM65 user manual V1.3, §8).
const (
	cmdHead   = 0x7E // first byte of a host command; the second is 0x00
	replyHead = 0x02 // first byte of a module reply; the second is 0x00

	typeRead  = 0x07 // Types: read zone bits; Lens 1, Datas is the byte count (0 = 256)
	typeWrite = 0x08 // Types: write zone bits; Datas are Lens bytes (0 = 256)
	typeSave  = 0x09 // Types: save zone bits to EEPROM; Lens 1, Address 0, Datas 0
	typeOK    = 0x00 // reply Types: success

	noCRC      = 0xABCD                 // CRC field telling the module not to check the CRC
	commandGap = 400 * time.Millisecond // a command still incomplete this long after its head is dropped
)

// Zone bits the driver and the emulator use (§8.5).
const (
	zoneControl    = 0x0000 // bit 7 LED on success, 6 sound, 5-4 aimer, 3-2 light, 1-0 read mode
	modeMask       = 0x03   // zoneControl bits 1-0: read mode
	modeManual     = 0x00   // read while the hardware trigger is held
	modeCommand    = 0x01   // read once per serial trigger (zoneTrigger)
	modeContinuous = 0x02   // read whatever comes into view
	modeSensor     = 0x03   // read when the image changes

	zoneTrigger  = 0x0002 // bit 0: 1 starts a read in command mode; the module clears it when the read ends
	triggerStart = 0x01

	zoneReadTime = 0x0006 // longest read after a trigger, in 0.1 s; 0 = no limit; 5 s by default

	zoneTail = 0x0060 // bits 6-5: what follows each code
	tailMask = 0x60
	tailCR   = 0x00 // CR
	tailCRLF = 0x20 // CR LF
	tailTab  = 0x40 // TAB
	tailNone = 0x60 // nothing
)

// frame is a command (with an address) or a reply (without).
type frame struct {
	typ  byte
	addr uint16
	data []byte
}

// Decoding errors: the frame is not complete yet, or it is corrupt: its
// head is wrong (the decoder says to drop 1 byte) or its CRC (drop the
// whole frame).
var (
	errShortFrame = errors.New("short frame")
	errBadFrame   = errors.New("corrupt frame")
)

// crc16 is the manual's CRC_CCITT: polynomial x16+x12+x5+1 (0x1021),
// initial value 0, most significant bit first, no final inversion.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// encodeCommand builds {7E 00} {Types} {Lens} {Address} {Datas} {CRC}
// with the CRC over Types to Datas; data is 1 to 256 bytes.
func encodeCommand(typ byte, addr uint16, data []byte) []byte {
	b := []byte{cmdHead, 0x00, typ, byte(len(data))}
	b = binary.BigEndian.AppendUint16(b, addr)
	b = append(b, data...)
	return binary.BigEndian.AppendUint16(b, crc16(b[2:]))
}

// encodeReply builds {02 00} {Types} {Lens} {Datas} {CRC}.
func encodeReply(typ byte, data []byte) []byte {
	b := append([]byte{replyHead, 0x00, typ, byte(len(data))}, data...)
	return binary.BigEndian.AppendUint16(b, crc16(b[2:]))
}

// decodeCommand decodes the command at the start of b and returns its
// length, or with errBadFrame how many bytes to drop. The CRC must match
// or be AB CD.
func decodeCommand(b []byte) (frame, int, error) { return decodeFrame(b, cmdHead, true) }

// decodeReply decodes the reply at the start of b like decodeCommand; its
// CRC must match.
func decodeReply(b []byte) (frame, int, error) { return decodeFrame(b, replyHead, false) }

func decodeFrame(b []byte, head byte, command bool) (frame, int, error) {
	if len(b) > 0 && b[0] != head || len(b) > 1 && b[1] != 0x00 {
		return frame{}, 1, errBadFrame
	}
	hdr := 4
	if command {
		hdr = 6
	}
	if len(b) < 4 {
		return frame{}, 0, errShortFrame
	}
	n := int(b[3])
	if n == 0 {
		n = 256
	}
	end := hdr + n
	if len(b) < end+2 {
		return frame{}, 0, errShortFrame
	}
	crc := binary.BigEndian.Uint16(b[end:])
	if crc != crc16(b[2:end]) && !(command && crc == noCRC) {
		return frame{}, end + 2, errBadFrame
	}
	f := frame{typ: b[2], data: bytes.Clone(b[hdr:end])}
	if command {
		f.addr = binary.BigEndian.Uint16(b[4:])
	}
	return f, end + 2, nil
}
