package escpos

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// fast keeps the tests that wait for a missing reply short.
var fast = &Opts{Timeout: 50 * time.Millisecond}

func newDev(t *testing.T, p Port) *Dev {
	t.Helper()
	d, err := New(p, fast)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Halt() })
	return d
}

func TestPrint(t *testing.T) {
	e := NewEmulator(Paper58)
	d := newDev(t, e)
	if err := d.Print(sampleReceipt().Bytes()); err != nil {
		t.Fatal(err)
	}
	want := Receipt{Job: "sale-000123", Text: sampleText, Cut: true, Drawer: 1}
	if r := e.Receipts(); len(r) != 1 || r[0] != want {
		t.Errorf("receipts %+v, want %+v", r, want)
	}
	st, err := d.Status()
	if err != nil || st != (Status{}) {
		t.Errorf("status %v, %v", st, err)
	}
	if s := d.String(); s != "ESC/POS printer" {
		t.Errorf("String() = %q", s)
	}
}

// TestPrintRefused: the printer cannot print, so Print sends nothing.
func TestPrintRefused(t *testing.T) {
	tests := []struct {
		name  string
		set   func(e *Emulator)
		clear func(e *Emulator)
		want  error
	}{
		{"paper out", func(e *Emulator) { e.SetPaper(PaperOut) }, func(e *Emulator) { e.SetPaper(PaperOK) }, ErrPaperOut},
		{"cover open", func(e *Emulator) { e.SetCover(true) }, func(e *Emulator) { e.SetCover(false) }, ErrCoverOpen},
		{"cutter jam", func(e *Emulator) { e.SetCutterJam(true) }, func(e *Emulator) { e.SetCutterJam(false) }, ErrPrinter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEmulator(Paper58)
			d := newDev(t, e)
			tt.set(e)
			err := d.Print([]byte("must not print\n"))
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrNotSent) {
				t.Fatalf("Print: %v, want %v and ErrNotSent", err, tt.want)
			}
			tt.clear(e)
			if r := e.Receipts(); len(r) != 0 {
				t.Errorf("printed %+v", r)
			}
		})
	}
}

func TestPrintNearEnd(t *testing.T) {
	e := NewEmulator(Paper58)
	d := newDev(t, e)
	e.SetPaper(PaperNearEnd)
	if err := d.Print([]byte("still prints\n")); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.Status(); !st.PaperNearEnd || st.Err() != nil {
		t.Errorf("status %v", st)
	}
}

// splitPort runs hook in the middle of the first write of print data.
type splitPort struct {
	*Emulator
	at   int
	hook func()
}

func (p *splitPort) Write(b []byte) (int, error) {
	if p.hook == nil || len(b) <= 3 { // status requests
		return p.Emulator.Write(b)
	}
	n, err := p.Emulator.Write(b[:p.at])
	if err != nil {
		return n, err
	}
	p.hook()
	p.hook = nil
	m, err := p.Emulator.Write(b[p.at:])
	return n + m, err
}

func TestPaperOutWhilePrinting(t *testing.T) {
	e := NewEmulator(Paper58)
	p := &splitPort{Emulator: e, at: 60}
	d := newDev(t, p)
	p.hook = func() { e.SetPaper(PaperOut) }
	job := sampleReceipt().Bytes()
	err := d.Print(job)
	if !errors.Is(err, ErrPaperOut) || !errors.Is(err, ErrHeld) || errors.Is(err, ErrNotSent) {
		t.Fatalf("Print: %v, want ErrPaperOut and ErrHeld, not ErrNotSent: the job left", err)
	}
	if e.Printed() < 60 || e.Held() < len(job)-60 {
		t.Errorf("printed %d, held %d of %d", e.Printed(), e.Held(), len(job))
	}
	r := e.Receipts()
	if len(r) != 1 || r[0].Cut || !strings.HasPrefix(sampleText, r[0].Text) {
		t.Fatalf("while out of paper: %+v", r)
	}
	e.SetPaper(PaperOK)
	want := Receipt{Job: "sale-000123", Text: sampleText, Cut: true, Drawer: 1}
	if r := e.Receipts(); len(r) != 1 || r[0] != want {
		t.Errorf("after paper came back: %+v, want %+v", r, want)
	}
	if e.Held() != 0 {
		t.Errorf("held %d", e.Held())
	}
}

func TestNoReply(t *testing.T) {
	e := NewEmulator(Paper58)
	e.SetPower(false)
	start := time.Now()
	if _, err := New(e, fast); !errors.Is(err, ErrNoReply) {
		t.Fatalf("New: %v, want ErrNoReply", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New took %v with a 50 ms timeout", d)
	}

	e.SetPower(true)
	d := newDev(t, e)
	e.SetPower(false)
	if _, err := d.Status(); !errors.Is(err, ErrNoReply) {
		t.Errorf("Status: %v, want ErrNoReply", err)
	}
	if err := d.Print([]byte("x\n")); !errors.Is(err, ErrNoReply) {
		t.Errorf("Print: %v, want ErrNoReply", err)
	}
}

// filterPort rewrites what the printer answers to each status request.
type filterPort struct {
	*Emulator
	asked  bool
	before []byte      // bytes sent ahead of each reply
	reply  func() byte // replaces the reply; nil keeps it
}

func (p *filterPort) Write(b []byte) (int, error) {
	if len(b) == 3 && b[0] == dle && b[1] == eot {
		p.asked = true
	}
	return p.Emulator.Write(b)
}

func (p *filterPort) Read(b []byte) (int, error) {
	if !p.asked {
		return p.Emulator.Read(b)
	}
	p.asked = false
	n, err := p.Emulator.Read(b[:1])
	if err != nil || n == 0 {
		return n, err
	}
	if p.reply != nil {
		b[0] = p.reply()
	}
	out := append(append([]byte(nil), p.before...), b[0])
	return copy(b, out), nil
}

func TestReplies(t *testing.T) {
	tests := []struct {
		name   string
		before []byte
		reply  func() byte
		want   error
	}{
		{"XON, XOFF and an ASB packet skipped", []byte{xon, 0x10, xoff, 0, 0, 0}, nil, nil},
		{"garbage", nil, func() byte { return 0x00 }, ErrBadReply},
		{"garbage first", []byte{0x55}, nil, ErrBadReply},
		{"ASB byte as reply", nil, func() byte { return 0x10 }, ErrNoReply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEmulator(Paper58)
			d := newDev(t, e)
			d.port = &filterPort{Emulator: e, before: tt.before, reply: tt.reply}
			_, err := d.Status()
			if (tt.want == nil && err != nil) || !errors.Is(err, tt.want) {
				t.Errorf("Status: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestStaleReply: a reply nobody waited for must not answer the next request.
func TestStaleReply(t *testing.T) {
	e := NewEmulator(Paper58)
	d := newDev(t, e)
	e.SetPaper(PaperOut)
	e.Write([]byte{dle, eot, 4}) // answered 0x7e, never read
	e.Write([]byte{gs, 'a', 0x0f})
	e.SetPaper(PaperOK) // and an ASB packet
	st, err := d.Status()
	if err != nil || st != (Status{}) {
		t.Errorf("status %v, %v; want ok", st, err)
	}
}

// brokenPort fails reads or writes.
type brokenPort struct {
	*Emulator
	readErr, writeErr error
}

func (p *brokenPort) Read(b []byte) (int, error) {
	if p.readErr != nil {
		return 0, p.readErr
	}
	return p.Emulator.Read(b)
}

func (p *brokenPort) Write(b []byte) (int, error) {
	if p.writeErr != nil {
		return 0, p.writeErr
	}
	return p.Emulator.Write(b)
}

func TestBrokenPort(t *testing.T) {
	e := NewEmulator(Paper58)
	d := newDev(t, e)
	unplugged := errors.New("device unplugged")
	d.port = &brokenPort{Emulator: e, readErr: io.EOF}
	if _, err := d.Status(); !errors.Is(err, ErrNoReply) || !errors.Is(err, io.EOF) {
		t.Errorf("read EOF: %v", err)
	}
	d.port = &brokenPort{Emulator: e, writeErr: unplugged}
	if err := d.Print([]byte("x")); !errors.Is(err, unplugged) || !errors.Is(err, ErrNotSent) {
		t.Errorf("write error: %v", err)
	}
	if _, err := New(nil, nil); err == nil {
		t.Error("New(nil): no error")
	}
}

// TestPrintOverflow: bytes beyond the printer's buffer are lost; Print says why.
func TestPrintOverflow(t *testing.T) {
	e := NewEmulator(Paper58)
	p := &splitPort{Emulator: e, at: 10}
	d := newDev(t, p)
	p.hook = func() { e.SetCover(true) }
	err := d.Print(bytes.Repeat([]byte("0123456789abcdef\n"), 300))
	if !errors.Is(err, ErrCoverOpen) || !errors.Is(err, ErrOverflow) {
		t.Errorf("Print: %v, want ErrCoverOpen and ErrOverflow", err)
	}
}

func TestHalt(t *testing.T) {
	e := NewEmulator(Paper58)
	d, err := New(e, fast)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := d.Print([]byte("x\n")); !errors.Is(err, ErrHalted) {
		t.Errorf("Print after Halt: %v", err)
	}
	if _, err := d.Status(); !errors.Is(err, ErrHalted) {
		t.Errorf("Status after Halt: %v", err)
	}
	if r := e.Receipts(); len(r) != 0 {
		t.Errorf("printed %+v", r)
	}
}

// cutPort fails writes for good once after bytes of print data have left.
type cutPort struct {
	*Emulator
	after int
	gone  bool
}

func (p *cutPort) Write(b []byte) (int, error) {
	if p.gone {
		return 0, errors.New("device unplugged")
	}
	if len(b) <= 3 { // status requests
		return p.Emulator.Write(b)
	}
	n, _ := p.Emulator.Write(b[:min(p.after, len(b))])
	p.gone = true
	return n, errors.New("device unplugged")
}

// TestPrintCutOff: the link dies part way through a job; some of it left,
// so the error must not say it was not sent.
func TestPrintCutOff(t *testing.T) {
	e := NewEmulator(Paper58)
	d := newDev(t, e)
	d.port = &cutPort{Emulator: e, after: 40}
	before := e.Printed() + 9 // and Print's DLE EOT 1, 2, 4
	err := d.Print(sampleReceipt().Bytes())
	if err == nil || errors.Is(err, ErrNotSent) || errors.Is(err, ErrHeld) {
		t.Fatalf("Print: %v, want an error that is neither ErrNotSent nor ErrHeld", err)
	}
	if got := e.Printed() + e.Held() - before; got != 40 {
		t.Fatalf("printer got %d bytes of the job, want 40", got)
	}
}

func TestOpenDrawer(t *testing.T) {
	e := NewEmulator(Paper58)
	d := newDev(t, e)
	drawer := func() int {
		n := 0
		for _, r := range e.Receipts() {
			n += r.Drawer
		}
		return n
	}
	if err := d.OpenDrawer(2); err != nil || drawer() != 1 {
		t.Fatalf("online: %v, %d pulses", err, drawer())
	}
	// Out of paper the printer runs no ESC p, but the real-time pulse.
	e.SetPaper(PaperOut)
	if err := d.OpenDrawer(5); err != nil || drawer() != 2 {
		t.Fatalf("out of paper: %v, %d pulses", err, drawer())
	}
	if err := d.OpenDrawer(3); !errors.Is(err, ErrInvalid) {
		t.Fatalf("pin 3: %v", err)
	}
}
