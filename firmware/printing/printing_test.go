package printing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/firmware/receipt"
	"github.com/microretail/kioskd/internal/testclock"
)

type fixture struct {
	t      *testing.T
	fs     vfs.FS
	clock  *testclock.Clock
	ledger *ledger.Ledger
	hub    *events.Hub
	queue  *Queue
	n      int
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, fs: vfs.NewMem(), clock: testclock.New(time.Date(2026, 11, 23, 19, 30, 0, 0, time.UTC))}
	f.open()
	return f
}

// open opens the ledger and a queue on it, as kioskd does at start.
func (f *fixture) open() {
	f.t.Helper()
	l, err := ledger.Open("ledger", ledger.Options{KioskID: "stall-7", FS: f.fs, Clock: f.clock.Now})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = l.Close() })
	f.ledger, f.hub = l, events.NewHub(64, f.clock.Now)
	f.queue = New(Options{Ledger: l, Events: f.hub, Layout: receipt.Layout{
		Paper: escpos.Paper58, CodePage: escpos.PC437, Shop: receipt.Shop{Name: "Burns Road Chai", Footer: []string{"Shukriya!"}},
	}})
	if err := f.queue.Recover(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

// sell records a sale with its receipt job.
func (f *fixture) sell(pay ledger.Payment) ledger.Entry {
	f.t.Helper()
	f.n++
	d := ledger.Draft{Kind: ledger.KindSale, Payment: pay, IdempotencyKey: fmt.Sprint("sale-", f.n), Receipt: true,
		Drawer: pay == ledger.PaymentCash, Lines: []ledger.Line{{SKU: "CHAI", Name: "Doodh patti chai", Qty: 2, Price: 8000}}}
	if pay == ledger.PaymentWallet {
		f.topUp()
		d.Card = []byte{4, 1, 2, 3}
	} else {
		d.Tendered = 50000
	}
	e, err := f.ledger.Append(context.Background(), d)
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

func (f *fixture) topUp() {
	f.n++
	_, err := f.ledger.Append(context.Background(), ledger.Draft{Kind: ledger.KindTopUp, Payment: ledger.PaymentCash,
		IdempotencyKey: fmt.Sprint("topup-", f.n), Card: []byte{4, 1, 2, 3},
		Lines: []ledger.Line{{SKU: "TOPUP", Name: "Wallet top-up", Qty: 1, Price: 100000}}})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) step(p Printer) {
	f.t.Helper()
	if err := f.queue.Step(context.Background(), p); err != nil {
		f.t.Fatalf("Step: %v", err)
	}
}

func (f *fixture) job(seq uint64) ledger.Job {
	f.t.Helper()
	j, ok, err := f.ledger.Job(seq)
	if err != nil || !ok {
		f.t.Fatalf("job %d: %v %v", seq, ok, err)
	}
	return j
}

// emulated is the queue's printer: the escpos driver on the emulator.
func emulated(t *testing.T) (*escpos.Emulator, *escpos.Dev) {
	t.Helper()
	em := escpos.NewEmulator(escpos.Paper58)
	dev, err := escpos.New(em, &escpos.DefaultOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Halt() })
	return em, dev
}

// receiptsFor are the printed receipts carrying the sale's id in their QR code.
func receiptsFor(em *escpos.Emulator, e ledger.Entry) []escpos.Receipt {
	var out []escpos.Receipt
	for _, r := range em.Receipts() {
		if r.Job == e.ID.String() {
			out = append(out, r)
		}
	}
	return out
}

func TestPrintsEachReceiptOnce(t *testing.T) {
	f := newFixture(t)
	em, dev := emulated(t)
	cash := f.sell(ledger.PaymentCash)
	wallet := f.sell(ledger.PaymentWallet)
	for range 5 {
		f.step(dev)
	}
	for _, e := range []ledger.Entry{cash, wallet} {
		got := receiptsFor(em, e)
		if len(got) != 1 || !got[0].Cut {
			t.Fatalf("sale %s: receipts %+v", e.ID, got)
		}
		if f.job(e.Seq).State != ledger.JobPrinted {
			t.Fatalf("sale %s: job %+v", e.ID, f.job(e.Seq))
		}
	}
	text := receiptsFor(em, cash)[0].Text
	for _, want := range []string{"Burns Road Chai", "Doodh patti chai", "Rs 160.00", "Change", "340.00", "Shukriya!"} {
		if !strings.Contains(text, want) {
			t.Errorf("cash receipt lacks %q:\n%s", want, text)
		}
	}
	// The drawer opened for the cash sale only.
	drawer := 0
	for _, r := range em.Receipts() {
		drawer += r.Drawer
	}
	if drawer != 1 {
		t.Fatalf("drawer pulses: %d, want 1", drawer)
	}
	if s := f.queue.State(); s.Printer != Ready || len(s.Queue) != 0 || len(s.Recent) != 2 {
		t.Fatalf("state %+v", s)
	}
}

func TestPaperOutHoldsThenPrintsOnce(t *testing.T) {
	f := newFixture(t)
	em, dev := emulated(t)
	sub := f.hub.Subscribe(0, false, 64)
	defer f.hub.Unsubscribe(sub)

	em.SetPaper(escpos.PaperLevel("out"))
	e := f.sell(ledger.PaymentCash)
	for range 3 {
		f.step(dev)
	}
	// The drawer opened for the cash at once; nothing printed.
	if got := em.Receipts(); len(got) != 1 || got[0].Cut || got[0].Drawer != 1 || strings.TrimSpace(got[0].Text) != "[drawer 2]" {
		t.Fatalf("printed with no paper: %+v", got)
	}
	s := f.queue.State()
	if s.Printer != PaperOut || !strings.Contains(s.Waiting, "paper") || len(s.Queue) != 1 || s.Queue[0].State != "queued" {
		t.Fatalf("state while out of paper: %+v", s)
	}
	sawPaperOut := false
	for len(sub.C()) > 0 {
		if ev := <-sub.C(); ev.Type == events.PaperOut {
			sawPaperOut = true
		}
	}
	if !sawPaperOut {
		t.Fatal("no paper_out event")
	}

	em.SetPaper(escpos.PaperLevel("ok"))
	for range 3 {
		f.step(dev)
	}
	if got := receiptsFor(em, e); len(got) != 1 || !got[0].Cut {
		t.Fatalf("after the paper came back: %+v", em.Receipts())
	}
	if s := f.queue.State(); s.Printer != Ready || s.Waiting != "" {
		t.Fatalf("state after: %+v", s)
	}
}

// scripted is a printer whose Print fails as a test says.
type scripted struct {
	status escpos.Status
	err    error // returned by the next Print, then cleared
	prints [][]byte
	drawer int
}

func (s *scripted) Status() (escpos.Status, error) { return s.status, nil }
func (s *scripted) OpenDrawer(int) error           { s.drawer++; return nil }
func (s *scripted) Print(b []byte) error {
	if err := s.err; err != nil {
		s.err = nil
		if errors.Is(err, escpos.ErrNotSent) {
			return err
		}
		s.prints = append(s.prints, b) // it left, and then something went wrong
		return err
	}
	s.prints = append(s.prints, b)
	return nil
}

func TestSendOutcomes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	// Nothing left: queued again, and printed on the next step.
	p := &scripted{err: fmt.Errorf("escpos: write: %w", escpos.ErrNotSent)}
	e := f.sell(ledger.PaymentCash)
	if err := f.queue.Step(ctx, p); err == nil {
		t.Fatal("a failed send is not reported")
	}
	if j := f.job(e.Seq); j.State != ledger.JobQueued || len(p.prints) != 0 {
		t.Fatalf("after a send that never left: %+v, %d prints", j, len(p.prints))
	}
	f.step(p)
	if j := f.job(e.Seq); j.State != ledger.JobPrinted || len(p.prints) != 1 || p.drawer != 1 {
		t.Fatalf("after the retry: %+v, %d prints, %d drawer pulses", j, len(p.prints), p.drawer)
	}

	// All of it left, then the paper ran out: held by the printer, settled
	// once it is back, and never sent again.
	p = &scripted{err: fmt.Errorf("escpos: printing stopped: %w: %w", escpos.ErrHeld, escpos.ErrPaperOut)}
	e = f.sell(ledger.PaymentWallet)
	f.step(p)
	if j := f.job(e.Seq); j.State != ledger.JobSending || f.queue.State().Printer != PaperOut {
		t.Fatalf("mid-receipt paper out: %+v, %+v", j, f.queue.State())
	}
	p.status = escpos.Status{PaperOut: true}
	f.step(p)
	p.status = escpos.Status{}
	f.step(p)
	if j := f.job(e.Seq); j.State != ledger.JobPrinted || len(p.prints) != 1 {
		t.Fatalf("after the paper came back: %+v, %d prints", j, len(p.prints))
	}

	// The link died part way: in doubt, not resent, until a reprint.
	p = &scripted{err: errors.New("transport: write /dev/usb/lp0: no such device")}
	e = f.sell(ledger.PaymentWallet)
	if err := f.queue.Step(ctx, p); err == nil {
		t.Fatal("a failed send is not reported")
	}
	for range 3 {
		f.step(p)
	}
	if j := f.job(e.Seq); j.State != ledger.JobInDoubt || len(p.prints) != 1 {
		t.Fatalf("after a broken send: %+v, %d prints", j, len(p.prints))
	}
	if _, err := f.ledger.Reprint(ctx, e.Seq); err != nil {
		t.Fatal(err)
	}
	f.step(p)
	if j := f.job(e.Seq); j.State != ledger.JobPrinted || j.Copy != 1 || len(p.prints) != 2 ||
		!strings.Contains(string(p.prints[1]), "REPRINT") {
		t.Fatalf("after the reprint: %+v, %d prints", j, len(p.prints))
	}
}

func TestRestartNeverPrintsTwice(t *testing.T) {
	f := newFixture(t)
	e := f.sell(ledger.PaymentCash)
	queued := f.sell(ledger.PaymentCash)
	// A crash right after the job was marked sending.
	if _, err := f.ledger.MoveJob(context.Background(), e.Seq, ledger.JobQueued, ledger.JobSending); err != nil {
		t.Fatal(err)
	}
	_ = f.ledger.Close()
	f.open()
	if j := f.job(e.Seq); j.State != ledger.JobInDoubt {
		t.Fatalf("a job cut off by a restart: %+v", j)
	}
	p := &scripted{}
	f.step(p)
	f.step(p)
	if len(p.prints) != 1 || f.job(queued.Seq).State != ledger.JobPrinted || f.job(e.Seq).State != ledger.JobInDoubt {
		t.Fatalf("after the restart: %d prints, jobs %+v %+v", len(p.prints), f.job(e.Seq), f.job(queued.Seq))
	}
}

// flakyDrawer fails its first drawer pulse.
type flakyDrawer struct {
	scripted
	failed bool
}

func (f *flakyDrawer) OpenDrawer(pin int) error {
	if !f.failed {
		f.failed = true
		return errors.New("escpos: no reply")
	}
	return f.scripted.OpenDrawer(pin)
}

func TestNoReceiptBeforeItsDrawer(t *testing.T) {
	f := newFixture(t)
	e := f.sell(ledger.PaymentCash)
	p := &flakyDrawer{}
	if err := f.queue.Step(context.Background(), p); err == nil {
		t.Fatal("a failed drawer pulse is not reported")
	}
	if len(p.prints) != 0 || f.job(e.Seq).State != ledger.JobQueued {
		t.Fatalf("printed before the drawer opened: %d prints, %+v", len(p.prints), f.job(e.Seq))
	}
	f.step(p)
	if p.drawer != 1 || len(p.prints) != 1 || f.job(e.Seq).State != ledger.JobPrinted {
		t.Fatalf("after the retry: %d pulses, %d prints, %+v", p.drawer, len(p.prints), f.job(e.Seq))
	}
}

// TestHeldJobLostWithThePrinter: a printer holding the rest of a receipt
// goes away (power-cycled to clear the fault); its buffer went with it, so
// the job is in doubt, not printed.
func TestHeldJobLostWithThePrinter(t *testing.T) {
	f := newFixture(t)
	e := f.sell(ledger.PaymentWallet)
	p := &scripted{err: fmt.Errorf("escpos: printing stopped: %w: %w", escpos.ErrHeld, escpos.ErrPaperOut)}
	f.step(p)
	if f.job(e.Seq).State != ledger.JobSending {
		t.Fatalf("held job: %+v", f.job(e.Seq))
	}
	f.queue.Disconnected(errors.New("unplugged"))
	p.status = escpos.Status{}
	f.step(p)
	if j := f.job(e.Seq); j.State != ledger.JobInDoubt || len(p.prints) != 1 {
		t.Fatalf("after the printer came back empty: %+v, %d prints", j, len(p.prints))
	}
}

func TestDocumentsPrintAfterReceipts(t *testing.T) {
	f := newFixture(t)
	em, dev := emulated(t)
	em.SetPaper(escpos.PaperLevel("out"))
	e := f.sell(ledger.PaymentCash)
	z, err := f.queue.opts.Layout.ZReport(ledger.Report{Day: f.ledger.Today()}, "stall-7", "PKR", f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.queue.Print(Document{Name: "z-report", Data: z}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		f.step(dev)
	}
	if s := f.queue.State(); len(s.Documents) != 1 || !strings.Contains(s.Waiting, "paper") {
		t.Fatalf("state while out of paper: %+v", s)
	}
	em.SetPaper(escpos.PaperLevel("ok"))
	for range 3 {
		f.step(dev)
	}
	got := em.Receipts()
	// The drawer pulse and the sale's receipt, then the report.
	if len(got) != 2 || got[0].Job != e.ID.String() || got[0].Drawer != 1 || !strings.Contains(got[1].Text, "Z-REPORT") || !got[1].Cut {
		t.Fatalf("printed %d: %+v", len(got), got)
	}
	if s := f.queue.State(); len(s.Documents) != 0 {
		t.Fatalf("documents left %v", s.Documents)
	}
	for i := range MaxDocuments {
		if err := f.queue.Print(Document{Name: fmt.Sprint(i), Data: z}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.queue.Print(Document{Name: "one too many", Data: z}); !errors.Is(err, ErrBusy) {
		t.Fatalf("past the limit: %v", err)
	}
}
