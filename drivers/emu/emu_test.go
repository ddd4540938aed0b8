package emu

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// regChip is a minimal register-pointer chip: a write sets the pointer and
// stores any following bytes; a read returns bytes from the pointer on.
type regChip struct {
	regs [8]byte
	ptr  int
}

func (c *regChip) Tx(w, r []byte) error {
	if len(w) > 0 {
		c.ptr = int(w[0]) % len(c.regs)
		for i, b := range w[1:] {
			c.regs[(c.ptr+i)%len(c.regs)] = b
		}
	}
	for i := range r {
		r[i] = c.regs[(c.ptr+i)%len(c.regs)]
	}
	return nil
}

func (c *regChip) PowerOnReset() { *c = regChip{} }

func TestBusRoutesAndFaults(t *testing.T) {
	b := NewBus("test", 1)
	c := &regChip{}
	b.Attach(0x40, c)
	if err := b.Tx(0x40, []byte{2, 0xab, 0xcd}, nil); err != nil {
		t.Fatal(err)
	}
	r := make([]byte, 2)
	if err := b.Tx(0x40, []byte{2}, r); err != nil || r[0] != 0xab || r[1] != 0xcd {
		t.Fatalf("read back %x, %v", r, err)
	}
	if err := b.Tx(0x41, nil, r); !errors.Is(err, ErrNACK) || !errors.Is(err, syscall.EREMOTEIO) {
		t.Fatalf("absent address: %v, want a NACK", err)
	}

	b.Inject(0x40, FaultStuck, 1)
	if err := b.Tx(0x40, []byte{2}, r); err != nil || r[0] != 0xff || r[1] != 0xff {
		t.Fatalf("stuck SDA: %x, %v", r, err)
	}
	b.Inject(0x40, FaultGarbage, 1)
	if err := b.Tx(0x40, []byte{2}, r); err != nil || (r[0] == 0xab && r[1] == 0xcd) {
		t.Fatalf("garbage left the bytes intact: %x, %v", r, err)
	}
	b.Inject(0x40, FaultBusError, 2)
	for i := 0; i < 2; i++ {
		if err := b.Tx(0x40, []byte{2}, r); !errors.Is(err, ErrBusError) {
			t.Fatalf("bus error %d: %v", i, err)
		}
	}
	if err := b.Tx(0x40, []byte{2}, r); err != nil {
		t.Fatalf("the fault outlived its count: %v", err)
	}
	b.Inject(0x40, FaultNACK, -1)
	for i := 0; i < 100; i++ {
		if err := b.Tx(0x40, []byte{2}, r); !errors.Is(err, ErrNACK) {
			t.Fatalf("NACK storm %d: %v", i, err)
		}
	}
	b.Clear(0x40)
	if !b.Reset(0x40) {
		t.Fatal("reset found no chip")
	}
	if err := b.Tx(0x40, []byte{2}, r); err != nil || r[0] != 0 || r[1] != 0 {
		t.Fatalf("after a reset: %x, %v", r, err)
	}
	if got := b.Count(0x40); got != 108 {
		t.Fatalf("Count = %d, want 108", got)
	}
}

func TestPinEdgesAndPolling(t *testing.T) {
	p := NewPin("GPIO6", 6, gpio.High)
	if err := p.In(gpio.PullNoChange, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	if p.WaitForEdge(10 * time.Millisecond) {
		t.Fatal("an edge with nothing changing")
	}
	p.Drive(gpio.Low)
	if !p.WaitForEdge(time.Second) || p.Read() != gpio.Low {
		t.Fatal("falling edge not seen")
	}
	p.Bounce(gpio.High, 4)
	n := 0
	for p.WaitForEdge(10 * time.Millisecond) {
		n++
	}
	if n != 5 || p.Read() != gpio.High {
		t.Fatalf("bounce gave %d edges and level %v, want 5 and High", n, p.Read())
	}

	q := NewPin("GPIO5", 5, gpio.Low).NoEdges()
	if err := q.In(gpio.PullNoChange, gpio.BothEdges); err == nil {
		t.Fatal("edge detection armed on a line without it")
	}
	if err := q.In(gpio.PullNoChange, gpio.NoEdge); err != nil {
		t.Fatal(err)
	}
	q.Drive(gpio.High)
	if q.Read() != gpio.High {
		t.Fatal("polling does not see the level")
	}

	var seen []gpio.Level
	r := NewPin("GPIO27", 27, gpio.High)
	r.OnOut(func(l gpio.Level) { seen = append(seen, l) })
	_ = r.Out(gpio.Low)
	_ = r.Out(gpio.High)
	if len(seen) != 2 || seen[0] != gpio.Low || seen[1] != gpio.High {
		t.Fatalf("OnOut saw %v", seen)
	}

	done := make(chan bool)
	go func() { done <- p.WaitForEdge(-1) }()
	time.Sleep(10 * time.Millisecond)
	_ = p.Halt()
	if <-done {
		t.Fatal("Halt woke WaitForEdge with an edge")
	}
}

// TestPinStuck: a stuck line ignores what drives it, raising no edges,
// and follows again once freed.
func TestPinStuck(t *testing.T) {
	p := NewPin("GPIO6", 6, gpio.High)
	if err := p.In(gpio.Float, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	p.Stick(gpio.High)
	p.Drive(gpio.Low)
	if p.Read() != gpio.High || p.WaitForEdge(10*time.Millisecond) {
		t.Fatal("a line stuck high moved, or raised an edge")
	}
	p.Unstick() // the world holds it low: it falls
	if p.Read() != gpio.Low || !p.WaitForEdge(10*time.Millisecond) {
		t.Fatal("a freed line did not follow the world")
	}
	p.Stick(gpio.High) // stuck at the other level: an edge
	if p.Read() != gpio.High || !p.WaitForEdge(10*time.Millisecond) {
		t.Fatal("sticking at a new level raised no edge")
	}
}
