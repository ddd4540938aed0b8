package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"
)

// Recovery backoff after a storage failure.
const (
	minRecoveryBackoff = 50 * time.Millisecond
	maxRecoveryBackoff = 10 * time.Second
)

// sequence is the only goroutine that writes. It takes every request that is
// waiting, turns them into one batch, hands the batch to Pebble's WAL in seq
// order without waiting for the fsync, and passes it on to the syncer.
func (l *Ledger) sequence() {
	defer l.wg.Done()
	defer close(l.groups)
	backoff := minRecoveryBackoff
	var retry <-chan time.Time
	for {
		var reqs []*request
		select {
		case <-l.stop:
			return
		case <-l.failed:
			retry = l.recover(&backoff)
			continue
		case <-retry:
			retry = l.recover(&backoff)
			continue
		case r := <-l.reqs:
			reqs = append(make([]*request, 0, 16), r)
		}
	drain:
		for len(reqs) < l.opts.MaxGroup {
			select {
			case r := <-l.reqs:
				reqs = append(reqs, r)
			default:
				break drain
			}
		}
		if f := l.failure.Load(); f != nil {
			for _, r := range reqs {
				r.done <- result{err: *f}
			}
			continue
		}
		l.pruneRows()
		g := l.prepareGuarded(reqs)
		if g.err == nil && g.batch != nil {
			if err := applyNoSyncWait(l.db, g.batch); err != nil {
				g.err = fmt.Errorf("%w: writing the WAL: %v", ErrUnavailable, err)
				l.fail(g.err)
			}
		}
		l.pending.Add(1)
		l.inflight.Add(1)
		l.groups <- g
	}
}

// syncLoop waits for each group's fsync, in WAL order, then makes its entries
// visible and answers its callers.
func (l *Ledger) syncLoop() {
	defer l.wg.Done()
	for g := range l.groups {
		err := g.err
		if err == nil && g.batch != nil {
			l.syncFrom.Store(l.opts.Clock().UnixNano())
			err = syncWait(g.batch)
			l.syncFrom.Store(0)
			if err != nil {
				err = fmt.Errorf("%w: sync failed; entries %d to %d may or may not be recorded, retry with the same idempotency key: %v",
					ErrUnavailable, l.head.Load()+1, g.head, err)
				l.fail(err)
			}
		}
		if f := l.failure.Load(); f != nil {
			// A later group's sync may succeed after an earlier one failed,
			// but what the failed one wrote is in doubt, so nothing after it
			// is vouched for either, not even a refusal: "already refunded"
			// or "insufficient balance" may rest on an entry the failure
			// took back. Recovery settles what is on disk.
			for _, r := range g.reqs {
				r.done <- result{err: *f}
			}
		} else {
			l.publish(g)
			for i, r := range g.reqs {
				r.done <- g.results[i]
			}
		}
		if g.batch != nil {
			_ = g.batch.Close()
		}
		l.pending.Add(-1)
		l.inflight.Done()
	}
}

// publish makes a synced group visible to readers: the head first, so that
// a reader who sees a derived row change also sees the entry behind it.
func (l *Ledger) publish(g *group) {
	if g.head > l.head.Load() {
		l.head.Store(g.head)
	}
	if g.acked > l.acked.Load() {
		l.acked.Store(g.acked)
	}
	if len(g.rows) > 0 {
		l.durable.Lock()
		for k, v := range g.rows {
			l.durable.rows[k] = v
		}
		l.durable.Unlock()
	}
}

// fail stops the ledger taking writes until recovery succeeds.
func (l *Ledger) fail(err error) {
	if l.failure.CompareAndSwap(nil, &err) {
		l.cause = err
		l.log.Error().Err(err).Msg("ledger storage failed; refusing writes until it recovers")
		select {
		case l.failed <- struct{}{}:
		default:
		}
	}
}

// closeTimeout bounds how long recovery waits for the failed store to
// close. A Pebble that panicked while holding its commit lock never closes.
var closeTimeout = 5 * time.Second

// closeStore closes a Pebble; tests replace it to play a store that hangs.
var closeStore = closePebble

var errCloseTimeout = errors.New("the store did not close")

// closeWithin closes db, giving up after d. A store that does not close is
// left to its goroutine: only a restart of the process frees it.
func closeWithin(db *pebble.DB, d time.Duration) error {
	done := make(chan error, 1)
	closeFn := closeStore
	go func() { done <- closeFn(db) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("%w in %s", errCloseTimeout, d)
	}
}

// recover closes and reopens the store once every in-flight group has been
// answered. Reopening replays the WAL, so the store holds exactly what
// reached the disk, and the head, watermark and totals are read afresh.
// It returns the channel for the next attempt, or nil once recovered or
// once only a restart of the process can help (ErrNeedsRestart).
func (l *Ledger) recover(backoff *time.Duration) <-chan time.Time {
	l.inflight.Wait()
	if errors.Is(l.Health(), ErrNeedsRestart) {
		return nil
	}
	l.mu.Lock()
	db := l.db
	l.db = nil // readers now fail fast instead of waiting on the close
	l.mu.Unlock()
	if db != nil {
		if err := closeWithin(db, closeTimeout); errors.Is(err, errCloseTimeout) {
			err = fmt.Errorf("%w: %w: %v after %v", ErrUnavailable, ErrNeedsRestart, err, l.cause)
			l.failure.Store(&err)
			l.log.Error().Err(err).Msg("ledger store is stuck; kioskd must restart")
			return nil
		} else if err != nil {
			l.log.Warn().Err(err).Msg("closing the failed store")
		}
	}
	l.mu.Lock()
	err := l.open()
	l.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w; reopening failed too, next try in %s: %v", l.cause, *backoff, err)
		l.failure.Store(&err)
		l.log.Error().Err(err).Msg("ledger recovery failed")
		next := time.After(*backoff)
		*backoff = min(*backoff*2, maxRecoveryBackoff)
		return next
	}
	l.failure.Store(nil)
	*backoff = minRecoveryBackoff
	l.log.Warn().Uint64("head", l.head.Load()).Msg("ledger recovered")
	return nil
}

// maxCachedRows bounds the derived rows (days, wallet cards) kept in memory.
const maxCachedRows = 4096

// pruneRows forgets the cached derived rows once there are many of them and
// nothing is in flight: then Pebble holds exactly the durable values, and
// both caches fill again from it.
func (l *Ledger) pruneRows() {
	if len(l.seqRows) < maxCachedRows || l.pending.Load() != 0 {
		return
	}
	clear(l.seqRows)
	l.durable.Lock()
	clear(l.durable.rows)
	l.durable.Unlock()
}

// prepareGuarded runs prepare, turning a panic from Pebble (an invariant
// failure reported through Fatalf) into the failure of the whole group.
func (l *Ledger) prepareGuarded(reqs []*request) (g *group) {
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("%w: preparing a batch: %v", ErrUnavailable, r)
			l.fail(err)
			g = &group{reqs: reqs, results: make([]result, len(reqs)), err: err}
		}
	}()
	return l.prepare(reqs)
}

// prepare turns requests into one batch. It runs on the sequencer, so the
// store and l.next change only here.
func (l *Ledger) prepare(reqs []*request) *group {
	g := &group{reqs: reqs, results: make([]result, len(reqs)), acked: l.seqAcked}
	p := preparer{l: l, g: g, inGroup: map[string]int{}, refunded: map[uint64]uint64{},
		days: map[Day]*Totals{}, changed: map[Day]bool{}, wallets: map[string]int64{}, stock: map[string]int64{}}
	defer func() {
		// Also on a panic (see prepareGuarded): an open iterator pins the
		// store's files and counts as leaked when the store closes.
		if p.it != nil {
			_ = p.it.Close()
		}
	}()
	for i, r := range reqs {
		switch {
		case r.draft != nil:
			g.results[i] = p.entry(i, r.draft)
		case r.job != nil:
			g.results[i] = p.job(r.job)
		default:
			g.results[i].err = p.ack(r.ack)
		}
	}
	if n := len(p.changed) + len(p.wallets) + len(p.stock) + len(p.jobs); n > 0 {
		g.rows = make(map[string][]byte, n)
	}
	for k, v := range p.jobs {
		g.rows[k] = v // already in the batch
	}
	for d := range p.changed {
		k, v := dayKey(d), encodeTotals(p.days[d])
		p.batch().Set(k, v, nil)
		g.rows[string(k)] = v
	}
	for card, bal := range p.wallets {
		k, v := walletKey([]byte(card)), balanceValue(bal)
		p.batch().Set(k, v, nil)
		g.rows[string(k)] = v
	}
	for drop, sold := range p.stock {
		k, v := stockKey(drop), soldValue(sold)
		p.batch().Set(k, v, nil)
		g.rows[string(k)] = v
	}
	for k, v := range g.rows {
		l.seqRows[k] = v // the batch is applied next, or the store is reopened
	}
	g.head = l.next - 1
	g.batch = p.b
	return g
}

type preparer struct {
	l        *Ledger
	g        *group
	b        *pebble.Batch
	inGroup  map[string]int    // idempotency key → index of the request that wrote it
	refunded map[uint64]uint64 // seq refunded in this group → the refund's seq
	days     map[Day]*Totals   // day totals this group has read, as they stand
	changed  map[Day]bool      // days an entry of this group was added to
	wallets  map[string]int64  // card uid → balance, for cards this group changes
	stock    map[string]int64  // drop id → units sold, for drops this group sells
	jobs     map[string][]byte // print job rows this group writes
	buf      []byte
	it       *pebble.Iterator // point lookups for this group, opened on first use
}

// lookup reads a seq-valued index row ('k', 'r'), 0 when absent. Nearly
// every idempotency key is new, so the lookup is nearly always a miss. A
// prefix seek consults each table's bloom filter, L6's included (Get skips
// L6's, and in a kiosk-sized store most tables are in L6), and answers a
// miss without reading a data block. One iterator serves the whole group:
// it sees every group applied before this one, and the entries this group
// adds are found in inGroup and refunded instead.
func (p *preparer) lookup(key []byte) (uint64, error) {
	if p.it == nil {
		it, err := p.l.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
		if err != nil {
			return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		p.it = it
	}
	if !p.it.SeekPrefixGE(key) || !bytes.Equal(p.it.Key(), key) {
		if err := p.it.Error(); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return 0, nil
	}
	v, err := p.it.ValueAndErr()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return decodeSeqValue(v)
}

func (p *preparer) batch() *pebble.Batch {
	if p.b == nil {
		p.b = p.l.db.NewBatch()
	}
	return p.b
}

func (p *preparer) ack(seq uint64) error {
	l := p.l
	if head := l.head.Load(); seq > head {
		return fmt.Errorf("%w: acknowledgement of seq %d, but the last durable entry is %d", ErrInvalid, seq, head)
	}
	if seq <= l.seqAcked {
		return nil
	}
	p.batch().Set(keyAck, seqValue(seq), nil)
	l.seqAcked, p.g.acked = seq, seq
	l.spent.forget(seq)
	return nil
}

func (p *preparer) entry(i int, d *Draft) result {
	l := p.l
	if j, ok := p.inGroup[d.IdempotencyKey]; ok {
		return replay(d, p.g.results[j].entry)
	}
	seq, err := p.lookup(idempotencyKey(d.IdempotencyKey))
	if err != nil {
		return result{err: err}
	}
	if seq != 0 {
		e, err := getEntry(l.db, seq)
		if err != nil {
			return result{err: err}
		}
		return replay(d, e)
	}
	e := Entry{
		Seq:            l.next,
		ID:             ID{Ledger: l.meta.LedgerID, Seq: l.next},
		Kind:           d.Kind,
		KioskID:        l.opts.KioskID,
		Time:           l.opts.Clock().UTC(),
		Payment:        d.Payment,
		Currency:       l.opts.Currency,
		IdempotencyKey: d.IdempotencyKey,
		Lines:          d.Lines,
		Card:           d.Card,
		Phone:          d.Phone,
		Plan:           d.Plan,
		Tendered:       d.Tendered,
	}
	if d.Kind == KindRefund {
		sale, err := p.refundable(d.RefundOf)
		if err != nil {
			return result{err: err}
		}
		e.RefundOf, e.Lines, e.Payment, e.Card = sale.Seq, sale.Lines, sale.Payment, sale.Card
	}
	t, err := p.day(l.DayOf(e.Time))
	if err != nil {
		return result{err: err}
	}
	balance, hasWallet, err := p.walletAfter(&e)
	if err != nil {
		return result{err: err}
	}
	sold, err := p.stockAfter(&e, d.Stock)
	if err != nil {
		return result{err: err}
	}
	if err := l.spendAllowed(&e, d.SpendLimit); err != nil {
		return result{err: err}
	}
	// Nothing below can fail: the entry is either wholly in the batch or not.
	b := p.batch()
	if e.Kind == KindRefund {
		b.Set(refundedKey(e.RefundOf), seqValue(e.Seq), nil)
		p.refunded[e.RefundOf] = e.Seq
	}
	p.buf = encodeEntry(p.buf[:0], &e)
	b.Set(entryKey(e.Seq), p.buf, nil)
	b.Set(idempotencyKey(e.IdempotencyKey), seqValue(e.Seq), nil)
	if d.Receipt {
		p.newJob(Job{Seq: e.Seq, State: JobQueued, Drawer: d.Drawer, Updated: e.Time})
	}
	t.add(&e)
	p.changed[t.Day] = true
	if hasWallet {
		p.wallets[string(e.Card)] = balance
	}
	for drop, n := range sold {
		p.stock[drop] = n
	}
	if l.opts.SpendLimits {
		l.spent.add(&e)
	}
	l.next++
	p.inGroup[d.IdempotencyKey] = i
	return result{entry: e}
}

// walletAfter is the card's balance once e is recorded, if e moves money on
// a wallet card. A payment the balance does not cover is refused.
func (p *preparer) walletAfter(e *Entry) (int64, bool, error) {
	var delta int64
	switch {
	case e.Kind == KindTopUp:
		delta = e.Total()
	case e.Payment != PaymentWallet:
		return 0, false, nil
	case e.Kind == KindRefund:
		delta = e.Total()
	default:
		delta = -e.Total()
	}
	bal, ok := p.wallets[string(e.Card)]
	if !ok {
		v, err := p.l.row(walletKey(e.Card), true)
		if err != nil {
			return 0, false, err
		}
		if bal, err = decodeBalance(v); err != nil {
			return 0, false, err
		}
	}
	if bal+delta < 0 {
		return 0, false, fmt.Errorf("%w: card %x holds %d, the payment is %d", ErrInsufficient, e.Card, bal, -delta)
	}
	return bal + delta, true, nil
}

// stockAfter is the units sold of each drop e's lines name once e is
// recorded. A sale past a drop's cap is refused.
func (p *preparer) stockAfter(e *Entry, caps map[string]int64) (map[string]int64, error) {
	if e.Kind == KindRefund {
		return nil, nil // refunded units are not put back on sale
	}
	var sold map[string]int64
	for _, ln := range e.Lines {
		if ln.Drop == "" {
			continue
		}
		n, ok := sold[ln.Drop]
		if !ok {
			if n, ok = p.stock[ln.Drop]; !ok {
				v, err := p.l.row(stockKey(ln.Drop), true)
				if err != nil {
					return nil, err
				}
				if n, err = decodeSold(v); err != nil {
					return nil, err
				}
			}
		}
		if left := caps[ln.Drop] - n; ln.Qty > left {
			return nil, fmt.Errorf("%w: drop %s has %d left, the entry sells %d of %s",
				ErrSoldOut, ln.Drop, max(left, 0), ln.Qty, ln.SKU)
		}
		if sold == nil {
			sold = map[string]int64{}
		}
		sold[ln.Drop] = n + ln.Qty
	}
	return sold, nil
}

// replay answers a request whose idempotency key is already recorded.
func replay(d *Draft, e Entry) result {
	if !sameRequest(d, &e) {
		return result{err: fmt.Errorf("%w: idempotency key %q was used for a different request (entry %d)",
			ErrConflict, d.IdempotencyKey, e.Seq)}
	}
	return result{entry: e}
}

// refundable fetches the entry a refund names and checks it can be refunded.
func (p *preparer) refundable(seq uint64) (Entry, error) {
	l := p.l
	if seq >= l.next {
		return Entry{}, fmt.Errorf("%w: no entry with seq %d to refund", ErrNotFound, seq)
	}
	sale, err := getEntry(l.db, seq)
	if err != nil {
		return Entry{}, err
	}
	if sale.Kind != KindSale && sale.Kind != KindSubscription {
		return Entry{}, fmt.Errorf("%w: entry %d is a %s; only sales and subscriptions are refunded", ErrInvalid, seq, sale.Kind)
	}
	by, ok := p.refunded[seq]
	if !ok {
		if by, err = p.lookup(refundedKey(seq)); err != nil {
			return Entry{}, err
		}
	}
	if by != 0 {
		return Entry{}, fmt.Errorf("%w: entry %d was already refunded by entry %d", ErrConflict, seq, by)
	}
	return sale, nil
}

// day returns the running totals of d, as this group leaves them.
func (p *preparer) day(d Day) (*Totals, error) {
	if t, ok := p.days[d]; ok {
		return t, nil
	}
	v, err := p.l.row(dayKey(d), true)
	if err != nil {
		return nil, err
	}
	t, err := decodeTotals(d, v)
	if err != nil {
		return nil, err
	}
	p.days[d] = t
	return t, nil
}

// Pebble reports unrecoverable states through Logger.Fatalf and, for a failed
// commit, carries on and returns nil if Fatalf returns. pebbleLogger turns
// Fatalf into a panic so that it can never return; the calls on the
// sequencer, syncer, open and close paths recover it into an error. Anywhere
// else (a background flush failing to write the MANIFEST) the panic ends the
// process, as Pebble intends: its in-memory state no longer matches the disk,
// and a restart is the recovery.
type pebbleLogger struct{ log zerolog.Logger }

type pebbleFatal struct{ msg string }

func (f pebbleFatal) Error() string { return "pebble: " + f.msg }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.log.Debug().Msgf(format, args...)
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.log.Error().Msgf(format, args...)
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.log.Error().Str("pebble", msg).Msg("pebble fatal")
	panic(pebbleFatal{msg})
}

// guard runs fn, turning a Pebble fatal (or any panic on a storage path)
// into an error.
func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			var f pebbleFatal
			if e, ok := r.(error); ok && errors.As(e, &f) {
				err = f
				return
			}
			err = fmt.Errorf("pebble panicked: %v", r)
		}
	}()
	return fn()
}

func applyNoSyncWait(db *pebble.DB, b *pebble.Batch) error {
	return guard(func() error { return db.ApplyNoSyncWait(b, pebble.Sync) })
}

func syncWait(b *pebble.Batch) error {
	return guard(b.SyncWait)
}

func openPebble(dir string, o *pebble.Options) (db *pebble.DB, err error) {
	err = guard(func() error {
		var err error
		db, err = pebble.Open(dir, o)
		return err
	})
	return db, err
}

func closePebble(db *pebble.DB) error {
	return guard(db.Close)
}
