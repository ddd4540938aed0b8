package pn532

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/microretail/kioskd/internal/wait"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
)

// Addr is the PN532's I2C address, 0x48 in the data sheet's 8-bit form.
// It is fixed in silicon.
const Addr uint16 = 0x24

// Opts configures a Dev.
type Opts struct {
	IRQ     gpio.PinIn    // optional P70_IRQ line (labelled IRQ on the boards), low when a frame is ready
	Reset   gpio.PinOut   // optional RSTPDN line, low resets
	Timeout time.Duration // how long one command waits for its ACK and response; 0 means DefaultOpts.Timeout
	Poll    time.Duration // status poll interval without IRQ; 0 means DefaultOpts.Poll
	Retries int           // MxRtyPassiveActivation: passive activation retries per Poll, 0 to 254

	// wait sleeps for d or until ctx is done; nil is the wall clock.
	// Tests replace it so that traces do not depend on timing.
	wait func(ctx context.Context, d time.Duration) error
}

// DefaultOpts is what New uses when opts is nil. With 2 retries a Poll on an
// empty field returns ErrNoCard after three activation attempts instead of
// waiting for a card.
var DefaultOpts = Opts{Timeout: time.Second, Poll: 5 * time.Millisecond, Retries: 2}

// Errors callers act on. Frame corruption is ErrChecksum, ErrShortFrame or
// ErrFrame; bus failures wrap the bus's own error.
var (
	// ErrNoCard: Poll found no card in the field.
	ErrNoCard = errors.New("pn532: no card in the field")
	// ErrTimeout: the chip gave no ACK or no response in Opts.Timeout; the
	// command was aborted. After a reset of the chip, Init sets it up again.
	ErrTimeout = errors.New("pn532: no response in time")
	// ErrSyntax: the chip answered with the syntax error frame.
	ErrSyntax = errors.New("pn532: command rejected by the chip")
	// ErrNotPN532: GetFirmwareVersion did not report a PN532.
	ErrNotPN532 = errors.New("pn532: not a PN532")
	// ErrTargetLost: the card left, or the chip forgot it (a reset): Poll again.
	ErrTargetLost = errors.New("pn532: target lost")
)

// StatusError is a non-zero status byte in a response: the chip ran the
// command but the card or the RF link failed.
type StatusError struct {
	Cmd    string // command name, such as "InDataExchange"
	Status byte   // error code, UM0701 Table 6
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("pn532: %s: status 0x%02x (%s)", e.Cmd, e.Status, statusText[e.Status])
}

// Is makes errors.Is(err, ErrTargetLost) true for the statuses that mean
// the listed card is gone.
func (e *StatusError) Is(target error) bool {
	return target == ErrTargetLost && (e.Status == stTimeout || e.Status == stBadContext || e.Status == stCardGone)
}

// Firmware is the GetFirmwareVersion response.
type Firmware struct {
	IC      byte // 0x32 for a PN532
	Ver     byte // firmware version
	Rev     byte // firmware revision
	Support byte // bit 0 ISO/IEC 14443 A, bit 1 ISO/IEC 14443 B, bit 2 ISO 18092
}

// Target is a card InListPassiveTarget activated.
type Target struct {
	Tg      byte   // logical number the chip gave it, for ReadPages and Release
	SensRes uint16 // SENS_RES (ATQA), as the chip reports it: 0x0044 for NTAG21x
	SelRes  byte   // SEL_RES (SAK): 0x00 for NTAG21x, 0x08 for MIFARE Classic 1K
	UID     []byte // NFCID1, 4, 7 or 10 bytes
}

// Driver limits: how often a command is resent for a missing ACK, and how
// often a corrupt response is asked for again with a NACK frame.
const (
	maxSends  = 3
	maxNacks  = 3
	irqSlice  = 50 * time.Millisecond // longest WaitForEdge, so ctx is seen
	wakeDelay = 10 * time.Millisecond // before retrying the wake-up read
	resetLow  = 10 * time.Millisecond // RSTPDN held low
	resetBoot = 10 * time.Millisecond // after RSTPDN rises, before the first transfer
)

type irqMode int

const (
	irqNone  irqMode = iota // poll the status byte over I2C
	irqEdges                // wait for the falling edge
	irqLevel                // the line cannot raise edges: poll its level
)

// Dev is a PN532 on I2C. It is safe for concurrent use; commands are
// serialised, so a Halt waits for a Poll in progress to end.
type Dev struct {
	mu   sync.Mutex
	c    i2c.Dev
	opts Opts
	irq  irqMode
	wait func(ctx context.Context, d time.Duration) error
}

var _ conn.Resource = (*Dev)(nil)

// New wakes the PN532 at addr, pulsing Opts.Reset first if given, checks
// that it is a PN532 and sets it up (see Init).
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if addr != Addr {
		return nil, fmt.Errorf("pn532: address 0x%02x: the PN532 answers only at 0x%02x", addr, Addr)
	}
	o := DefaultOpts
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultOpts.Timeout
	}
	if o.Poll <= 0 {
		o.Poll = DefaultOpts.Poll
	}
	if o.Retries < 0 || o.Retries >= mxRtyPassiveWait {
		return nil, fmt.Errorf("pn532: Retries %d outside 0 to 254 (255 makes Poll wait for ever)", o.Retries)
	}
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: addr}, opts: o, wait: o.wait}
	if d.wait == nil {
		d.wait = sleep
	}
	ctx := context.Background()
	if o.Reset != nil {
		if err := d.pulseReset(ctx); err != nil {
			return nil, err
		}
	}
	if o.IRQ != nil {
		switch {
		case o.IRQ.In(gpio.PullUp, gpio.FallingEdge) == nil:
			d.irq = irqEdges
		case o.IRQ.In(gpio.PullUp, gpio.NoEdge) == nil:
			d.irq = irqLevel
		}
	}
	if err := d.wake(ctx); err != nil {
		return nil, err
	}
	if err := d.init(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// Init checks the chip's identity and sets it up again: SAMConfiguration
// in normal mode with P70_IRQ in use, then RFConfiguration MaxRetries so
// that Poll returns. Call it after ErrTimeout or ErrTargetLost that a
// chip reset caused: a reset forgets both settings.
func (d *Dev) Init() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.init(context.Background())
}

func (d *Dev) init(ctx context.Context) error {
	fw, err := d.firmware(ctx)
	if err != nil {
		return err
	}
	if fw.IC != icPN532 {
		return fmt.Errorf("%w: IC 0x%02x, want 0x%02x", ErrNotPN532, fw.IC, icPN532)
	}
	if _, err := d.exchange(ctx, cmdSAMConfiguration, []byte{samNormal, samTimeout, samUseIRQ}, 0); err != nil {
		return err
	}
	_, err = d.exchange(ctx, cmdRFConfiguration, []byte{cfgMaxRetries, mxRtyATRReset, mxRtyPSLReset, byte(d.opts.Retries)}, 0)
	return err
}

// Firmware runs GetFirmwareVersion.
func (d *Dev) Firmware() (Firmware, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.firmware(context.Background())
}

func (d *Dev) firmware(ctx context.Context) (Firmware, error) {
	r, err := d.exchange(ctx, cmdGetFirmwareVersion, nil, 4)
	if err != nil {
		return Firmware{}, err
	}
	if len(r) != 4 {
		return Firmware{}, fmt.Errorf("%w: %s answered % x", ErrFrame, cmdGetFirmwareVersion, r)
	}
	return Firmware{IC: r[0], Ver: r[1], Rev: r[2], Support: r[3]}, nil
}

// Poll activates one ISO/IEC 14443 Type A card at 106 kbps
// (InListPassiveTarget). It returns ErrNoCard when the chip's retries ran
// out with the field empty. Cancelling ctx aborts the command.
func (d *Dev) Poll(ctx context.Context) (Target, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// NbTg, then Tg, SENS_RES (2), SEL_RES, NFCIDLength and up to 10 bytes of NFCID1.
	r, err := d.exchange(ctx, cmdInListPassiveTarget, []byte{maxTg, brTy106A}, 16)
	if err != nil {
		return Target{}, err
	}
	if len(r) >= 1 && r[0] == 0 {
		return Target{}, ErrNoCard
	}
	if len(r) < 6 {
		return Target{}, fmt.Errorf("%w: %s answered % x", ErrFrame, cmdInListPassiveTarget, r)
	}
	n := int(r[5])
	if (n != 4 && n != 7 && n != 10) || len(r) < 6+n {
		return Target{}, fmt.Errorf("%w: NFCID1 of %d bytes in % x", ErrFrame, n, r)
	}
	return Target{
		Tg:      r[1],
		SensRes: uint16(r[2])<<8 | uint16(r[3]),
		SelRes:  r[4],
		UID:     append([]byte(nil), r[6:6+n]...),
	}, nil
}

// ReadPages reads four NTAG/Ultralight pages from page on target tg (the
// card's READ command through InDataExchange). Past the last page the
// card rolls over to page 0; a start page beyond it fails with a
// StatusError.
func (d *Dev) ReadPages(tg, page byte) ([16]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out [ntagPages * pageSize]byte
	r, err := d.exchange(context.Background(), cmdInDataExchange, []byte{tg, ntagRead, page}, 1+len(out))
	if err != nil {
		return out, err
	}
	if err := checkStatus(cmdInDataExchange, r); err != nil {
		return out, err
	}
	if len(r) != 1+len(out) {
		return out, fmt.Errorf("%w: READ returned %d bytes, want %d", ErrFrame, len(r)-1, len(out))
	}
	copy(out[:], r[1:])
	return out, nil
}

// Release releases target tg (InRelease); 0 releases every target.
func (d *Dev) Release(tg byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.release(tg)
}

func (d *Dev) release(tg byte) error {
	r, err := d.exchange(context.Background(), cmdInRelease, []byte{tg}, 1)
	if err != nil {
		return err
	}
	return checkStatus(cmdInRelease, r)
}

// String implements conn.Resource.
func (d *Dev) String() string { return "PN532{" + d.c.String() + "}" }

// Halt implements conn.Resource: it releases every target. It is safe to
// call more than once.
func (d *Dev) Halt() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.release(0)
}

func checkStatus(cmd command, r []byte) error {
	if len(r) == 0 {
		return fmt.Errorf("%w: %s answered without a status byte", ErrFrame, cmd)
	}
	if s := r[0] & statusMask; s != stOK {
		return &StatusError{Cmd: cmd.String(), Status: s}
	}
	return nil
}

// exchange runs one command: it writes the frame, reads the ACK (resending
// the command if something else came back), waits for the response and
// reads it (asking again with a NACK frame if it is corrupt). respMax is
// the most response bytes expected after the response code; a longer
// response is read whole on a second try. It returns the response after
// the response code.
func (d *Dev) exchange(ctx context.Context, cmd command, params []byte, respMax int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pn532: %s: %w", cmd, err)
	}
	req, err := EncodeFrame(TFIHost, append([]byte{byte(cmd)}, params...))
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, cmd)
	}
	budget := d.opts.Timeout
	if err := d.command(ctx, cmd, req, &budget); err != nil {
		return nil, err
	}
	return d.response(ctx, cmd, respMax, &budget)
}

// command writes req until the chip ACKs it.
func (d *Dev) command(ctx context.Context, cmd command, req []byte, budget *time.Duration) error {
	var last error
	for range maxSends {
		if err := d.write(cmd, req); err != nil {
			return err
		}
		buf := make([]byte, 1+len(ackFrame))
		if err := d.read(ctx, cmd, buf, budget); err != nil {
			return err
		}
		f, _, err := DecodeFrame(buf[1:])
		switch {
		case err == nil && f.Kind == FrameAck:
			return nil
		case err == nil:
			last = fmt.Errorf("%w: %s frame where the ACK was due", ErrFrame, f.Kind)
		case errors.Is(err, ErrShortFrame):
			last = fmt.Errorf("%w: % x where the ACK was due", ErrFrame, buf[1:])
		default:
			last = err
		}
	}
	return fmt.Errorf("%w (%s: no ACK in %d sends)", last, cmd, maxSends)
}

// response reads the response to cmd.
func (d *Dev) response(ctx context.Context, cmd command, respMax int, budget *time.Duration) ([]byte, error) {
	size := 1 + frameOverhead + 2 + respMax // status byte, frame with TFI and response code
	var last error
	for try := range maxNacks + 1 {
		if try > 0 {
			// UM0701 §6.2.1.4: a NACK frame makes the chip send its last response again.
			if err := d.write(cmd, nackFrame); err != nil {
				return nil, err
			}
		}
		buf := make([]byte, size)
		if err := d.read(ctx, cmd, buf, budget); err != nil {
			return nil, err
		}
		f, _, err := DecodeFrame(buf[1:])
		switch {
		case err == nil && f.Kind == FrameError:
			return nil, fmt.Errorf("%w (%s)", ErrSyntax, cmd)
		case err == nil && f.Kind == FrameInfo && f.TFI == TFIChip && f.Data[0] == byte(cmd)+1:
			return append([]byte(nil), f.Data[1:]...), nil
		case err == nil:
			last = fmt.Errorf("%w: %s frame % x does not answer %s", ErrFrame, f.Kind, f.Data, cmd)
		case errors.Is(err, ErrShortFrame):
			// The frame runs past what was read, or there is none: read
			// the most a frame can be next time.
			size = 1 + frameOverhead + 3 + MaxFrameLen
			last = fmt.Errorf("%w: no whole frame in %d bytes read", ErrFrame, len(buf)-1)
		default:
			last = err
		}
	}
	return nil, fmt.Errorf("%w (%s: %d reads)", last, cmd, maxNacks+1)
}

// read waits until the chip is ready, then reads buf: the status byte and
// the frame. On timeout or cancellation it aborts the command.
func (d *Dev) read(ctx context.Context, cmd command, buf []byte, budget *time.Duration) error {
	for {
		err := d.waitReady(ctx, budget)
		if err == nil {
			if err = d.c.Tx(nil, buf); err != nil {
				return fmt.Errorf("pn532: %s: read: %w", cmd, err)
			}
			if buf[0]&statusReady != 0 {
				return nil
			}
			// Ready a moment ago, busy now: noise on the status byte or
			// a spurious edge. Count it as one poll.
			err = d.pause(ctx, budget)
		}
		if err != nil {
			return d.abort(cmd, err)
		}
	}
}

var errNoTime = errors.New("out of time")

// waitReady returns once the chip has a frame to read.
func (d *Dev) waitReady(ctx context.Context, budget *time.Duration) error {
	for {
		ready, err := d.ready()
		if err != nil {
			return err
		}
		if ready {
			return nil
		}
		if err := d.pause(ctx, budget); err != nil {
			return err
		}
	}
}

func (d *Dev) ready() (bool, error) {
	if d.irq != irqNone {
		return d.opts.IRQ.Read() == gpio.Low, nil
	}
	var s [1]byte
	if err := d.c.Tx(nil, s[:]); err != nil {
		return false, err
	}
	return s[0]&statusReady != 0, nil
}

// pause waits one poll interval, or for the IRQ edge, and charges the time
// waited to budget.
func (d *Dev) pause(ctx context.Context, budget *time.Duration) error {
	if *budget <= 0 {
		return errNoTime
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.irq == irqEdges {
		// Charge the time actually spent: a chattering IRQ line wakes
		// this early again and again, and must not stretch the timeout.
		step := min(*budget, irqSlice)
		start := time.Now()
		if d.opts.IRQ.WaitForEdge(step) {
			*budget -= time.Since(start)
		} else {
			*budget -= step
		}
		return nil
	}
	step := min(*budget, d.opts.Poll)
	if err := d.wait(ctx, step); err != nil {
		return err
	}
	*budget -= step
	return nil
}

// abort sends the ACK frame that aborts the command in progress (UM0701
// §6.2.1.3) and reports why.
func (d *Dev) abort(cmd command, cause error) error {
	var err error
	switch {
	case cause == errNoTime:
		err = fmt.Errorf("%w (%s, %v)", ErrTimeout, cmd, d.opts.Timeout)
	case errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded):
		err = fmt.Errorf("pn532: %s: %w", cmd, cause)
	default: // the status read failed on the bus: nothing to abort through
		return fmt.Errorf("pn532: %s: status: %w", cmd, cause)
	}
	if werr := d.write(cmd, ackFrame); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

func (d *Dev) write(cmd command, frame []byte) error {
	if err := d.c.Tx(frame, nil); err != nil {
		return fmt.Errorf("pn532: %s: write: %w", cmd, err)
	}
	return nil
}

// wake reads the status byte: the address match wakes a PN532 in power
// down, which may not acknowledge that first transfer (the Linux pn533
// I2C driver retries it too).
func (d *Dev) wake(ctx context.Context) error {
	var s [1]byte
	if d.c.Tx(nil, s[:]) == nil {
		return nil
	}
	if err := d.wait(ctx, wakeDelay); err != nil {
		return err
	}
	if err := d.c.Tx(nil, s[:]); err != nil {
		return fmt.Errorf("pn532: wake-up: %w", err)
	}
	return nil
}

func (d *Dev) pulseReset(ctx context.Context) error {
	if err := d.opts.Reset.Out(gpio.Low); err != nil {
		return fmt.Errorf("pn532: reset: %w", err)
	}
	if err := d.wait(ctx, resetLow); err != nil {
		return err
	}
	if err := d.opts.Reset.Out(gpio.High); err != nil {
		return fmt.Errorf("pn532: reset: %w", err)
	}
	return d.wait(ctx, resetBoot)
}

func sleep(ctx context.Context, d time.Duration) error {
	if !wait.After(ctx, d) {
		return ctx.Err()
	}
	return nil
}
