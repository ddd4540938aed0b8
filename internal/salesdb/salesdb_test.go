package salesdb

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/microretail/kioskd/firmware/ledger"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// entry makes a kiosk's entry seq of kind for amount paisa, at t0 plus
// seq minutes.
func entry(kiosk string, lid, seq uint64, kind ledger.Kind, amount int64) ledger.Entry {
	e := ledger.Entry{Seq: seq, ID: ledger.ID{Ledger: lid, Seq: seq}, Kind: kind, KioskID: kiosk,
		Time: t0.Add(time.Duration(seq) * time.Minute), Payment: ledger.PaymentCash, Currency: "PKR",
		IdempotencyKey: fmt.Sprintf("%s-%d", kiosk, seq),
		Lines:          []ledger.Line{{SKU: "CHAI", Name: "Chai", Qty: 1, Price: amount}}}
	switch kind {
	case ledger.KindRefund:
		e.RefundOf = 1
	case ledger.KindTopUp:
		e.Card = []byte{1, 2, 3, 4}
	case ledger.KindSubscription:
		e.Phone, e.Plan = "03001234567", "weekly"
	}
	return e
}

// sales makes kiosk's sales from..to of 100 rupees each.
func sales(kiosk string, from, to uint64) Batch {
	b := Batch{Kiosk: kiosk}
	for s := from; s <= to; s++ {
		b.Entries = append(b.Entries, entry(kiosk, 0xabc, s, ledger.KindSale, 10000))
	}
	return b
}

func open(t *testing.T, dir string, o Options) *DB {
	t.Helper()
	d, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func store(t *testing.T, d *DB, bs ...Batch) Result {
	t.Helper()
	r, err := d.Store(bs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDedupeAndGaps(t *testing.T) {
	d := open(t, t.TempDir(), Options{})
	tests := []struct {
		name             string
		batch            Batch
		stored, dup      int
		contiguous, max_ uint64
	}{
		{"first batch", sales("k1", 1, 5), 5, 0, 5, 5},
		{"the same again", sales("k1", 1, 5), 0, 5, 5, 5},
		{"above a gap", sales("k1", 8, 10), 3, 0, 5, 10},
		{"above a gap again", sales("k1", 9, 12), 2, 2, 5, 12},
		{"overlapping the gap", sales("k1", 4, 7), 2, 2, 12, 12},
		{"next", sales("k1", 13, 13), 1, 0, 13, 13},
		{"a gap from the start", sales("k2", 3, 4), 2, 0, 0, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := store(t, d, tt.batch)
			o := r.Outcomes[0]
			if o.Err != nil || o.Stored != tt.stored || o.Duplicates != tt.dup || o.Contiguous != tt.contiguous {
				t.Fatalf("outcome %+v, want stored %d dup %d contiguous %d", o, tt.stored, tt.dup, tt.contiguous)
			}
			if r.Stored != tt.stored || r.Duplicates != tt.dup {
				t.Fatalf("result %+v", r)
			}
			if c := d.Contiguous(tt.batch.Kiosk); c != tt.contiguous {
				t.Fatalf("Contiguous = %d", c)
			}
			var m Mark
			for _, mk := range d.Marks() {
				if mk.Kiosk == tt.batch.Kiosk {
					m = mk
				}
			}
			if m.Max != tt.max_ || m.Ledger != 0xabc {
				t.Fatalf("mark %+v", m)
			}
		})
	}
	es, err := d.Entries("k1", 1, 0)
	if err != nil || len(es) != 13 {
		t.Fatalf("%d entries, %v", len(es), err)
	}
	for i, e := range es {
		want := entry("k1", 0xabc, uint64(i+1), ledger.KindSale, 10000)
		if e.Seq != want.Seq || e.ID != want.ID || !e.Time.Equal(want.Time) || e.Total() != 10000 || e.IdempotencyKey != want.IdempotencyKey {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}
	es, err = d.Entries("k1", 11, 2)
	if err != nil || len(es) != 2 || es[0].Seq != 11 || es[1].Seq != 12 {
		t.Fatalf("Entries(k1, 11, 2) = %v, %v", es, err)
	}
	if es, err := d.Entries("k", 1, 0); err != nil || len(es) != 0 {
		t.Fatalf("k, a prefix of k1, has entries %v %v", es, err)
	}
}

func TestContiguousFrom(t *testing.T) {
	d := open(t, t.TempDir(), Options{})
	// k1 holds 1-3, 6-8 and 10: as if other workers held 4-5 and 9.
	store(t, d, sales("k1", 1, 3), sales("k1", 6, 8), sales("k1", 10, 10))
	for _, c := range []struct{ base, want uint64 }{{0, 3}, {2, 3}, {3, 3}, {4, 4}, {5, 8}, {6, 8}, {9, 10}, {10, 10}, {12, 12}} {
		if got, err := d.ContiguousFrom("k1", c.base); err != nil || got != c.want {
			t.Errorf("ContiguousFrom(k1, %d) = %d, %v; want %d", c.base, got, err, c.want)
		}
	}
	if got, _ := d.ContiguousFrom("k2", 7); got != 7 {
		t.Errorf("ContiguousFrom of an unknown kiosk: %d", got)
	}
}

// TestOneCallManyBatches: batches queued up are one commit; a batch later
// in the call fills a gap an earlier one left, and one seq sent twice in
// the call is stored once.
func TestOneCallManyBatches(t *testing.T) {
	d := open(t, t.TempDir(), Options{})
	r := store(t, d, sales("k1", 4, 6), sales("k2", 1, 2), sales("k1", 1, 3), sales("k1", 3, 4), Batch{Kiosk: "bad/id"})
	if r.Stored != 8 || r.Duplicates != 2 || r.Refused != 1 {
		t.Fatalf("%+v", r)
	}
	for i, want := range []uint64{6, 2, 6, 6} {
		if o := r.Outcomes[i]; o.Contiguous != want || o.Err != nil {
			t.Fatalf("outcome %d: %+v, want contiguous %d", i, o, want)
		}
	}
	if !errors.Is(r.Outcomes[4].Err, ErrInvalid) {
		t.Fatalf("bad kiosk id: %v", r.Outcomes[4].Err)
	}
}

func TestRefusals(t *testing.T) {
	d := open(t, t.TempDir(), Options{})
	store(t, d, sales("k1", 1, 2))
	other := sales("k1", 3, 3)
	other.Entries[0].KioskID = "k9"
	mixed := sales("k1", 3, 4)
	mixed.Entries[1].ID.Ledger = 0xdef
	wiped := Batch{Kiosk: "k1", Entries: []ledger.Entry{entry("k1", 0xdef, 1, ledger.KindSale, 500)}}
	noCurrency := sales("k1", 3, 3)
	noCurrency.Entries[0].Currency = ""
	tests := []struct {
		name  string
		batch Batch
		want  error
	}{
		{"entry of another kiosk", other, ErrInvalid},
		{"mixed ledgers", mixed, ErrInvalid},
		{"a wiped kiosk's new ledger", wiped, ErrConflict},
		{"empty", Batch{Kiosk: "k1"}, ErrInvalid},
		{"no currency", noCurrency, ErrInvalid},
		{"wildcard kiosk", Batch{Kiosk: "k+"}, ErrInvalid},
		{"control character", Batch{Kiosk: "k\x00"}, ErrInvalid},
		{"no kiosk", Batch{}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := store(t, d, tt.batch)
			if !errors.Is(r.Outcomes[0].Err, tt.want) || r.Stored != 0 || r.Refused != 1 {
				t.Fatalf("%+v", r)
			}
		})
	}
	if d.Contiguous("k1") != 2 {
		t.Fatal("a refused batch moved the mark")
	}
	if es, _ := d.Entries("k1", 1, 0); len(es) != 2 || es[0].ID.Ledger != 0xabc {
		t.Fatalf("entries after refusals: %v", es)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	store(t, d, sales("k1", 1, 3), sales("k1", 6, 7), sales("k2", 1, 1))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal("second close:", err)
	}
	if _, err := d.Store([]Batch{sales("k1", 4, 4)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("store after close: %v", err)
	}

	ro := open(t, dir, Options{ReadOnly: true})
	if _, err := ro.Store([]Batch{sales("k1", 4, 4)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("store read-only: %v", err)
	}
	ro.Close()

	d = open(t, dir, Options{})
	if c := d.Contiguous("k1"); c != 3 {
		t.Fatalf("contiguous after reopen %d", c)
	}
	r := store(t, d, sales("k1", 1, 5))
	if r.Stored != 2 || r.Duplicates != 3 || r.Outcomes[0].Contiguous != 7 {
		t.Fatalf("after reopen: %+v", r)
	}
	if _, err := Open(t.TempDir()+"/none", Options{ReadOnly: true}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("read-only open of nothing: %v", err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("second writer: %v", err)
	}
}

// TestCrashKeepsOnlySynced: after a crash that loses every unsynced
// write, all that Store reported is there, with its marks.
func TestCrashKeepsOnlySynced(t *testing.T) {
	fs := vfs.NewCrashableMem()
	d, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < 20; i++ {
		store(t, d, sales("k1", i*10+1, i*10+10))
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	d.Close()
	d2 := open(t, "db", Options{FS: crashed})
	if c := d2.Contiguous("k1"); c != 200 {
		t.Fatalf("contiguous after crash %d", c)
	}
	if es, err := d2.Entries("k1", 1, 0); err != nil || len(es) != 200 {
		t.Fatalf("%d entries after crash, %v", len(es), err)
	}
}

// TestFailedSync: a commit whose fsync failed is an error, not a mark
// moved; the store then refuses writes until reopened, and what it
// reported stored before is there after.
func TestFailedSync(t *testing.T) {
	var fail atomic.Bool
	mem := vfs.NewMem()
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if fail.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) &&
			strings.HasSuffix(op.Path, ".log") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	d, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	store(t, d, sales("k1", 1, 3))
	fail.Store(true)
	if _, err := d.Store([]Batch{sales("k1", 4, 6)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("store with failing fsync: %v", err)
	}
	if c := d.Contiguous("k1"); c != 3 {
		t.Fatalf("mark moved to %d by a failed commit", c)
	}
	fail.Store(false)
	if _, err := d.Store([]Batch{sales("k1", 7, 7)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("store after a failed commit: %v", err)
	}
	_ = d.Close()
}

func TestReport(t *testing.T) {
	d := open(t, t.TempDir(), Options{})
	const lid = 0x1
	k1 := Batch{Kiosk: "k1", Entries: []ledger.Entry{
		entry("k1", lid, 1, ledger.KindSale, 10000),         // 09:01
		entry("k1", lid, 2, ledger.KindSale, 20001),         // 09:02
		entry("k1", lid, 3, ledger.KindRefund, 10000),       // refund of 1
		entry("k1", lid, 4, ledger.KindTopUp, 50000),        // not revenue
		entry("k1", lid, 5, ledger.KindSubscription, 30000), //
	}}
	k2 := Batch{Kiosk: "k2", Entries: []ledger.Entry{entry("k2", lid, 1, ledger.KindSale, 7000)}}
	for i := range k2.Entries {
		k2.Entries[i].Time = t0.Add(-2 * time.Hour)
	}
	k2.Entries = append(k2.Entries, entry("k2", lid, 2, ledger.KindSale, 3000))
	k2.Entries[1].Time = t0.Add(2 * time.Hour) // four hours after its first
	store(t, d, k1, k2)

	rep, err := d.Report(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Kiosks) != 2 || len(rep.Totals) != 1 {
		t.Fatalf("%+v", rep)
	}
	a := rep.Kiosks[0]
	want := Totals{Kiosk: "k1", Currency: "PKR", Entries: 5, Revenue: 10000 + 20001 + 30000 - 10000,
		Sales: Tally{2, 30001}, AOV: 15001 /* 15000.5 rounds up */, Refunds: Tally{1, 10000},
		TopUps: Tally{1, 50000}, Subscriptions: Tally{1, 30000}, RevenuePerHour: 50001 /* under an hour counts as one */}
	if !sameTotals(a, want) {
		t.Fatalf("k1:\n got %+v\nwant %+v", a, want)
	}
	b := rep.Kiosks[1]
	if b.Revenue != 10000 || b.RevenuePerHour != 2500 || b.AOV != 5000 || !b.First.Equal(t0.Add(-2*time.Hour)) {
		t.Fatalf("k2: %+v", b)
	}
	tot := rep.Totals[0]
	// The fleet spans 09:00-2h to 11:00: four hours.
	if tot.Kiosk != "" || tot.Revenue != 60001 || tot.Sales != (Tally{4, 40001}) || tot.Entries != 7 || tot.RevenuePerHour != 15000 {
		t.Fatalf("total: %+v", tot)
	}

	rep, err = d.Report(Filter{Kiosk: "k1", From: t0.Add(2 * time.Minute), To: t0.Add(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Kiosks) != 1 || rep.Kiosks[0].Entries != 3 || rep.Kiosks[0].Revenue != 20001-10000 || rep.Kiosks[0].TopUps.Count != 1 {
		t.Fatalf("filtered: %+v", rep)
	}
	if rep, err := d.Report(Filter{Kiosk: "nobody"}); err != nil || len(rep.Kiosks) != 0 || len(rep.Totals) != 0 {
		t.Fatalf("report of nobody: %+v %v", rep, err)
	}
	if _, err := d.Report(Filter{Kiosk: "a/b"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad kiosk filter: %v", err)
	}
}

func sameTotals(a, b Totals) bool {
	a.First, a.Last, a.first, a.last = time.Time{}, time.Time{}, 0, 0
	return a == b
}

func TestDivRound(t *testing.T) {
	for _, c := range []struct{ n, d, want int64 }{{7, 2, 4}, {-7, 2, -4}, {5, 3, 2}, {-5, 3, -2}, {1, 0, 0}, {10, 5, 2}} {
		if got := divRound(bigInt(c.n), bigInt(c.d)); got != c.want {
			t.Errorf("%d/%d = %d, want %d", c.n, c.d, got, c.want)
		}
	}
}

func BenchmarkStore500(b *testing.B) {
	d, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	var seq uint64
	b.ResetTimer()
	for range b.N {
		if _, err := d.Store([]Batch{sales("k1", seq+1, seq+500)}); err != nil {
			b.Fatal(err)
		}
		seq += 500
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "sales/s")
}

func bigInt(n int64) *big.Int { return big.NewInt(n) }
