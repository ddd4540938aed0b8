package emu

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/pin"
)

// Pin is an emulated GPIO line. It implements gpio.PinIO.
//
// The world drives it with Drive (a sensor's output, a chip's IRQ line);
// the driver reads it, waits for edges on it, or drives it itself with Out.
// Edge detection works as the Linux GPIO character device does: In with an
// edge arms it, and every matching transition is queued until WaitForEdge
// takes it. A line whose controller cannot raise edge interrupts is made
// with NoEdges; In with an edge then fails and the driver must poll.
type Pin struct {
	name    string
	number  int
	noEdges bool

	mu     sync.Mutex
	world  gpio.Level // what the outside drives the line to
	stuck  bool       // the line is stuck at stuckL, whatever drives it
	stuckL gpio.Level
	out    bool // the driver drives the line
	outL   gpio.Level
	pull   gpio.Pull
	edge   gpio.Edge
	events chan struct{}
	halt   chan struct{}
	onOut  func(gpio.Level)
}

var _ gpio.PinIO = (*Pin)(nil)

// NewPin returns a line at level l, configured as an input with no edge
// detection. number is its BCM number.
func NewPin(name string, number int, l gpio.Level) *Pin {
	return &Pin{name: name, number: number, world: l, events: make(chan struct{}, 64), halt: make(chan struct{}, 1)}
}

// NoEdges makes the line one whose controller raises no edge interrupts.
func (p *Pin) NoEdges() *Pin {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noEdges = true
	return p
}

// OnOut calls f with each level the driver drives the line to, as a chip
// wired to the line sees it. f runs without the pin's lock held.
func (p *Pin) OnOut(f func(gpio.Level)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onOut = f
}

// Drive sets the level the outside world puts on the line. A transition
// queues an edge if edge detection is armed for it.
func (p *Pin) Drive(l gpio.Level) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.world == l {
		return
	}
	p.world = l
	if p.out || p.stuck {
		return // a driven output ignores what is wired to it; a stuck line moves for nothing
	}
	p.queueLocked(l)
}

// Stick holds the line at l whatever the outside world drives it to: a
// failed optocoupler, a wire shorted to a rail, a pull-up with nothing
// driving it any more. Unstick frees it.
func (p *Pin) Stick(l gpio.Level) {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.levelLocked()
	p.stuck, p.stuckL = true, l
	if !p.out && was != l {
		p.queueLocked(l)
	}
}

// Unstick frees a stuck line: it follows the outside world again.
func (p *Pin) Unstick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stuck {
		return
	}
	was := p.levelLocked()
	p.stuck = false
	if now := p.levelLocked(); !p.out && now != was {
		p.queueLocked(now)
	}
}

// Bounce toggles the line n times from where the outside world holds it,
// then settles it at l, as a relay contact or a mains-detect optocoupler
// chatters.
func (p *Pin) Bounce(l gpio.Level, n int) {
	p.mu.Lock()
	lv := p.world
	p.mu.Unlock()
	for i := 0; i < n; i++ {
		lv = !lv
		p.Drive(lv)
	}
	p.Drive(l)
}

func (p *Pin) queueLocked(l gpio.Level) {
	if p.edge == gpio.BothEdges || (p.edge == gpio.RisingEdge && l == gpio.High) || (p.edge == gpio.FallingEdge && l == gpio.Low) {
		select {
		case p.events <- struct{}{}:
		default: // the kernel's event FIFO overflowed: the edge is lost, as on hardware
		}
	}
}

// Level is what the line is at now: the driver's output if it drives the
// line, else the outside world's level.
func (p *Pin) Level() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.levelLocked()
}

func (p *Pin) levelLocked() gpio.Level {
	if p.out {
		return p.outL
	}
	if p.stuck {
		return p.stuckL
	}
	return p.world
}

// IsOutput reports whether the driver drives the line.
func (p *Pin) IsOutput() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out
}

// String implements conn.Resource.
func (p *Pin) String() string { return fmt.Sprintf("%s(emu)", p.name) }

// Halt implements conn.Resource: it disarms edge detection and wakes a
// WaitForEdge in progress, which returns false.
func (p *Pin) Halt() error {
	p.mu.Lock()
	p.edge = gpio.NoEdge
	p.mu.Unlock()
	select {
	case p.halt <- struct{}{}:
	default:
	}
	return nil
}

// Name implements pin.Pin.
func (p *Pin) Name() string { return p.name }

// Number implements pin.Pin.
func (p *Pin) Number() int { return p.number }

// Function implements pin.Pin.
func (p *Pin) Function() string { return string(p.Func()) }

// Func implements pin.PinFunc.
func (p *Pin) Func() pin.Func {
	if p.IsOutput() {
		return gpio.OUT
	}
	return gpio.IN
}

// In implements gpio.PinIn.
func (p *Pin) In(pull gpio.Pull, edge gpio.Edge) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if edge != gpio.NoEdge && p.noEdges {
		return fmt.Errorf("emu: %s: edge detection not supported on this line", p.name)
	}
	p.out, p.pull, p.edge = false, pull, edge
	// Arming flushes events from before, as requesting a line anew does.
	for {
		select {
		case <-p.events:
		default:
			return nil
		}
	}
}

// Read implements gpio.PinIn.
func (p *Pin) Read() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.levelLocked()
}

// WaitForEdge implements gpio.PinIn. A negative timeout waits for ever.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	p.mu.Lock()
	armed := p.edge != gpio.NoEdge
	p.mu.Unlock()
	if !armed {
		return false
	}
	select { // an edge already queued wins over a timeout that has run out
	case <-p.events:
		return true
	default:
	}
	var after <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		after = t.C
	}
	select {
	case <-p.events:
		return true
	case <-p.halt:
		return false
	case <-after:
		return false
	}
}

// Pull implements gpio.PinIn.
func (p *Pin) Pull() gpio.Pull {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pull
}

// DefaultPull implements gpio.PinIn.
func (p *Pin) DefaultPull() gpio.Pull { return gpio.Float }

// Out implements gpio.PinOut.
func (p *Pin) Out(l gpio.Level) error {
	p.mu.Lock()
	p.out, p.outL, p.edge = true, l, gpio.NoEdge
	f := p.onOut
	p.mu.Unlock()
	if f != nil {
		f(l)
	}
	return nil
}

// PWM implements gpio.PinOut. Emulated lines have no PWM block.
func (p *Pin) PWM(gpio.Duty, physic.Frequency) error {
	return errors.New("emu: PWM not supported on an emulated line")
}
