package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Suffix is the key a KeyboardEmulator presses after each code.
type Suffix int

// Suffixes scanners are commonly set to.
const (
	SuffixEnter   Suffix = iota // KEY_ENTER
	SuffixKPEnter               // KEY_KPENTER
	SuffixNone                  // no key: the code ends with the inter-key timeout
)

// KeyboardOpts configures a KeyboardEmulator.
type KeyboardOpts struct {
	Layout   string        // layout the emulated scanner types for: "us" (the default) or "fr"
	Interval time.Duration // from one key press to the next; 0 means 4 ms
	Suffix   Suffix

	Clock func() time.Time    // event timestamps; nil means time.Now
	Sleep func(time.Duration) // nil means time.Sleep
}

// KeyboardEmulator is a USB keyboard-wedge scanner as the kernel's evdev
// interface presents it: it writes the input_event records the kernel
// writes for the scanner's HID reports, one report per key press and one
// per release, into a pipe, a pty or /dev/uinput. Each report is
// EV_MSC/MSC_SCAN with the key's HID usage then EV_KEY, for the modifiers
// first, then EV_SYN/SYN_REPORT, all stamped with the report's time.
// It is safe for concurrent use.
type KeyboardEmulator struct {
	mu   sync.Mutex
	w    io.Writer
	km   *keymap
	opts KeyboardOpts
	size int
}

// NewKeyboardEmulator returns an emulated scanner writing to w.
func NewKeyboardEmulator(w io.Writer, opts *KeyboardOpts) (*KeyboardEmulator, error) {
	var o KeyboardOpts
	if opts != nil {
		o = *opts
	}
	km, err := layoutByName(o.Layout)
	if err != nil {
		return nil, err
	}
	if o.Interval <= 0 {
		o.Interval = 4 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = time.Sleep
	}
	return &KeyboardEmulator{w: w, km: km, opts: o, size: eventSize}, nil
}

// Type types code and the suffix. A character the layout cannot type is an
// error, and nothing is typed.
func (k *KeyboardEmulator) Type(code string) error {
	keys := make([]stroke, 0, len(code)+1)
	for _, r := range code {
		s, ok := k.km.typing[r]
		if !ok {
			return fmt.Errorf("scanner: keyboard emulator: layout %s cannot type %q", k.km.name, r)
		}
		keys = append(keys, s)
	}
	switch k.opts.Suffix {
	case SuffixEnter:
		keys = append(keys, stroke{key: keyEnter})
	case SuffixKPEnter:
		keys = append(keys, stroke{key: keyKPEnter})
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, s := range keys {
		if err := k.report(s, keyDown); err != nil {
			return err
		}
		k.opts.Sleep(k.opts.Interval / 2)
		if err := k.report(s, keyUp); err != nil {
			return err
		}
		k.opts.Sleep(k.opts.Interval - k.opts.Interval/2)
	}
	return nil
}

// report writes the events of one HID report that presses or releases s.
func (k *KeyboardEmulator) report(s stroke, value int32) error {
	t := k.opts.Clock()
	var b []byte
	add := func(key uint16) {
		u, _ := hidUsage(key)
		b = appendEvent(b, inputEvent{time: t, typ: evMsc, code: mscScan, value: int32(u)}, k.size)
		b = appendEvent(b, inputEvent{time: t, typ: evKey, code: key, value: value}, k.size)
	}
	if s.shift {
		add(keyLeftShift)
	}
	if s.altgr {
		add(keyRightAlt)
	}
	add(s.key)
	b = appendEvent(b, inputEvent{time: t, typ: evSyn, code: synReport}, k.size)
	if _, err := k.w.Write(b); err != nil {
		return fmt.Errorf("scanner: keyboard emulator: %w", err)
	}
	return nil
}

// GM65Emulator is a GM65 module on the far end of a serial line (a pty
// master). It keeps the zone bits written to it and answers read, write
// and save commands as the manual (§8) says: a command with a wrong CRC,
// a wrong format or addresses outside zone 0x0000-0x00FF gets no reply,
// nor does one still incomplete 400 ms after its 7E 00. It reads codes as
// its read mode (zone 0x0000 bits 1-0) says: in continuous (and sensor)
// mode every code Present shows it, in command mode the first code after
// a trigger (zone 0x0002 bit 0, cleared when the read ends or the read
// time of zone 0x0006 runs out), in manual mode none. Each code is
// followed by the tail of zone 0x0060 bits 6-5.
//
// Modelled where the manual is silent: the power-on zone values (manual
// mode, standard light and aimer, sound and LED on: 0x0000 = D4h; 5 s
// read time; 0x000A = 3Eh as in the manual's example; no tail), a
// trigger bit written outside command mode reads back 0, and the module
// sends codes as they are, with no encoding conversion.
type GM65Emulator struct {
	mu    sync.Mutex
	rw    io.ReadWriter
	clock func() time.Time

	zones, saved [0x100]byte
	cmd          []byte    // command being received
	cmdAt        time.Time // when its 7E arrived
	readUntil    time.Time // end of the read a trigger started; zero: no limit
}

// NewGM65Emulator returns a module just powered on, talking over rw.
// clock times the 400 ms command limit and the read time; nil means
// time.Now.
func NewGM65Emulator(rw io.ReadWriter, clock func() time.Time) *GM65Emulator {
	if clock == nil {
		clock = time.Now
	}
	e := &GM65Emulator{rw: rw, clock: clock}
	e.saved[zoneControl] = 0xD4
	e.saved[zoneReadTime] = 50
	e.saved[0x000A] = 0x3E
	e.saved[zoneTail] = tailNone
	e.zones = e.saved
	return e
}

// Serve answers the commands that arrive on the line until ctx ends (nil)
// or the line fails.
func (e *GM65Emulator) Serve(ctx context.Context) error {
	p := startPump(e.rw, 256)
	defer p.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-p.ch:
			if err := e.receive(c.b); err != nil {
				return err
			}
			if c.err != nil {
				return fmt.Errorf("scanner: gm65 emulator: %w", c.err)
			}
		}
	}
}

// Present shows code to the module and reports whether it read it and
// sent it down the line.
func (e *GM65Emulator) Present(code string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expire()
	switch e.zones[zoneControl] & modeMask {
	case modeContinuous, modeSensor:
	case modeCommand:
		if e.zones[zoneTrigger]&triggerStart == 0 {
			return false, nil
		}
		e.zones[zoneTrigger] &^= triggerStart
	default:
		return false, nil
	}
	out := []byte(code)
	switch e.zones[zoneTail] & tailMask {
	case tailCR:
		out = append(out, '\r')
	case tailCRLF:
		out = append(out, '\r', '\n')
	case tailTab:
		out = append(out, '\t')
	}
	if _, err := e.rw.Write(out); err != nil {
		return false, fmt.Errorf("scanner: gm65 emulator: %w", err)
	}
	return true, nil
}

// Zone returns the zone byte at addr.
func (e *GM65Emulator) Zone(addr uint8) byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expire()
	return e.zones[addr]
}

// Saved returns the zone byte at addr as saved in EEPROM.
func (e *GM65Emulator) Saved(addr uint8) byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.saved[addr]
}

// Reading reports whether a triggered read is in progress.
func (e *GM65Emulator) Reading() bool { return e.Zone(zoneTrigger)&triggerStart != 0 }

// PowerCycle restarts the module: zone bits come back from EEPROM.
func (e *GM65Emulator) PowerCycle() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.zones, e.cmd = e.saved, nil
}

// expire ends a triggered read whose read time ran out.
func (e *GM65Emulator) expire() {
	if e.zones[zoneTrigger]&triggerStart != 0 && !e.readUntil.IsZero() && !e.clock().Before(e.readUntil) {
		e.zones[zoneTrigger] &^= triggerStart
	}
}

// receive takes bytes from the line.
func (e *GM65Emulator) receive(b []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range b {
		now := e.clock()
		if len(e.cmd) > 0 && now.Sub(e.cmdAt) > commandGap {
			e.cmd = e.cmd[:0]
		}
		if len(e.cmd) == 0 {
			if c != cmdHead {
				continue
			}
			e.cmdAt = now
		}
		e.cmd = append(e.cmd, c)
		for len(e.cmd) > 0 {
			f, n, err := decodeCommand(e.cmd)
			if errors.Is(err, errShortFrame) {
				break
			}
			e.cmd = e.cmd[:copy(e.cmd, e.cmd[n:])]
			if err != nil { // ignored; go on from the next 7E
				i := bytes.IndexByte(e.cmd, cmdHead)
				if i < 0 {
					i = len(e.cmd)
				}
				e.cmd = e.cmd[:copy(e.cmd, e.cmd[i:])]
				continue
			}
			if err := e.handle(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// handle runs one command; a malformed one gets no reply.
func (e *GM65Emulator) handle(f frame) error {
	e.expire()
	var reply []byte
	switch f.typ {
	case typeRead:
		if len(f.data) != 1 {
			return nil
		}
		n := int(f.data[0])
		if n == 0 {
			n = 256
		}
		if int(f.addr)+n > len(e.zones) {
			return nil
		}
		reply = e.zones[f.addr : int(f.addr)+n]
	case typeWrite:
		if int(f.addr)+len(f.data) > len(e.zones) {
			return nil
		}
		copy(e.zones[f.addr:], f.data)
		reply = []byte{0}
	case typeSave:
		if f.addr != 0 || len(f.data) != 1 || f.data[0] != 0 {
			return nil
		}
		e.saved = e.zones
		reply = []byte{0}
	default:
		return nil
	}
	if _, err := e.rw.Write(encodeReply(typeOK, reply)); err != nil {
		return fmt.Errorf("scanner: gm65 emulator: %w", err)
	}
	if f.typ == typeWrite && int(f.addr) <= zoneTrigger && zoneTrigger < int(f.addr)+len(f.data) {
		e.trigger()
	}
	return nil
}

// trigger starts a read after the reply, as the manual says, when the
// trigger bit was set in command mode.
func (e *GM65Emulator) trigger() {
	if e.zones[zoneTrigger]&triggerStart == 0 {
		return
	}
	if e.zones[zoneControl]&modeMask != modeCommand {
		e.zones[zoneTrigger] &^= triggerStart
		return
	}
	e.readUntil = time.Time{}
	if t := e.zones[zoneReadTime]; t != 0 {
		e.readUntil = e.clock().Add(time.Duration(t) * 100 * time.Millisecond)
	}
}
