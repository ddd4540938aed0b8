// Package emu is the electrical layer the chip emulators plug into: an I2C
// bus that routes each transaction to the emulated chip at its address, and
// GPIO lines with levels, edges and contact bounce.
//
// The bus behaves as a Linux i2c-dev adapter does from a driver's point of
// view: an address with no chip NACKs, transactions are serialised, and a
// write followed by a read is one combined transfer with a repeated start.
// Tests and the sim board inject the faults a kiosk meets in the field: a
// chip that stops acknowledging (unplugged, or held in a brownout), a bus
// error (lost arbitration, clock stretching timeout), a chip that stops
// driving SDA mid-transfer so bytes read as 0xFF, bytes corrupted by noise on a long ribbon cable, and a chip reset that returns
// its registers to their power-on values.
package emu

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Chip is an emulated I2C device.
type Chip interface {
	// Tx is one transaction addressed to the chip: the master writes w,
	// then, after a repeated start, reads len(r) bytes into r. Either may
	// be empty. An error means the chip did not acknowledge.
	Tx(w, r []byte) error
	// PowerOnReset puts the chip back in its power-on state, as a brownout
	// or a reset pulse does.
	PowerOnReset()
}

// ErrNACK is what a transaction to an address that does not acknowledge
// returns. It wraps EREMOTEIO, as Linux's i2c-bcm2835 reports a NACK.
var ErrNACK = fmt.Errorf("emu: address not acknowledged: %w", syscall.EREMOTEIO)

// ErrBusError is what an injected bus error returns. It wraps EIO, as a
// Linux adapter reports lost arbitration or a clock-stretch timeout.
var ErrBusError = fmt.Errorf("emu: bus error: %w", syscall.EIO)

// Fault is a failure injected on one address.
type Fault int

// Faults the bus can inject.
const (
	FaultNone     Fault = iota
	FaultNACK           // the address does not acknowledge: chip unplugged, hung or unpowered
	FaultBusError       // the transfer fails part way with a bus error
	FaultStuck          // the chip lets go of SDA after acknowledging its address: every byte read is 0xFF
	FaultGarbage        // noise: the transfer completes, bytes read have bits flipped
)

func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultNACK:
		return "nack"
	case FaultBusError:
		return "bus-error"
	case FaultStuck:
		return "stuck"
	case FaultGarbage:
		return "garbage"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// ParseFault is the inverse of Fault.String.
func ParseFault(s string) (Fault, error) {
	for f := FaultNone; f <= FaultGarbage; f++ {
		if f.String() == s {
			return f, nil
		}
	}
	return FaultNone, fmt.Errorf("emu: unknown fault %q (want none, nack, bus-error, stuck or garbage)", s)
}

type fault struct {
	kind Fault
	left int // transactions left; <0 until cleared
}

// Bus is an emulated I2C bus. It implements i2c.Bus and is safe for
// concurrent use; transactions are serialised as on a real adapter.
type Bus struct {
	name string

	mu     sync.Mutex
	chips  map[uint16]Chip
	faults map[uint16]*fault
	txs    map[uint16]int
	rnd    *rand.Rand
	speed  physic.Frequency
	closed bool
}

var _ i2c.BusCloser = (*Bus)(nil)

// NewBus returns an empty bus. seed makes injected garbage reproducible.
func NewBus(name string, seed uint64) *Bus {
	return &Bus{
		name:   name,
		chips:  map[uint16]Chip{},
		faults: map[uint16]*fault{},
		txs:    map[uint16]int{},
		rnd:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		speed:  100 * physic.KiloHertz,
	}
}

// Attach puts a chip at a 7-bit address, replacing any chip there.
func (b *Bus) Attach(addr uint16, c Chip) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chips[addr] = c
}

// Detach removes the chip at addr: the address NACKs from now on.
func (b *Bus) Detach(addr uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.chips, addr)
}

// Inject makes the next n transactions to addr fail with f; n < 0 keeps
// failing until Clear. FaultNone clears.
func (b *Bus) Inject(addr uint16, f Fault, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f == FaultNone || n == 0 {
		delete(b.faults, addr)
		return
	}
	b.faults[addr] = &fault{kind: f, left: n}
}

// Clear removes any fault injected on addr.
func (b *Bus) Clear(addr uint16) { b.Inject(addr, FaultNone, 0) }

// Fault reports the fault currently injected on addr.
func (b *Bus) Fault(addr uint16) Fault {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.faults[addr]; f != nil {
		return f.kind
	}
	return FaultNone
}

// Reset power-cycles the chip at addr, as a brownout does: its registers
// return to their power-on values. It reports whether a chip was there.
func (b *Bus) Reset(addr uint16) bool {
	b.mu.Lock()
	c := b.chips[addr]
	b.mu.Unlock()
	if c == nil {
		return false
	}
	c.PowerOnReset()
	return true
}

// Count is how many transactions addressed addr, acknowledged or not.
func (b *Bus) Count(addr uint16) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.txs[addr]
}

// Tx implements i2c.Bus.
func (b *Bus) Tx(addr uint16, w, r []byte) error {
	if addr > 0x7f {
		return fmt.Errorf("emu: address 0x%x is not a 7-bit address", addr)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("emu: bus closed")
	}
	b.txs[addr]++
	c := b.chips[addr]
	kind := FaultNone
	if f := b.faults[addr]; f != nil {
		kind = f.kind
		if f.left > 0 {
			if f.left--; f.left == 0 {
				delete(b.faults, addr)
			}
		}
	}
	if c == nil || kind == FaultNACK {
		return fmt.Errorf("%w (0x%02x on %s)", ErrNACK, addr, b.name)
	}
	if kind == FaultBusError {
		// The write may have reached the chip before the bus failed; a
		// driver must not assume either way. Model the worse case: it did.
		if len(w) > 0 {
			_ = c.Tx(w, nil)
		}
		return fmt.Errorf("%w (0x%02x on %s)", ErrBusError, addr, b.name)
	}
	if err := c.Tx(w, r); err != nil {
		return fmt.Errorf("%w (0x%02x on %s): %v", ErrNACK, addr, b.name, err)
	}
	switch kind {
	case FaultStuck:
		for i := range r {
			r[i] = 0xff
		}
	case FaultGarbage:
		for i := range r {
			r[i] ^= byte(1 << b.rnd.IntN(8))
		}
	}
	return nil
}

// SetSpeed implements i2c.Bus. The emulated bus runs at any speed a real
// Pi adapter accepts.
func (b *Bus) SetSpeed(f physic.Frequency) error {
	if f < 10*physic.KiloHertz || f > 1*physic.MegaHertz {
		return fmt.Errorf("emu: speed %s outside 10kHz-1MHz", f)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.speed = f
	return nil
}

// String implements i2c.Bus.
func (b *Bus) String() string { return b.name }

// Close implements i2c.BusCloser.
func (b *Bus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}
