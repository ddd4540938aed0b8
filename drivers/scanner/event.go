package scanner

import (
	"encoding/binary"
	"errors"
	"time"
	"unsafe"
)

// The Linux input event interface, from include/uapi/linux/input.h and
// include/uapi/linux/input-event-codes.h.

// Event types and codes.
const (
	evSyn = 0x00 // EV_SYN: separates reports
	evKey = 0x01 // EV_KEY: a key went down (1), up (0) or repeats (2)
	evMsc = 0x04 // EV_MSC: miscellaneous; MSC_SCAN carries the HID usage of a key
	evMax = 0x1f // EV_MAX: the highest event type

	synReport  = 0 // SYN_REPORT: end of one report (one USB HID report)
	synDropped = 3 // SYN_DROPPED: the kernel's buffer overran; events up to the next SYN_REPORT are lost
	mscScan    = 4 // MSC_SCAN: value is the scan code, (usage page << 16) | usage for USB HID

	keyUp     = 0 // EV_KEY value: released
	keyDown   = 1 // EV_KEY value: pressed
	keyRepeat = 2 // EV_KEY value: autorepeat while held
)

// Key codes (KEY_*). The rows of a keyboard are consecutive codes.
const (
	key1          = 2   // KEY_1, first of KEY_1..KEY_0, KEY_MINUS, KEY_EQUAL (2..13)
	keyQ          = 16  // KEY_Q, first of KEY_Q..KEY_P, KEY_LEFTBRACE, KEY_RIGHTBRACE (16..27)
	keyEnter      = 28  // KEY_ENTER
	keyLeftCtrl   = 29  // KEY_LEFTCTRL
	keyA          = 30  // KEY_A, first of KEY_A..KEY_L, KEY_SEMICOLON, KEY_APOSTROPHE, KEY_GRAVE (30..41)
	keyLeftShift  = 42  // KEY_LEFTSHIFT
	keyBackslash  = 43  // KEY_BACKSLASH
	keyZ          = 44  // KEY_Z, first of KEY_Z..KEY_M, KEY_COMMA, KEY_DOT, KEY_SLASH (44..53)
	keyRightShift = 54  // KEY_RIGHTSHIFT
	keyKPAsterisk = 55  // KEY_KPASTERISK
	keyLeftAlt    = 56  // KEY_LEFTALT
	keySpace      = 57  // KEY_SPACE
	keyCapsLock   = 58  // KEY_CAPSLOCK
	keyKP7        = 71  // KEY_KP7, first of KP7 KP8 KP9 KPMINUS KP4 KP5 KP6 KPPLUS KP1 KP2 KP3 KP0 KPDOT (71..83)
	key102nd      = 86  // KEY_102ND: the extra key left of Z on ISO keyboards
	keyKPEnter    = 96  // KEY_KPENTER
	keyRightCtrl  = 97  // KEY_RIGHTCTRL
	keyKPSlash    = 98  // KEY_KPSLASH
	keyRightAlt   = 100 // KEY_RIGHTALT: AltGr on European layouts
)

// hidUsages maps the keys the KeyboardEmulator types to their USB HID
// usage on the Keyboard/Keypad page 0x07 (HID Usage Tables 1.12, §10),
// which the kernel reports in MSC_SCAN. Letters and digits follow from
// their US characters.
var hidUsages = map[uint16]uint32{
	keyEnter: 0x28, keySpace: 0x2C, key1 + 10: 0x2D, key1 + 11: 0x2E, // Return, Spacebar, - _, = +
	keyQ + 10: 0x2F, keyQ + 11: 0x30, keyBackslash: 0x31, keyA + 9: 0x33, // [ {, ] }, \ |, ; :
	keyA + 10: 0x34, keyA + 11: 0x35, keyZ + 7: 0x36, keyZ + 8: 0x37, keyZ + 9: 0x38, // ' ", ` ~, , <, . >, / ?
	keyCapsLock: 0x39, keyKPEnter: 0x58, key102nd: 0x64, // Caps Lock, Keypad Enter, Non-US \ |
	keyLeftCtrl: 0xE0, keyLeftShift: 0xE1, keyLeftAlt: 0xE2, keyRightCtrl: 0xE4, keyRightShift: 0xE5, keyRightAlt: 0xE6,
}

// hidUsage returns the MSC_SCAN value the kernel reports for key on a USB keyboard.
func hidUsage(key uint16) (uint32, bool) {
	const page = 0x07 << 16
	if u, ok := hidUsages[key]; ok {
		return page | u, true
	}
	switch r := usLayout.keys[key][0]; {
	case r >= 'a' && r <= 'z':
		return page | uint32(0x04+r-'a'), true
	case r >= '1' && r <= '9':
		return page | uint32(0x1E+r-'1'), true
	case r == '0':
		return page | 0x27, true
	}
	return 0, false
}

// inputEvent is one struct input_event.
type inputEvent struct {
	time  time.Time
	typ   uint16
	code  uint16
	value int32
}

// struct input_event is two C longs of timestamp (seconds, microseconds)
// then type, code and value:
//
//	64-bit (arm64, amd64): sec s64 @0, usec s64 @8,  type u16 @16, code u16 @18, value s32 @20
//	32-bit (armhf):        sec u32 @0, usec u32 @4,  type u16 @8,  code u16 @10, value s32 @12
//
// in the CPU's byte order. A 32-bit process on a 64-bit kernel gets the
// 16-byte form (input_event_compat), so the size follows the process.
// Since Linux 4.16 the 32-bit seconds are unsigned (__kernel_ulong_t).
const (
	event32Size = 16
	event64Size = 24
)

// kernelEvent mirrors struct input_event for this process: a C long is a
// Go uint on every Linux port.
type kernelEvent struct {
	sec, usec uint
	typ, code uint16
	value     int32
}

// eventSize is the size of struct input_event for this process.
const eventSize = int(unsafe.Sizeof(kernelEvent{}))

// Decoding errors, always wrapped: a record cut short, or bytes no kernel
// writes (microseconds past 999999, a type past EV_MAX).
var (
	errShortEvent = errors.New("short input_event")
	errBadEvent   = errors.New("corrupt input_event")
)

// decodeEvent decodes one input_event of size bytes (16 or 24) from the
// start of b.
func decodeEvent(b []byte, size int) (inputEvent, error) {
	if size != event32Size && size != event64Size {
		return inputEvent{}, errBadEvent
	}
	if len(b) < size {
		return inputEvent{}, errShortEvent
	}
	ne := binary.NativeEndian
	var sec, usec int64
	if size == event64Size {
		sec, usec = int64(ne.Uint64(b)), int64(ne.Uint64(b[8:]))
	} else {
		sec, usec = int64(ne.Uint32(b)), int64(ne.Uint32(b[4:]))
	}
	b = b[size-8:]
	ev := inputEvent{typ: ne.Uint16(b), code: ne.Uint16(b[2:]), value: int32(ne.Uint32(b[4:]))}
	if usec < 0 || usec >= 1e6 || ev.typ > evMax {
		return inputEvent{}, errBadEvent
	}
	ev.time = time.Unix(sec, usec*1e3)
	return ev, nil
}

// appendEvent appends ev as an input_event of size bytes (16 or 24).
func appendEvent(b []byte, ev inputEvent, size int) []byte {
	ne := binary.NativeEndian
	sec, usec := ev.time.Unix(), int64(ev.time.Nanosecond()/1e3)
	if size == event64Size {
		b = ne.AppendUint64(b, uint64(sec))
		b = ne.AppendUint64(b, uint64(usec))
	} else {
		b = ne.AppendUint32(b, uint32(sec))
		b = ne.AppendUint32(b, uint32(usec))
	}
	b = ne.AppendUint16(b, ev.typ)
	b = ne.AppendUint16(b, ev.code)
	return ne.AppendUint32(b, uint32(ev.value))
}
