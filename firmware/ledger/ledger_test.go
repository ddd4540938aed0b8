package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/microretail/kioskd/internal/testclock"
)

var karachi = time.FixedZone("PKT", 5*3600)

func testOptions(clock *testclock.Clock) Options {
	return Options{
		KioskID:  "kiosk-test",
		Clock:    clock.Now,
		Location: karachi,
		DayStart: 4 * time.Hour,
	}
}

func newClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 11, 23, 18, 0, 0, 0, karachi))
}

func openTest(t *testing.T, fs vfs.FS, opts Options) *Ledger {
	t.Helper()
	opts.FS = fs
	l, err := Open("ledger", opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func sale(key string, payment Payment, lines ...Line) Draft {
	d := Draft{Kind: KindSale, Payment: payment, IdempotencyKey: key, Lines: lines}
	if payment == PaymentWallet {
		d.Card = []byte{0x04, 0xa2, 0x2b, 0x91}
	}
	return d
}

var (
	chai   = Line{SKU: "CHAI", Name: "Doodh patti chai", Qty: 2, Price: 8000}
	samosa = Line{SKU: "SAMOSA", Name: "Aloo samosa", Qty: 3, Price: 5000}
)

// topUp credits the card the test sales pay with.
func topUp(t *testing.T, l *Ledger, key string, amount int64) Entry {
	t.Helper()
	return mustAppend(t, l, Draft{Kind: KindTopUp, Payment: PaymentCash, Card: []byte{0x04, 0xa2, 0x2b, 0x91},
		IdempotencyKey: key, Lines: []Line{{SKU: "TOPUP", Name: "Wallet top-up", Qty: 1, Price: amount}}})
}

func mustAppend(t *testing.T, l *Ledger, d Draft) Entry {
	t.Helper()
	e, err := l.Append(context.Background(), d)
	if err != nil {
		t.Fatalf("Append(%s): %v", d.IdempotencyKey, err)
	}
	return e
}

func mustVerify(t *testing.T, l *Ledger) *Check {
	t.Helper()
	c, err := l.Verify()
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !c.OK() {
		t.Fatalf("Verify found problems: %v", c.Problems)
	}
	return c
}

func TestAppendAssignsSeqAndID(t *testing.T) {
	l := openTest(t, vfs.NewMem(), testOptions(newClock()))
	a := mustAppend(t, l, sale("a", PaymentCash, chai, samosa))
	topUp(t, l, "t", 100000)
	b := mustAppend(t, l, sale("b", PaymentWallet, chai))
	if a.Seq != 1 || b.Seq != 3 {
		t.Fatalf("seqs %d, %d; want 1, 3", a.Seq, b.Seq)
	}
	if a.ID.Ledger == 0 || a.ID.Ledger != b.ID.Ledger || a.ID.Seq != 1 {
		t.Fatalf("ids %v, %v", a.ID, b.ID)
	}
	if a.Total() != 2*8000+3*5000 {
		t.Fatalf("total %d", a.Total())
	}
	if a.KioskID != "kiosk-test" || a.Currency != "PKR" || a.Time.IsZero() {
		t.Fatalf("stamped fields: %+v", a)
	}
	if l.Head() != 3 || l.OutboxLen() != 3 {
		t.Fatalf("head %d outbox %d", l.Head(), l.OutboxLen())
	}
	got, err := l.ByID(b.ID)
	if err != nil || got.IdempotencyKey != "b" || string(got.Card) != string(b.Card) {
		t.Fatalf("ByID: %+v, %v", got, err)
	}
	if _, err := l.ByID(ID{Ledger: a.ID.Ledger + 1, Seq: 1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ByID of another ledger's id: %v", err)
	}
	if _, err := l.Get(4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(4): %v", err)
	}
	mustVerify(t, l)
}

func TestIdempotencyKey(t *testing.T) {
	fs := vfs.NewMem()
	clock := newClock()
	l := openTest(t, fs, testOptions(clock))
	first := mustAppend(t, l, sale("k1", PaymentCash, chai))
	again := mustAppend(t, l, sale("k1", PaymentCash, chai))
	if again.Seq != first.Seq || again.ID != first.ID || !again.Time.Equal(first.Time) {
		t.Fatalf("retry gave %+v, first was %+v", again, first)
	}
	// A retry after a catalog price change still returns what was charged.
	repriced := chai
	repriced.Price = 9999
	if e := mustAppend(t, l, sale("k1", PaymentCash, repriced)); e.Lines[0].Price != 8000 {
		t.Fatalf("retry after repricing recorded %d", e.Lines[0].Price)
	}
	for _, d := range []Draft{
		sale("k1", PaymentWallet, chai),
		sale("k1", PaymentCash, samosa),
		sale("k1", PaymentCash, chai, samosa),
	} {
		if _, err := l.Append(context.Background(), d); !errors.Is(err, ErrConflict) {
			t.Errorf("reusing k1 for %+v: %v, want ErrConflict", d, err)
		}
	}
	if l.Head() != 1 {
		t.Fatalf("head %d after retries, want 1", l.Head())
	}
	// After a restart the key still leads to the same entry.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, fs, testOptions(clock))
	if e := mustAppend(t, l, sale("k1", PaymentCash, chai)); e.ID != first.ID {
		t.Fatalf("after restart: %v, want %v", e.ID, first.ID)
	}
	if e, err := l.ByKey("k1"); err != nil || e.Seq != 1 {
		t.Fatalf("ByKey: %+v %v", e, err)
	}
	if e := mustAppend(t, l, sale("k2", PaymentCash, chai)); e.Seq != 2 {
		t.Fatalf("next seq after restart %d", e.Seq)
	}
	mustVerify(t, l)
}

func TestDuplicateKeysInOneGroup(t *testing.T) {
	l := openTest(t, vfs.NewMem(), testOptions(newClock()))
	var wg sync.WaitGroup
	got := make([]Entry, 32)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = mustAppend(t, l, sale(fmt.Sprintf("dup-%d", i%4), PaymentCash, chai))
		}()
	}
	wg.Wait()
	byKey := map[string]uint64{}
	for _, e := range got {
		if s, ok := byKey[e.IdempotencyKey]; ok && s != e.Seq {
			t.Fatalf("key %s got seqs %d and %d", e.IdempotencyKey, s, e.Seq)
		}
		byKey[e.IdempotencyKey] = e.Seq
	}
	if l.Head() != 4 {
		t.Fatalf("head %d, want 4", l.Head())
	}
	mustVerify(t, l)
}

func TestRefund(t *testing.T) {
	l := openTest(t, vfs.NewMem(), testOptions(newClock()))
	topUp(t, l, "t", 31000)
	s := mustAppend(t, l, sale("s", PaymentWallet, chai, samosa))
	if bal, _ := l.WalletBalance(s.Card); bal != 0 {
		t.Fatalf("balance after paying %d", bal)
	}
	r := mustAppend(t, l, Draft{Kind: KindRefund, IdempotencyKey: "r", RefundOf: s.Seq})
	if r.RefundOf != s.Seq || r.Total() != s.Total() || r.Payment != PaymentWallet || string(r.Card) != string(s.Card) {
		t.Fatalf("refund %+v of %+v", r, s)
	}
	if again := mustAppend(t, l, Draft{Kind: KindRefund, IdempotencyKey: "r", RefundOf: s.Seq}); again.Seq != r.Seq {
		t.Fatalf("refund retry made entry %d", again.Seq)
	}
	if bal, _ := l.WalletBalance(s.Card); bal != s.Total() {
		t.Fatalf("balance after the refund %d, want %d", bal, s.Total())
	}
	for _, tc := range []struct {
		name string
		d    Draft
		want error
	}{
		{"twice", Draft{Kind: KindRefund, IdempotencyKey: "r2", RefundOf: s.Seq}, ErrConflict},
		{"a refund", Draft{Kind: KindRefund, IdempotencyKey: "r3", RefundOf: r.Seq}, ErrInvalid},
		{"unknown", Draft{Kind: KindRefund, IdempotencyKey: "r4", RefundOf: 99}, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := l.Append(context.Background(), tc.d); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if l.Head() != 3 {
		t.Fatalf("head %d", l.Head())
	}
	mustVerify(t, l)
}

func TestWallet(t *testing.T) {
	fs := vfs.NewMem()
	clock := newClock()
	l := openTest(t, fs, testOptions(clock))
	card := []byte{0x04, 0xa2, 0x2b, 0x91}
	if _, err := l.Append(context.Background(), sale("broke", PaymentWallet, chai)); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("paying from an empty card: %v", err)
	}
	topUp(t, l, "t1", 20000)
	mustAppend(t, l, sale("s1", PaymentWallet, chai)) // 16000
	if _, err := l.Append(context.Background(), sale("s2", PaymentWallet, chai)); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("overspending: %v", err)
	}
	// Concurrent payments never overdraw the card.
	topUp(t, l, "t2", 12000) // balance 16000: one more chai, not two
	var wg sync.WaitGroup
	var paid atomic.Int64
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(context.Background(), sale(fmt.Sprint("race-", i), PaymentWallet, chai)); err == nil {
				paid.Add(1)
			}
		}()
	}
	wg.Wait()
	if paid.Load() != 1 {
		t.Fatalf("%d concurrent payments went through on a balance for one", paid.Load())
	}
	l.Close()
	l = openTest(t, fs, testOptions(clock))
	if bal, err := l.WalletBalance(card); err != nil || bal != 0 {
		t.Fatalf("balance after restart %d, %v", bal, err)
	}
	if bal, err := l.WalletBalance([]byte{1, 2, 3, 4}); err != nil || bal != 0 {
		t.Fatalf("unknown card %d, %v", bal, err)
	}
	mustVerify(t, l)
}

func TestDraftValidation(t *testing.T) {
	l := openTest(t, vfs.NewMem(), testOptions(newClock()))
	card := []byte{1, 2, 3, 4}
	for _, tc := range []struct {
		name string
		d    Draft
	}{
		{"no key", Draft{Kind: KindSale, Payment: PaymentCash, Lines: []Line{chai}}},
		{"no lines", Draft{Kind: KindSale, Payment: PaymentCash, IdempotencyKey: "x"}},
		{"zero qty", sale("x", PaymentCash, Line{SKU: "A", Qty: 0, Price: 1})},
		{"negative qty", sale("x", PaymentCash, Line{SKU: "A", Qty: -1, Price: 1})},
		{"huge qty", sale("x", PaymentCash, Line{SKU: "A", Qty: MaxQty + 1, Price: 1})},
		{"negative price", sale("x", PaymentCash, Line{SKU: "A", Qty: 1, Price: -5})},
		{"no sku", sale("x", PaymentCash, Line{Qty: 1, Price: 5})},
		{"control char", sale("x\n", PaymentCash, chai)},
		{"bad payment", Draft{Kind: KindSale, Payment: 9, IdempotencyKey: "x", Lines: []Line{chai}}},
		{"bad kind", Draft{Kind: 9, Payment: PaymentCash, IdempotencyKey: "x", Lines: []Line{chai}}},
		{"wallet without card", Draft{Kind: KindSale, Payment: PaymentWallet, IdempotencyKey: "x", Lines: []Line{chai}}},
		{"top-up without card", Draft{Kind: KindTopUp, Payment: PaymentCash, IdempotencyKey: "x", Lines: []Line{{SKU: "TOPUP", Qty: 1, Price: 500}}}},
		{"top-up by wallet", Draft{Kind: KindTopUp, Payment: PaymentWallet, Card: card, IdempotencyKey: "x", Lines: []Line{{SKU: "TOPUP", Qty: 1, Price: 500}}}},
		{"subscription without phone", Draft{Kind: KindSubscription, Payment: PaymentCash, IdempotencyKey: "x", Plan: "weekly", Lines: []Line{chai}}},
		{"refund with lines", Draft{Kind: KindRefund, IdempotencyKey: "x", RefundOf: 1, Lines: []Line{chai}}},
		{"refund of nothing", Draft{Kind: KindRefund, IdempotencyKey: "x"}},
		{"sale naming a refund", Draft{Kind: KindSale, Payment: PaymentCash, IdempotencyKey: "x", RefundOf: 1, Lines: []Line{chai}}},
		{"card too long", Draft{Kind: KindSale, Payment: PaymentWallet, Card: make([]byte, 11), IdempotencyKey: "x", Lines: []Line{chai}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := l.Append(context.Background(), tc.d); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	if l.Head() != 0 {
		t.Fatalf("invalid drafts wrote %d entries", l.Head())
	}
}

func TestOutboxAndAck(t *testing.T) {
	fs := vfs.NewMem()
	clock := newClock()
	l := openTest(t, fs, testOptions(clock))
	for i := range 10 {
		mustAppend(t, l, sale(fmt.Sprint(i), PaymentCash, chai))
	}
	ctx := context.Background()
	out, err := l.Outbox(4)
	if err != nil || len(out) != 4 || out[0].Seq != 1 || out[3].Seq != 4 {
		t.Fatalf("Outbox(4): %d entries, %v", len(out), err)
	}
	if err := l.Ack(ctx, 11); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ack past head: %v", err)
	}
	if err := l.Ack(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(ctx, 2); err != nil || l.Acked() != 4 {
		t.Fatalf("lower ack moved the watermark to %d (%v)", l.Acked(), err)
	}
	out, _ = l.Outbox(100)
	if len(out) != 6 || out[0].Seq != 5 || l.OutboxLen() != 6 {
		t.Fatalf("outbox after ack: %d from %d", len(out), out[0].Seq)
	}
	l.Close()
	l = openTest(t, fs, testOptions(clock))
	if l.Acked() != 4 || l.Head() != 10 {
		t.Fatalf("after restart acked %d head %d", l.Acked(), l.Head())
	}
	r, err := l.Range(9, 100)
	if err != nil || len(r) != 2 || r[1].Seq != 10 {
		t.Fatalf("Range(9): %v %v", r, err)
	}
	if r, _ := l.Range(11, 5); len(r) != 0 {
		t.Fatalf("Range past head: %v", r)
	}
}

func TestDayTotals(t *testing.T) {
	clock := newClock()
	l := openTest(t, vfs.NewMem(), testOptions(clock))
	// The clock starts at 18:00 PKT on 23 Nov and moves an hour before each
	// entry. The business day starts at 04:00, so entries up to 03:00 on
	// the 24th still belong to the 23rd.
	hour := func(d Draft) Draft { clock.Advance(time.Hour); return d }
	card := []byte{0x04, 0xa2, 0x2b, 0x91}
	topUp(t, l, "0", 15000)                                                                // 18:00, counted below
	s1 := mustAppend(t, l, hour(sale("1", PaymentCash, chai)))                             // 19:00
	mustAppend(t, l, hour(sale("2", PaymentWallet, samosa)))                               // 20:00
	mustAppend(t, l, hour(Draft{Kind: KindRefund, IdempotencyKey: "3", RefundOf: s1.Seq})) // 21:00
	mustAppend(t, l, hour(Draft{Kind: KindTopUp, Payment: PaymentCash, Card: card, IdempotencyKey: "4",
		Lines: []Line{{SKU: "TOPUP", Name: "Wallet top-up", Qty: 1, Price: 100000}}})) // 22:00
	mustAppend(t, l, hour(Draft{Kind: KindSubscription, Payment: PaymentCash, Phone: "03001234567", Plan: "chai-weekly",
		IdempotencyKey: "5", Lines: []Line{{SKU: "SUB-W", Name: "Weekly chai", Qty: 1, Price: 50000}}})) // 23:00
	for i := 6; i <= 10; i++ {
		mustAppend(t, l, hour(sale(fmt.Sprint(i), PaymentCash, chai))) // 00:00 .. 04:00 on the 24th
	}
	d23, _ := ParseDay("2026-11-23")
	tot, err := l.DayTotals(d23)
	if err != nil {
		t.Fatal(err)
	}
	r := tot.Report()
	want := Report{
		Day:           d23,
		Sales:         Sum{Count: 6, Amount: 16000 + 15000 + 4*16000},
		Subscriptions: Sum{Count: 1, Amount: 50000},
		TopUps:        Sum{Count: 2, Amount: 115000},
		Refunds:       Sum{Count: 1, Amount: 16000},
	}
	if r.Sales != want.Sales || r.Subscriptions != want.Subscriptions || r.TopUps != want.TopUps || r.Refunds != want.Refunds {
		t.Fatalf("report %+v\nwant %+v", r, want)
	}
	if r.NetRevenue != want.Sales.Amount+50000-16000 {
		t.Fatalf("net revenue %d", r.NetRevenue)
	}
	cash := r.ByPayment["cash"]
	if cash.In.Amount != 15000+16000+100000+50000+4*16000 || cash.Out.Amount != 16000 || cash.Net != cash.In.Amount-16000 {
		t.Fatalf("cash %+v", cash)
	}
	if r.ByPayment["wallet"].In != (Sum{Count: 1, Amount: 15000}) {
		t.Fatalf("wallet %+v", r.ByPayment["wallet"])
	}
	next, _ := l.DayTotals(d23 + 1)
	if nr := next.Report(); nr.Sales.Count != 1 {
		t.Fatalf("24th: %+v", nr)
	}
	if l.Today() != d23+1 {
		t.Fatalf("today %s", l.Today())
	}
	mustVerify(t, l)
}

func TestConcurrentAppendsShareSyncs(t *testing.T) {
	if testing.Short() {
		t.Skip("slow under -short")
	}
	dir := t.TempDir()
	clock := newClock()
	opts := testOptions(clock)
	var walSyncs atomic.Int64
	opts.FS = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if isSync(op.Kind) && strings.HasSuffix(op.Path, ".log") {
			walSyncs.Add(1)
		}
		return nil
	}))
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const writers, each = 16, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				mustAppend(t, l, sale(fmt.Sprintf("w%d-%d", w, i), PaymentCash, chai))
			}
		}()
	}
	wg.Wait()
	c := mustVerify(t, l)
	if c.Entries != writers*each {
		t.Fatalf("%d entries", c.Entries)
	}
	// Every entry was synced before its Append returned, yet the WAL saw
	// fewer fsyncs than entries: concurrent checkouts shared them.
	if n := walSyncs.Load(); n >= writers*each {
		t.Fatalf("%d WAL syncs for %d entries: no group commit", n, writers*each)
	} else {
		t.Logf("%d WAL syncs for %d entries", n, writers*each)
	}
}

func isSync(k errorfs.OpKind) bool {
	return k == errorfs.OpFileSync || k == errorfs.OpFileSyncData || k == errorfs.OpFileSyncTo
}

func TestIDText(t *testing.T) {
	id := ID{Ledger: 0x9f3a2c7e01b4d855, Seq: 42}
	if s := id.String(); s != "9f3a2c7e01b4d855-42" {
		t.Fatalf("String %q", s)
	}
	back, err := ParseID(id.String())
	if err != nil || back != id {
		t.Fatalf("ParseID: %v %v", back, err)
	}
	for _, bad := range []string{"", "-", "9f3a2c7e01b4d855", "9f3a2c7e01b4d855-", "9f3a2c7e01b4d855-0",
		"9f3a2c7e01b4d855-042", "9f3a2c7e01b4d85-42", "zz3a2c7e01b4d855-42", "9f3a2c7e01b4d855--1", "9f3a2c7e01b4d855-+1"} {
		if _, err := ParseID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseID(%q): %v", bad, err)
		}
	}
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, Options{ReadOnly: true}); err == nil {
		t.Fatalf("read-only open of an empty dir: %v", err)
	}
	opts := testOptions(newClock())
	opts.FS = vfs.Default
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, sale("a", PaymentCash, chai))
	l.Close()
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if ro.KioskID() != "kiosk-test" || ro.Head() != 1 {
		t.Fatalf("read-only: kiosk %q head %d", ro.KioskID(), ro.Head())
	}
	if _, err := ro.Append(context.Background(), sale("b", PaymentCash, chai)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append on a read-only ledger: %v", err)
	}
	mustVerify(t, ro)
}

// TestRefusalWritesNothing: a request refused inside the sequencer (here an
// empty wallet) adds nothing to the WAL and costs no fsync.
func TestRefusalWritesNothing(t *testing.T) {
	var walWrites atomic.Int64
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if (op.Kind == errorfs.OpFileWrite || isSync(op.Kind)) && strings.HasSuffix(op.Path, ".log") {
			walWrites.Add(1)
		}
		return nil
	}))
	l := openTest(t, fs, testOptions(newClock()))
	mustAppend(t, l, sale("warm", PaymentCash, chai))
	before := walWrites.Load()
	if _, err := l.Append(context.Background(), sale("broke", PaymentWallet, chai)); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("paying from an empty card: %v", err)
	}
	if n := walWrites.Load() - before; n != 0 {
		t.Fatalf("a refused payment made %d WAL writes or syncs", n)
	}
}
