package ledger

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Check is what Verify found.
type Check struct {
	Head     uint64   `json:"head"`
	Acked    uint64   `json:"acked"`
	Entries  uint64   `json:"entries"`
	Days     int      `json:"days"`
	Jobs     int      `json:"jobs"`      // receipt print jobs
	OpenJobs int      `json:"open_jobs"` // of them, queued or sending
	Problems []string `json:"problems,omitempty"`
}

// OK is true when Verify found nothing wrong.
func (c *Check) OK() bool { return len(c.Problems) == 0 }

func (c *Check) problem(format string, args ...any) {
	if len(c.Problems) < 100 {
		c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
	}
}

// Verify reads the whole ledger and checks its invariants: seqs 1..head with
// no gap, every value decodes and agrees with its key, each idempotency key
// leads to exactly the entry that carries it, each refund is indexed against
// the entry it refunds, and each day's stored totals and each wallet card's
// balance equal the sum of the entries. It reads a consistent snapshot and ignores anything above the
// durable head; run it on a quiet ledger, as a writer racing it can make
// the day totals disagree for a moment. It costs a full scan: run it from tools and tests, not on
// the checkout path.
func (l *Ledger) Verify() (*Check, error) {
	c := &Check{}
	err := l.read(func(db *pebble.DB) error {
		// Head first: the snapshot then holds at least every entry up to it.
		c.Head, c.Acked = l.head.Load(), l.acked.Load()
		snap := db.NewSnapshot()
		defer snap.Close()
		if c.Acked > c.Head {
			c.problem("watermark %d is past head %d", c.Acked, c.Head)
		}
		ledgerID := l.meta.LedgerID
		days := map[Day]*Totals{}
		keys := map[string]uint64{}    // idempotency key → seq of the entry carrying it
		refunds := map[uint64]uint64{} // refunded seq → refund seq, from the entries
		wallets := map[string]int64{}  // card uid → balance, from the entries
		sold := map[string]int64{}     // drop id → units sold, from the entries

		err := scan(snap, []byte{tagEntry}, func(k, v []byte) error {
			seq, err := seqFromEntryKey(k)
			if err != nil {
				c.problem("%v", err)
				return nil
			}
			if seq > c.Head {
				return nil
			}
			c.Entries++
			if seq != c.Entries {
				c.problem("seq %d follows %d", seq, c.Entries-1)
				c.Entries = seq
			}
			e, err := decodeEntry(v)
			if err != nil {
				c.problem("seq %d: %v", seq, err)
				return nil
			}
			if e.Seq != seq || e.ID.Ledger != ledgerID {
				c.problem("seq %d: value says seq %d, ledger %016x", seq, e.Seq, e.ID.Ledger)
			}
			if prev, dup := keys[e.IdempotencyKey]; dup {
				c.problem("idempotency key %q carried by entries %d and %d", e.IdempotencyKey, prev, seq)
			}
			keys[e.IdempotencyKey] = seq
			if e.Kind == KindRefund {
				if prev, dup := refunds[e.RefundOf]; dup {
					c.problem("entry %d refunded twice, by %d and %d", e.RefundOf, prev, seq)
				}
				refunds[e.RefundOf] = seq
			}
			switch {
			case e.Kind == KindTopUp:
				wallets[string(e.Card)] += e.Total()
			case e.Payment == PaymentWallet && e.Kind == KindRefund:
				wallets[string(e.Card)] += e.Total()
			case e.Payment == PaymentWallet:
				wallets[string(e.Card)] -= e.Total()
				if wallets[string(e.Card)] < 0 {
					c.problem("entry %d overdraws card %x", seq, e.Card)
				}
			}
			for _, ln := range e.Lines {
				if ln.Drop != "" && e.Kind != KindRefund {
					sold[ln.Drop] += ln.Qty
				}
			}
			d := l.DayOf(e.Time)
			if days[d] == nil {
				days[d] = &Totals{Day: d}
			}
			days[d].add(&e)
			return nil
		})
		if err != nil {
			return err
		}
		if c.Entries != c.Head {
			c.problem("head is %d but the last entry is %d", c.Head, c.Entries)
		}
		indexed := 0
		err = scan(snap, []byte{tagKey}, func(k, v []byte) error {
			seq, err := decodeSeqValue(v)
			if err != nil {
				c.problem("key %q: %v", k[1:], err)
				return nil
			}
			if seq > c.Head {
				return nil
			}
			indexed++
			if want, ok := keys[string(k[1:])]; !ok || want != seq {
				c.problem("idempotency key %q indexes entry %d, but that entry carries another key", k[1:], seq)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if indexed != len(keys) {
			c.problem("%d entries but %d idempotency index rows", len(keys), indexed)
		}
		err = scan(snap, []byte{tagRefunded}, func(k, v []byte) error {
			by, err := decodeSeqValue(v)
			if err != nil || len(k) != 9 {
				c.problem("refund row %x: %v", k, err)
				return nil
			}
			if by > c.Head {
				return nil
			}
			seq, _ := seqFromEntryKey(append([]byte{tagEntry}, k[1:]...))
			if refunds[seq] != by {
				c.problem("refund row says %d refunded %d; the entries say %d", by, seq, refunds[seq])
			}
			delete(refunds, seq)
			return nil
		})
		if err != nil {
			return err
		}
		for seq, by := range refunds {
			c.problem("refund %d of entry %d has no refund row", by, seq)
		}
		c.Days = len(days)
		err = scan(snap, []byte{tagDay}, func(k, v []byte) error {
			if len(k) != 5 {
				c.problem("day key %x", k)
				return nil
			}
			d := Day(int32(uint32(k[1])<<24 | uint32(k[2])<<16 | uint32(k[3])<<8 | uint32(k[4])))
			stored, err := decodeTotals(d, v)
			if err != nil {
				c.problem("%v", err)
				return nil
			}
			want := days[d]
			delete(days, d)
			if want == nil {
				want = &Totals{Day: d}
			}
			if !sameCells(stored, want) {
				c.problem("day %s: stored totals %v, entries add up to %v", d, stored.Cells, want.Cells)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for d := range days {
			c.problem("day %s has entries but no stored totals", d)
		}
		err = scan(snap, []byte{tagWallet}, func(k, v []byte) error {
			bal, err := decodeBalance(v)
			if err != nil {
				c.problem("card %x: %v", k[1:], err)
				return nil
			}
			if want := wallets[string(k[1:])]; bal != want {
				c.problem("card %x: stored balance %d, entries add up to %d", k[1:], bal, want)
			}
			delete(wallets, string(k[1:]))
			return nil
		})
		if err != nil {
			return err
		}
		for card, bal := range wallets {
			c.problem("card %x has a balance of %d in the entries but no balance row", card, bal)
		}
		err = scan(snap, []byte{tagStock}, func(k, v []byte) error {
			n, err := decodeSold(v)
			if err != nil {
				c.problem("drop %q: %v", k[1:], err)
				return nil
			}
			if want := sold[string(k[1:])]; n != want {
				c.problem("drop %q: stored %d sold, entries add up to %d", k[1:], n, want)
			}
			delete(sold, string(k[1:]))
			return nil
		})
		if err != nil {
			return err
		}
		for drop, n := range sold {
			c.problem("drop %q sold %d in the entries but has no stock row", drop, n)
		}
		return l.verifyJobs(snap, c)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// verifyJobs checks that every print job belongs to an entry and that the
// open-job index lists exactly the open jobs.
func (l *Ledger) verifyJobs(snap *pebble.Snapshot, c *Check) error {
	open := map[uint64]bool{}
	err := scan(snap, []byte{tagJob}, func(k, v []byte) error {
		if len(k) != 9 {
			c.problem("job key %x", k)
			return nil
		}
		seq := binary.BigEndian.Uint64(k[1:])
		if seq > c.Head {
			return nil
		}
		j, err := decodeJob(seq, v)
		if err != nil {
			c.problem("%v", err)
			return nil
		}
		c.Jobs++
		if j.State.Open() {
			open[seq] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.OpenJobs = len(open)
	err = scan(snap, []byte{tagOpenJob}, func(k, v []byte) error {
		if len(k) != 9 {
			c.problem("open job key %x", k)
			return nil
		}
		seq := binary.BigEndian.Uint64(k[1:])
		if seq > c.Head {
			return nil
		}
		if !open[seq] {
			c.problem("job %d is indexed as open but is not", seq)
		}
		delete(open, seq)
		return nil
	})
	for seq := range open {
		c.problem("job %d is open but not indexed", seq)
	}
	return err
}

func sameCells(a, b *Totals) bool {
	nonzero := func(t *Totals) int {
		n := 0
		for _, s := range t.Cells {
			if s != (Sum{}) {
				n++
			}
		}
		return n
	}
	if nonzero(a) != nonzero(b) {
		return false
	}
	for c, s := range a.Cells {
		if s != (Sum{}) && b.Cells[c] != s {
			return false
		}
	}
	return true
}

// scan calls fn for every row whose key starts with the one-byte tag prefix.
func scan(r pebble.Reader, prefix []byte, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: []byte{prefix[0] + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	return it.Error()
}
