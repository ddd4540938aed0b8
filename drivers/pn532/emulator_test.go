package pn532

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/internal/hexfixture"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

var ntagUID = []byte{0x04, 0x52, 0x3A, 0x92, 0x6C, 0x1F, 0x90}

// rig is a PN532 emulator on an emulated bus, and a driver for it.
func rig(t *testing.T, edit func(*Opts)) (*emu.Bus, *Emulator, *Dev) {
	t.Helper()
	bus := emu.NewBus("i2c-1", 1)
	e := NewEmulator()
	bus.Attach(Addr, e)
	d, err := New(bus, Addr, testOpts(edit))
	if err != nil {
		t.Fatal(err)
	}
	return bus, e, d
}

func TestEmulatorInit(t *testing.T) {
	e := NewEmulator()
	if e.SAMMode() != 0 || e.PassiveRetries() != 0xFF {
		t.Fatalf("power-on: SAM mode %d, MxRtyPassiveActivation 0x%02x; want 0 and 0xFF", e.SAMMode(), e.PassiveRetries())
	}
	bus := emu.NewBus("i2c-1", 1)
	bus.Attach(Addr, e)
	if _, err := New(bus, Addr, testOpts(func(o *Opts) { o.Retries = 5 })); err != nil {
		t.Fatal(err)
	}
	if e.SAMMode() != samNormal || e.PassiveRetries() != 5 {
		t.Fatalf("after New: SAM mode %d, MxRtyPassiveActivation %d; want 1 and 5", e.SAMMode(), e.PassiveRetries())
	}
	if got, want := e.Commands(), []byte{0x02, 0x14, 0x32}; !bytes.Equal(got, want) {
		t.Fatalf("commands % X, want % X", got, want)
	}
}

// TestWireGolden compares what the driver writes with the fixtures.
func TestWireGolden(t *testing.T) {
	bus := emu.NewBus("i2c-1", 1)
	e := NewEmulator()
	e.Place(NTAG213(ntagUID))
	bus.Attach(Addr, e)
	rec := &i2ctest.Record{Bus: bus}
	d, err := New(rec, Addr, testOpts(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadPages(1, 4); err != nil {
		t.Fatal(err)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	var writes [][]byte
	for _, op := range rec.Ops {
		if len(op.W) > 0 {
			writes = append(writes, op.W)
		}
	}
	files := []string{"get_firmware_version.hex", "sam_configuration.hex", "rf_configuration.hex",
		"in_list_passive_target.hex", "in_data_exchange_read.hex", "in_release_all.hex"}
	if len(writes) != len(files) {
		t.Fatalf("%d frames written, want %d", len(writes), len(files))
	}
	for i, f := range files {
		if want := hexfixture.Read(t, f); !bytes.Equal(writes[i], want) {
			t.Errorf("frame %d: % X, %s has % X", i, writes[i], f, want)
		}
	}
	// The chip's answer to GetFirmwareVersion, after the status byte.
	if want, got := hexfixture.Read(t, "firmware_response.hex"), rec.Ops[5].R[1:]; !bytes.Equal(got, want) {
		t.Errorf("firmware response % X, fixture % X", got, want)
	}
}

func TestPollUIDSizes(t *testing.T) {
	tests := []struct {
		name string
		card Card
	}{
		{"4 bytes, MIFARE Classic 1K", Card{UID: []byte{0xDE, 0xAD, 0xBE, 0xEF}, SensRes: 0x0004, SelRes: 0x08}},
		{"7 bytes, NTAG213", NTAG213(ntagUID)},
		{"10 bytes", Card{UID: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, SensRes: 0x0084, SelRes: 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e, d := rig(t, nil)
			e.Place(tt.card)
			got, err := d.Poll(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got.Tg != 1 || got.SensRes != tt.card.SensRes || got.SelRes != tt.card.SelRes || !bytes.Equal(got.UID, tt.card.UID) {
				t.Fatalf("Poll = %+v, want the card %+v", got, tt.card)
			}
			if !e.Listed() {
				t.Fatal("the chip lists no target after Poll")
			}
			if err := d.Release(got.Tg); err != nil {
				t.Fatal(err)
			}
			if e.Listed() {
				t.Fatal("the target is still listed after Release")
			}
			var se *StatusError
			if err := d.Release(got.Tg); !errors.As(err, &se) || se.Status != stBadContext {
				t.Fatalf("second Release = %v, want status 0x27", err)
			}
		})
	}
}

func TestPollBadUID(t *testing.T) {
	_, e, d := rig(t, nil)
	e.Place(Card{UID: []byte{1, 2, 3, 4, 5}})
	if _, err := d.Poll(context.Background()); !errors.Is(err, ErrFrame) {
		t.Fatalf("Poll on a 5-byte NFCID1 = %v, want ErrFrame", err)
	}
}

func TestReadPagesNTAG213(t *testing.T) {
	_, e, d := rig(t, nil)
	e.Place(NTAG213(ntagUID))
	tgt, err := d.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bcc0 := byte(0x88 ^ 0x04 ^ 0x52 ^ 0x3A)
	bcc1 := byte(0x92 ^ 0x6C ^ 0x1F ^ 0x90)
	tests := []struct {
		name string
		page byte
		want []byte
		st   byte
	}{
		{"header", 0, []byte{0x04, 0x52, 0x3A, bcc0, 0x92, 0x6C, 0x1F, 0x90, bcc1, 0x48, 0x00, 0x00, 0xE1, 0x10, 0x12, 0x00}, stOK},
		{"rolls over past page 2Ch", 0x2B, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0x04, 0x52, 0x3A, bcc0, 0x92, 0x6C, 0x1F, 0x90}, stOK},
		{"past the last page: NAK", 0x2D, nil, stDataFormat},
		{"page FFh: NAK", 0xFF, nil, stDataFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.ReadPages(tgt.Tg, tt.page)
			var se *StatusError
			switch {
			case tt.st != stOK && (!errors.As(err, &se) || se.Status != tt.st || errors.Is(err, ErrTargetLost)):
				t.Fatalf("ReadPages = %v, want status 0x%02x", err, tt.st)
			case tt.st != stOK && err.Error() != "pn532: InDataExchange: status 0x13 (unexpected RF frame)":
				t.Fatalf("error text %q", err)
			case tt.st == stOK && (err != nil || !bytes.Equal(got[:], tt.want)):
				t.Fatalf("ReadPages = % X, %v; want % X", got, err, tt.want)
			}
		})
	}
	e.Remove()
	if _, err := d.ReadPages(tgt.Tg, 4); !errors.Is(err, ErrTargetLost) {
		t.Fatalf("ReadPages with the card gone = %v, want ErrTargetLost", err)
	}
}

func TestIRQ(t *testing.T) {
	tests := []struct {
		name string
		pin  func() *emu.Pin
	}{
		{"falling edge", func() *emu.Pin { return emu.NewPin("GPIO25", 25, gpio.High) }},
		{"level, no edge support", func() *emu.Pin { return emu.NewPin("GPIO25", 25, gpio.High).NoEdges() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := emu.NewBus("i2c-1", 1)
			e := NewEmulator()
			irq := tt.pin()
			e.SetIRQ(irq)
			bus.Attach(Addr, e)
			// The real clock: with IRQ the driver waits on the line.
			d, err := New(bus, Addr, &Opts{IRQ: irq, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			// Wake-up, then per command: write, ACK read, response read.
			// No status polls on the bus.
			if got := bus.Count(Addr); got != 1+3*3 {
				t.Fatalf("%d transfers for New, want 10", got)
			}
			// A reset leaves MxRtyPassiveActivation at 0xFF: the chip
			// waits for a card and raises IRQ when one comes.
			bus.Reset(Addr)
			done := make(chan error, 1)
			go func() {
				tgt, err := d.Poll(context.Background())
				if err == nil && !bytes.Equal(tgt.UID, ntagUID) {
					err = errors.New("wrong UID")
				}
				done <- err
			}()
			time.Sleep(20 * time.Millisecond)
			select {
			case err := <-done:
				t.Fatalf("Poll returned %v with the field empty", err)
			default:
			}
			e.Place(NTAG213(ntagUID))
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestResetMidRun(t *testing.T) {
	bus, e, d := rig(t, func(o *Opts) { o.Timeout = 30 * time.Millisecond })
	e.Place(NTAG213(ntagUID))
	tgt, err := d.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadPages(tgt.Tg, 0); err != nil {
		t.Fatal(err)
	}

	bus.Reset(Addr) // brownout: the chip forgets its set-up and the target
	if e.SAMMode() != 0 || e.PassiveRetries() != mxRtyPassiveWait || e.Listed() {
		t.Fatalf("after reset: SAM %d, MxRtyPassiveActivation 0x%02x, listed %v", e.SAMMode(), e.PassiveRetries(), e.Listed())
	}
	if _, err := d.ReadPages(tgt.Tg, 0); !errors.Is(err, ErrTargetLost) {
		t.Fatalf("ReadPages after reset = %v, want ErrTargetLost", err)
	}
	e.Remove()
	// MxRtyPassiveActivation is back at 0xFF: without Init, a Poll on an
	// empty field never returns on its own; the driver aborts it.
	if _, err := d.Poll(context.Background()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Poll after reset = %v, want ErrTimeout", err)
	}
	e.Place(NTAG213(ntagUID)) // the aborted command must not answer now
	if _, err := d.Firmware(); err != nil {
		t.Fatalf("Firmware after the abort: %v", err)
	}

	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	if e.SAMMode() != samNormal || e.PassiveRetries() != byte(DefaultOpts.Retries) {
		t.Fatalf("after Init: SAM %d, MxRtyPassiveActivation %d", e.SAMMode(), e.PassiveRetries())
	}
	if _, err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.Remove()
	if _, err := d.Poll(context.Background()); !errors.Is(err, ErrNoCard) {
		t.Fatalf("Poll on an empty field = %v, want ErrNoCard", err)
	}
}

func TestWake(t *testing.T) {
	tests := []struct {
		name  string
		nacks int
		ok    bool
	}{
		{"awake", 0, true},
		{"first transfer wakes it, unacknowledged", 1, true},
		{"not there", 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := emu.NewBus("i2c-1", 1)
			bus.Attach(Addr, NewEmulator())
			bus.Inject(Addr, emu.FaultNACK, tt.nacks)
			d, err := New(bus, Addr, testOpts(nil))
			if tt.ok != (err == nil) || (err != nil && (d != nil || !errors.Is(err, emu.ErrNACK))) {
				t.Fatalf("New = %v, %v", d, err)
			}
		})
	}
}

func TestResetLine(t *testing.T) {
	bus := emu.NewBus("i2c-1", 1)
	e := NewEmulator()
	bus.Attach(Addr, e)
	rst := emu.NewPin("GPIO17", 17, gpio.High)
	var seen []gpio.Level
	line := e.ResetLine()
	rst.OnOut(func(l gpio.Level) { seen = append(seen, l); line(l) })
	d, err := New(bus, Addr, testOpts(func(o *Opts) { o.Reset = rst }))
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] != gpio.Low || seen[1] != gpio.High {
		t.Fatalf("RSTPDN went %v, want a low pulse", seen)
	}
	_ = rst.Out(gpio.Low)
	if _, err := d.Firmware(); !errors.Is(err, emu.ErrNACK) {
		t.Fatalf("Firmware with RSTPDN low = %v, want a NACK", err)
	}
	_ = rst.Out(gpio.High)
	if e.SAMMode() != 0 {
		t.Fatal("the rising edge did not reset the chip")
	}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
}

func TestNACKStorm(t *testing.T) {
	bus, e, d := rig(t, nil)
	e.Place(NTAG213(ntagUID))
	bus.Inject(Addr, emu.FaultNACK, -1)
	for range 3 {
		if _, err := d.Poll(context.Background()); !errors.Is(err, emu.ErrNACK) {
			t.Fatalf("Poll in a NACK storm = %v, want the bus's NACK", err)
		}
	}
	bus.Clear(Addr)
	tgt, err := d.Poll(context.Background())
	if err != nil {
		t.Fatalf("Poll after the storm: %v", err)
	}
	if _, err := d.ReadPages(tgt.Tg, 4); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptBytes(t *testing.T) {
	tests := []struct {
		name  string
		fault emu.Fault
	}{
		{"garbage", emu.FaultGarbage},
		{"SDA stuck high", emu.FaultStuck},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus, e, d := rig(t, func(o *Opts) { o.Timeout = 50 * time.Millisecond })
			e.Place(NTAG213(ntagUID))
			bus.Inject(Addr, tt.fault, -1)
			_, err := d.Poll(context.Background())
			if !errors.Is(err, ErrFrame) && !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrTimeout) {
				t.Fatalf("Poll on corrupt bytes = %v, want a frame error or a timeout", err)
			}
			bus.Clear(Addr)
			tgt, err := d.Poll(context.Background())
			if err != nil {
				t.Fatalf("Poll after the fault cleared: %v", err)
			}
			if !bytes.Equal(tgt.UID, ntagUID) {
				t.Fatalf("UID % X", tgt.UID)
			}
		})
	}
}

// TestEmulatorFrames drives the emulator with raw frames and reads.
func TestEmulatorFrames(t *testing.T) {
	frame := func(data ...byte) []byte {
		f, err := EncodeFrame(TFIHost, data)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	ready := func(f []byte) []byte { return append([]byte{statusReady}, f...) }
	busy := []byte{0x00}
	fw := hexfixture.Read(t, "firmware_response.hex")
	// A step writes w, or reads len(want) bytes and expects want.
	type step struct{ w, want []byte }
	tests := []struct {
		name  string
		card  bool
		steps []step
	}{
		{"GetFirmwareVersion: ACK, then the response", false, []step{
			{w: frame(0x02)}, {want: ready(ackFrame)}, {want: ready(fw)}, {want: busy},
		}},
		{"a status poll leaves the frame waiting", false, []step{
			{w: frame(0x02)}, {want: []byte{0x01}}, {want: []byte{0x01}}, {want: ready(ackFrame)},
		}},
		{"unknown command: ACK, then the syntax error frame", false, []step{
			{w: frame(0x7E)}, {want: ready(ackFrame)}, {want: ready(errorFrame)},
		}},
		{"bad parameters: syntax error", false, []step{
			{w: frame(0x14, 0x00)}, {want: ready(ackFrame)}, {want: ready(errorFrame)},
		}},
		{"bad checksum: no ACK", false, []step{
			{w: []byte{0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2B, 0x00}}, {want: busy},
		}},
		{"NACK: the last response again", false, []step{
			{w: frame(0x02)}, {want: ready(ackFrame)}, {want: ready(fw)}, {want: busy},
			{w: nackFrame}, {want: ready(fw)},
		}},
		{"a short read loses the rest; NACK gets it whole", false, []step{
			{w: frame(0x02)}, {want: ready(ackFrame)}, {want: ready(fw[:6])}, {want: busy},
			{w: nackFrame}, {want: ready(fw)},
		}},
		{"InListPassiveTarget waits for a card", false, []step{
			{w: frame(0x4A, 0x01, 0x00)}, {want: ready(ackFrame)}, {want: busy}, {want: busy},
		}},
		{"ACK aborts the waiting InListPassiveTarget", true, []step{
			{w: frame(0x4A, 0x01, 0x00)}, {want: ready(ackFrame)}, {w: ackFrame}, {want: busy},
		}},
		{"a new command replaces the one in progress", true, []step{
			{w: frame(0x4A, 0x01, 0x00)}, {w: frame(0x02)}, {want: ready(ackFrame)}, {want: ready(fw)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEmulator()
			for i, s := range tt.steps {
				if s.w != nil {
					if err := e.Tx(s.w, nil); err != nil {
						t.Fatal(err)
					}
					continue
				}
				got := make([]byte, len(s.want))
				if err := e.Tx(nil, got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, s.want) {
					t.Fatalf("step %d read % X, want % X", i, got, s.want)
				}
			}
			if tt.card {
				// A card now must not answer a command that is over.
				e.Place(NTAG213(ntagUID))
				got := make([]byte, 1)
				_ = e.Tx(nil, got)
				if got[0] != 0x00 {
					t.Fatalf("the command that is over answered: status % X", got)
				}
			}
		})
	}
}

func TestHaltTwice(t *testing.T) {
	_, e, d := rig(t, nil)
	e.Place(NTAG213(ntagUID))
	if _, err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := d.Halt(); err != nil {
			t.Fatal(err)
		}
	}
	if e.Listed() {
		t.Fatal("Halt left the target listed")
	}
}

func TestConcurrentUse(t *testing.T) {
	_, e, d := rig(t, nil)
	e.Place(NTAG213(ntagUID))
	errs := make(chan error, 8)
	for range 4 {
		go func() {
			_, err := d.Poll(context.Background())
			errs <- err
		}()
		go func() {
			_, err := d.Firmware()
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestChatteringIRQTimesOut: an IRQ line that keeps bouncing while the
// chip has nothing to say (a loose wire, interference from the printer's
// motor) wakes the driver again and again; the command must still time
// out on schedule, or the reader's goroutine, and a shutdown, hang.
func TestChatteringIRQTimesOut(t *testing.T) {
	bus := emu.NewBus("i2c-1", 1)
	e := NewEmulator()
	irq := emu.NewPin("GPIO25", 25, gpio.High)
	e.SetIRQ(irq)
	bus.Attach(Addr, e)
	d, err := New(bus, Addr, &Opts{IRQ: irq, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// After a reset the chip waits for a card for ever: it never answers.
	bus.Reset(Addr)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				irq.Drive(gpio.Low)
				irq.Drive(gpio.High)
			}
		}
	}()
	done := make(chan error, 1)
	go func() { _, err := d.Poll(context.Background()); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Poll = %v, want ErrTimeout", err)
		}
	case <-time.After(10 * time.Second): // 100× the timeout: only a hang gets here
		t.Fatal("Poll on a chattering IRQ line never timed out")
	}
}
