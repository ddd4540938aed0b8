package ledger

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// acks remembers every entry a caller was told is durable.
type acks struct {
	mu     sync.Mutex
	byKey  map[string]Entry
	sales  []uint64 // acknowledged sale seqs, candidates for refunds
	counts atomic.Int64
}

func (a *acks) add(e Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.byKey[e.IdempotencyKey]; ok && prev.Seq != e.Seq {
		panic(fmt.Sprintf("key %s acknowledged as %d and %d", e.IdempotencyKey, prev.Seq, e.Seq))
	}
	a.byKey[e.IdempotencyKey] = e
	if e.Kind == KindSale {
		a.sales = append(a.sales, e.Seq)
	}
	a.counts.Add(1)
}

func (a *acks) snapshot() map[string]Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[string]Entry, len(a.byKey))
	for k, v := range a.byKey {
		m[k] = v
	}
	return m
}

// randomDraft makes the mix a busy stall sees: mostly new sales, some
// retries of earlier keys, some refunds, top-ups and subscriptions.
func (a *acks) randomDraft(rng *rand.Rand, writer, i int) Draft {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch n := rng.IntN(20); {
	case n == 0 && len(a.byKey) > 0:
		// Retry an acknowledged request with the same key.
		for _, e := range a.byKey {
			d := Draft{Kind: e.Kind, Payment: e.Payment, IdempotencyKey: e.IdempotencyKey, Lines: e.Lines,
				RefundOf: e.RefundOf, Card: e.Card, Phone: e.Phone, Plan: e.Plan}
			if e.Kind == KindRefund {
				d.Lines, d.Payment, d.Card = nil, 0, nil
			}
			return d
		}
	case n == 1 && len(a.sales) > 0:
		return Draft{Kind: KindRefund, IdempotencyKey: fmt.Sprintf("refund-%d-%d-%d", writer, i, rng.Uint32()),
			RefundOf: a.sales[rng.IntN(len(a.sales))]}
	case n == 2:
		return Draft{Kind: KindTopUp, Payment: PaymentCash, Card: []byte{byte(writer), 1, 2, 3},
			IdempotencyKey: fmt.Sprintf("topup-%d-%d-%d", writer, i, rng.Uint32()),
			Lines:          []Line{{SKU: "TOPUP", Name: "Wallet top-up", Qty: 1, Price: int64(rng.IntN(5000)+1) * 100}}}
	case n == 3:
		return Draft{Kind: KindSubscription, Payment: PaymentCash, Phone: "0300" + fmt.Sprint(rng.IntN(9999999)), Plan: "weekly",
			IdempotencyKey: fmt.Sprintf("sub-%d-%d-%d", writer, i, rng.Uint32()),
			Lines:          []Line{{SKU: "SUB-W", Name: "Weekly chai", Qty: 1, Price: 50000}}}
	}
	pay := PaymentCash
	var card []byte
	if rng.IntN(3) == 0 {
		pay, card = PaymentWallet, []byte{byte(writer), 1, 2, 3} // the card top-ups credit
	}
	return Draft{Kind: KindSale, Payment: pay, Card: card, IdempotencyKey: fmt.Sprintf("sale-%d-%d-%d", writer, i, rng.Uint32()),
		Lines:   []Line{{SKU: "CHAI", Name: "Chai", Qty: int64(rng.IntN(5) + 1), Price: 8000}},
		Receipt: true, Drawer: pay == PaymentCash}
}

// TestCrashAtRandomPoints runs concurrent checkouts on Pebble's
// crash-simulating filesystem, crashes at a random moment, reopens what a
// crash would have left, and checks that nothing acknowledged is lost, seqs
// have no gap, and no idempotency key maps to two entries.
func TestCrashAtRandomPoints(t *testing.T) {
	crashes := 300
	if testing.Short() {
		crashes = 30
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	fs := vfs.NewCrashableMem()
	clock := newClock()
	opts := testOptions(clock)
	opts.FS = fs
	l, err := Open("ledger", opts)
	if err != nil {
		t.Fatal(err)
	}
	a := &acks{byKey: map[string]Entry{}}
	for crash := range crashes {
		var stop atomic.Bool
		var wg sync.WaitGroup
		writers := 1 + rng.IntN(8)
		for w := range writers {
			wg.Add(1)
			wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					clock.Advance(time.Duration(wrng.IntN(120)) * time.Second)
					d := a.randomDraft(wrng, w, i)
					e, err := l.Append(context.Background(), d)
					switch {
					case err == nil:
						a.add(e)
					case errors.Is(err, ErrUnavailable):
						return // closed under us
					case errors.Is(err, ErrConflict) && d.Kind == KindRefund:
						// refunded already by another writer
					case errors.Is(err, ErrInsufficient) && d.Payment == PaymentWallet:
						// the card ran dry
					default:
						t.Errorf("Append(%+v): %v", d, err)
						return
					}
				}
			}()
		}
		// Crash once a random number of further checkouts were acknowledged,
		// while the writers are still going.
		target := a.counts.Load() + int64(rng.IntN(40))
		for a.counts.Load() < target && !t.Failed() {
			time.Sleep(50 * time.Microsecond)
		}
		before := a.snapshot()
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		stop.Store(true)
		l.Close()
		wg.Wait()
		if t.Failed() {
			return
		}

		fs = crashed
		opts.FS = fs
		if l, err = Open("ledger", opts); err != nil {
			t.Fatalf("crash %d: reopening: %v", crash, err)
		}
		c := mustVerify(t, l) // no gaps, one entry per key, indexes and totals agree
		for key, want := range before {
			got, err := l.ByKey(key)
			if err != nil || got.Seq != want.Seq || got.Total() != want.Total() {
				t.Fatalf("crash %d: acknowledged %s (seq %d) came back as %+v, %v", crash, key, want.Seq, got, err)
			}
		}
		// What survives the crash is now the truth: entries acknowledged
		// after the crash point may be gone, and their keys are free again.
		survivors := map[string]Entry{}
		var sales []uint64
		all, err := l.Range(1, int(c.Head))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range all {
			// Every sale queued its receipt in the batch that wrote it.
			if j, ok, err := l.Job(e.Seq); e.Kind == KindSale && (!ok || err != nil || j.State != JobQueued || j.Drawer != (e.Payment == PaymentCash)) {
				t.Fatalf("crash %d: sale %d came back with print job %+v, %v, %v", crash, e.Seq, j, ok, err)
			}
			survivors[e.IdempotencyKey] = e
			if e.Kind == KindSale {
				sales = append(sales, e.Seq)
			}
		}
		a.mu.Lock()
		a.byKey, a.sales = survivors, sales
		a.mu.Unlock()
	}
	t.Logf("%d crashes, %d entries survive", crashes, l.Head())
	l.Close()
}

// syncFailures injects fsync failures into the WAL (and, when all is set,
// into every file) while on is set.
type syncFailures struct {
	on, all atomic.Bool
	count   atomic.Int64
}

func (s *syncFailures) inject(op errorfs.Op) error {
	if !s.on.Load() || !isSync(op.Kind) {
		return nil
	}
	if !s.all.Load() && !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	s.count.Add(1)
	return errorfs.ErrInjected
}

// TestSyncFailure: a checkout whose fsync failed is never reported as
// recorded; the ledger refuses writes and says why; once the disk works
// again it recovers by itself; nothing acknowledged is lost and retrying
// the failed checkout with its key settles whether it was recorded.
func TestSyncFailure(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("all=%v", all), func(t *testing.T) {
			inj := &syncFailures{}
			inj.all.Store(all)
			clock := newClock()
			l := openTest(t, errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(inj.inject)), testOptions(clock))
			ctx := context.Background()
			ok := map[string]Entry{}
			for i := range 5 {
				e := mustAppend(t, l, sale(fmt.Sprint("ok-", i), PaymentCash, chai))
				ok[e.IdempotencyKey] = e
			}

			inj.on.Store(true)
			failed := sale("doomed", PaymentCash, samosa)
			if e, err := l.Append(ctx, failed); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Append with a failing fsync returned %+v, %v", e, err)
			}
			if inj.count.Load() == 0 {
				t.Fatal("no sync failure was injected")
			}
			h := l.Health()
			if h == nil || !strings.Contains(h.Error(), "sync failed") {
				t.Fatalf("Health after the failure: %v", h)
			}
			// While the disk fails, writes are refused loudly, not queued.
			for i := range 3 {
				if _, err := l.Append(ctx, sale(fmt.Sprint("refused-", i), PaymentCash, chai)); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Append while failing: %v", err)
				}
			}

			inj.on.Store(false)
			deadline := time.Now().Add(20 * time.Second)
			for l.Health() != nil {
				if time.Now().After(deadline) {
					t.Fatalf("no recovery: %v", l.Health())
				}
				time.Sleep(10 * time.Millisecond)
			}
			for key, want := range ok {
				if got, err := l.ByKey(key); err != nil || got.Seq != want.Seq {
					t.Fatalf("acknowledged %s: %+v %v", key, got, err)
				}
			}
			// The failed checkout is in doubt until retried with its key:
			// then it exists exactly once.
			e := mustAppend(t, l, failed)
			e2 := mustAppend(t, l, failed)
			if e.Seq != e2.Seq {
				t.Fatalf("retries of the failed checkout made %d and %d", e.Seq, e2.Seq)
			}
			after := mustAppend(t, l, sale("after", PaymentCash, chai))
			if after.Seq != l.Head() || after.Seq <= e.Seq {
				t.Fatalf("seq after recovery %d (failed one %d)", after.Seq, e.Seq)
			}
			mustVerify(t, l)
		})
	}
}

// TestSyncFailureUnderLoad: with writers running, every Append that
// succeeded is on disk after the failure and the recovery.
func TestSyncFailureUnderLoad(t *testing.T) {
	inj := &syncFailures{}
	clock := newClock()
	l := openTest(t, errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(inj.inject)), testOptions(clock))
	a := &acks{byKey: map[string]Entry{}}
	var refused atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				d := sale(fmt.Sprintf("w%d-%d", w, i), PaymentCash, chai)
				e, err := l.Append(context.Background(), d)
				if err == nil {
					a.add(e)
				} else if errors.Is(err, ErrUnavailable) {
					refused.Add(1)
				} else {
					t.Errorf("Append: %v", err)
				}
			}
		}()
	}
	for round := range 5 {
		for a.counts.Load() < int64(200*(round+1)) {
			time.Sleep(time.Millisecond)
		}
		inj.on.Store(true)
		for l.Health() == nil {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		inj.on.Store(false)
		for l.Health() != nil {
			time.Sleep(time.Millisecond)
		}
	}
	stop.Store(true)
	wg.Wait()
	if refused.Load() == 0 {
		t.Fatal("no Append was refused during the failures")
	}
	for key, want := range a.snapshot() {
		if got, err := l.ByKey(key); err != nil || got.Seq != want.Seq {
			t.Fatalf("acknowledged %s (seq %d): %+v %v", key, want.Seq, got, err)
		}
	}
	mustVerify(t, l)
	t.Logf("%d acknowledged, %d refused, head %d", a.counts.Load(), refused.Load(), l.Head())
}

// TestFailedGroupTakesItsRefusalsBack: a refusal worked out from a group
// whose sync then fails ("already refunded" by a refund the failure took
// back) must not reach the caller as final.
func TestFailedGroupTakesItsRefusalsBack(t *testing.T) {
	var slowFail atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if slowFail.Load() && isSync(op.Kind) && strings.HasSuffix(op.Path, ".log") {
			time.Sleep(100 * time.Millisecond)
			return errorfs.ErrInjected
		}
		return nil
	}))
	l := openTest(t, fs, testOptions(newClock()))
	s := mustAppend(t, l, sale("s", PaymentCash, chai))
	slowFail.Store(true)
	first := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), Draft{Kind: KindRefund, IdempotencyKey: "r1", RefundOf: s.Seq})
		first <- err
	}()
	time.Sleep(30 * time.Millisecond) // r1 is in the WAL; its fsync is under way
	_, err := l.Append(context.Background(), Draft{Kind: KindRefund, IdempotencyKey: "r2", RefundOf: s.Seq})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("second refund: %v, want ErrUnavailable (the first refund is in doubt)", err)
	}
	if err := <-first; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first refund: %v", err)
	}
}

// TestDerivedRowsOnlyShowDurableEntries: a wallet balance or day total is
// never visible before the entry behind it is durable, even for a row the
// sequencer touches for the first time while a reader is looking it up.
func TestDerivedRowsOnlyShowDurableEntries(t *testing.T) {
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if isSync(op.Kind) && strings.HasSuffix(op.Path, ".log") {
			time.Sleep(2 * time.Millisecond) // a slow SD card widens the window
		}
		return nil
	}))
	l := openTest(t, fs, testOptions(newClock()))
	card := func(i int64) []byte { return []byte{0xc0, byte(i >> 16), byte(i >> 8), byte(i)} }
	const cards = 300
	var next atomic.Int64
	var seqs sync.Map // card index → top-up seq
	type seen struct{ card, head int64 }
	var mu sync.Mutex
	var seenList []seen
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > cards {
					return
				}
				e, err := l.Append(context.Background(), Draft{Kind: KindTopUp, Payment: PaymentCash, Card: card(i),
					IdempotencyKey: fmt.Sprint("t", i), Lines: []Line{{SKU: "TOPUP", Qty: 1, Price: 100}}})
				if err != nil {
					t.Error(err)
					return
				}
				seqs.Store(i, e.Seq)
			}
		}()
	}
	var stop atomic.Bool
	var readers sync.WaitGroup
	for r := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for !stop.Load() {
				i := next.Load() + int64(r%2) // the card being topped up now, or next
				if bal, err := l.WalletBalance(card(i)); err == nil && bal > 0 {
					h := int64(l.Head())
					mu.Lock()
					seenList = append(seenList, seen{i, h})
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	readers.Wait()
	for _, s := range seenList {
		seq, _ := seqs.Load(s.card)
		if uint64(s.head) < seq.(uint64) {
			t.Fatalf("card %d's balance was visible at head %d, before its top-up (seq %d) was durable", s.card, s.head, seq)
		}
	}
	t.Logf("%d balance reads checked", len(seenList))
	mustVerify(t, l)
}

// TestStuckStoreNeedsRestart: a store that never closes after a failed
// fsync (Pebble can wedge its commit pipeline) leaves the ledger refusing
// writes with ErrNeedsRestart; readers fail fast and Close returns.
func TestStuckStoreNeedsRestart(t *testing.T) {
	release := make(chan struct{})
	oldClose, oldTimeout := closeStore, closeTimeout
	closeStore = func(db *pebble.DB) error { <-release; return oldClose(db) }
	closeTimeout = 100 * time.Millisecond
	defer func() { close(release); closeStore, closeTimeout = oldClose, oldTimeout }()

	inj := &syncFailures{}
	l := openTest(t, errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(inj.inject)), testOptions(newClock()))
	mustAppend(t, l, sale("a", PaymentCash, chai))
	inj.on.Store(true)
	if _, err := l.Append(context.Background(), sale("b", PaymentCash, chai)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append with a failing fsync: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(l.Health(), ErrNeedsRestart) {
		if time.Now().After(deadline) {
			t.Fatalf("health %v, want ErrNeedsRestart", l.Health())
		}
		time.Sleep(5 * time.Millisecond)
	}
	inj.on.Store(false) // too late: nothing reopens a stuck store
	start := time.Now()
	if _, err := l.Range(1, 10); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Range on a stuck ledger: %v", err)
	}
	if _, err := l.Append(context.Background(), sale("c", PaymentCash, chai)); !errors.Is(err, ErrNeedsRestart) {
		t.Fatalf("Append on a stuck ledger: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("reads, writes and Close took %s on a stuck ledger", d)
	}
}
