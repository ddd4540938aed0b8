package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func dropSale(key string, qty int64) Draft {
	d := sale(key, PaymentCash, Line{SKU: "KASHMIRI", Name: "Kashmiri chai", Qty: qty, Price: 15000, Drop: "eid"})
	d.Stock = map[string]int64{"eid": 5}
	return d
}

func TestDropStock(t *testing.T) {
	fs := vfs.NewMem()
	clock := newClock()
	l := openTest(t, fs, testOptions(clock))
	mustAppend(t, l, dropSale("a", 2))
	if _, err := l.Append(context.Background(), dropSale("b", 4)); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("selling 4 of the 3 left: %v", err)
	}
	// A retry of a recorded sale is answered, not counted again.
	mustAppend(t, l, dropSale("a", 2))
	if n, _ := l.Sold("eid"); n != 2 {
		t.Fatalf("sold %d after a retry, want 2", n)
	}
	// Concurrent sales never pass the cap: 3 left, 8 buyers of one.
	var wg sync.WaitGroup
	var sold atomic.Int64
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.Append(context.Background(), dropSale(fmt.Sprint("race-", i), 1))
			switch {
			case err == nil:
				sold.Add(1)
			case !errors.Is(err, ErrSoldOut):
				t.Errorf("buyer %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if sold.Load() != 3 {
		t.Fatalf("%d of 3 left were sold", sold.Load())
	}
	// A refund gives the money back, not the stock.
	e, _ := l.ByKey("a")
	mustAppend(t, l, Draft{Kind: KindRefund, IdempotencyKey: "ra", RefundOf: e.Seq})
	if _, err := l.Append(context.Background(), dropSale("c", 1)); !errors.Is(err, ErrSoldOut) {
		t.Fatalf("after a refund: %v", err)
	}
	if got, _ := l.Get(e.Seq); got.Lines[0].Drop != "eid" {
		t.Fatalf("the drop is not recorded on the line: %+v", got.Lines)
	}
	l.Close()
	l = openTest(t, fs, testOptions(clock))
	if n, err := l.Sold("eid"); n != 5 || err != nil {
		t.Fatalf("sold after restart %d, %v", n, err)
	}
	// A raised cap sells more.
	d := dropSale("d", 1)
	d.Stock["eid"] = 6
	mustAppend(t, l, d)
	mustVerify(t, l)
	if _, err := l.Append(context.Background(), Draft{Kind: KindSale, Payment: PaymentCash, IdempotencyKey: "x",
		Lines: []Line{{SKU: "K", Qty: 1, Price: 1, Drop: "nocap"}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a drop line without a cap: %v", err)
	}
}

func TestOfflineSpendLimit(t *testing.T) {
	fs := vfs.NewMem()
	clock := newClock()
	opts := testOptions(clock)
	opts.SpendLimits = true
	l := openTest(t, fs, opts)
	topUp(t, l, "t", 100000)
	pay := func(key string, limit int64) error {
		d := sale(key, PaymentWallet, chai) // 16000
		d.SpendLimit = limit
		_, err := l.Append(context.Background(), d)
		return err
	}
	for i := range 3 {
		if err := pay(fmt.Sprint("s", i), 50000); err != nil {
			t.Fatalf("payment %d: %v", i, err)
		}
	}
	card := []byte{0x04, 0xa2, 0x2b, 0x91}
	if got := l.OfflineSpent(card); got != 48000 {
		t.Fatalf("offline spent %d, want 48000", got)
	}
	if err := pay("s3", 50000); !errors.Is(err, ErrLimit) {
		t.Fatalf("past the limit: %v", err)
	}
	// The limit survives a restart: the unacknowledged entries are re-read.
	l.Close()
	l = openTest(t, fs, opts)
	if err := pay("s3", 50000); !errors.Is(err, ErrLimit) {
		t.Fatalf("past the limit after a restart: %v", err)
	}
	// The fleet acknowledges the first two payments: the card may spend again.
	if err := l.Ack(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if got := l.OfflineSpent(card); got != 16000 {
		t.Fatalf("offline spent after the ack %d, want 16000", got)
	}
	if err := pay("s3", 50000); err != nil {
		t.Fatalf("after the ack: %v", err)
	}
	// A refund to the card lowers what it has spent.
	e, _ := l.ByKey("s3")
	mustAppend(t, l, Draft{Kind: KindRefund, IdempotencyKey: "r3", RefundOf: e.Seq})
	if got := l.OfflineSpent(card); got != 16000 {
		t.Fatalf("offline spent after a refund %d, want 16000", got)
	}
	if err := pay("s4", 0); err != nil { // no limit
		t.Fatal(err)
	}
	mustVerify(t, l)
	// A ledger that keeps no spending refuses a limit rather than ignore it.
	l.Close()
	l = openTest(t, fs, testOptions(clock))
	if err := pay("s5", 50000); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a limit on a ledger without SpendLimits: %v", err)
	}
}
