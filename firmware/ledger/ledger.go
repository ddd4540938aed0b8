package ledger

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// Errors callers act on. Test with errors.Is.
var (
	// ErrInvalid: the request itself is wrong; retrying it cannot help.
	ErrInvalid = errors.New("ledger: invalid")
	// ErrNotFound: no such entry.
	ErrNotFound = errors.New("ledger: not found")
	// ErrConflict: the request clashes with what is recorded: an idempotency
	// key reused for a different request, or an entry refunded twice.
	ErrConflict = errors.New("ledger: conflict")
	// ErrUnavailable: storage failed or the ledger is closed. Nothing new is
	// accepted until it recovers. A write that got this error may or may not
	// be recorded; retrying with the same idempotency key settles it.
	ErrUnavailable = errors.New("ledger: unavailable")
	// ErrInsufficient: a wallet card's balance does not cover the payment.
	ErrInsufficient = errors.New("ledger: insufficient wallet balance")
	// ErrSoldOut: a drop has fewer units left than the entry would sell.
	ErrSoldOut = errors.New("ledger: sold out")
	// ErrLimit: a wallet payment would take the card past what it may
	// spend before the fleet has acknowledged its earlier spending.
	ErrLimit = errors.New("ledger: offline spending limit")
	// ErrNeedsRestart: the store failed in a way only a restart of the
	// process clears (Pebble wedged after a failed fsync). kioskd stops
	// petting systemd's watchdog when it sees it.
	ErrNeedsRestart = errors.New("ledger: needs a restart")
	// ErrCorrupt: something on disk cannot be decoded.
	ErrCorrupt = errors.New("ledger: corrupt")
)

// formatVersion pins Pebble's on-disk format. Pebble only ratchets the format
// when asked; pinning it means an upgrade never makes the data unreadable to
// the release an OTA rollback returns to. Raise it deliberately, one release
// after every kiosk runs a Pebble that reads it.
const formatVersion = pebble.FormatTableFormatV6

// Options configures a ledger. The zero value of every field but KioskID is
// usable.
type Options struct {
	KioskID  string           // required unless ReadOnly; stamped on every entry
	ReadOnly bool             // for tools: no writes; KioskID comes from the ledger
	Currency string           // ISO 4217; default "PKR"
	FS       vfs.FS           // default: the real filesystem
	Clock    func() time.Time // default: time.Now
	Location *time.Location   // business-day time zone; default UTC
	DayStart time.Duration    // business day starts this long after local midnight
	Logger   zerolog.Logger   // default: no logging
	Rand     io.Reader        // ledger id source; default crypto/rand
	MaxGroup int              // most requests in one group commit; default 512
	// SpendLimits keeps what each wallet card spent above the fleet's
	// watermark, which Draft.SpendLimit needs: it costs a read of the
	// outbox at open and a little memory per wallet payment until the
	// fleet acknowledges it.
	SpendLimits bool
	Tune        func(*pebble.Options) // adjusts Pebble's options (benchmarks)
}

// Ledger is the kiosk's durable record of sales, refunds, wallet top-ups and
// subscription sign-ups, on Pebble.
//
// Writes go through one sequencer goroutine, which assigns seqs, checks
// idempotency keys and refunds, and hands each group of requests to Pebble as
// one atomic batch without waiting for its fsync. A syncer goroutine waits
// for those fsyncs in order and only then answers the callers and makes the
// entries visible to readers. So concurrent checkouts share fsyncs (group
// commit), seq order is WAL order (no gap can survive a crash), and no reader
// ever sees an entry that a crash could take back.
type Ledger struct {
	opts Options
	dir  string
	log  zerolog.Logger

	mu   sync.RWMutex // guards db and meta against a reopen; readers hold it shared
	db   *pebble.DB
	meta meta

	head     atomic.Uint64         // last durable seq
	acked    atomic.Uint64         // fleet's acknowledged watermark, durable
	failure  atomic.Pointer[error] // why writes are refused; nil when healthy
	syncFrom atomic.Int64          // unix ns when the syncer began waiting; 0 when idle
	reqs     chan *request         // callers → sequencer
	groups   chan *group           // sequencer → syncer, in WAL order
	failed   chan struct{}         // syncer → sequencer: a sync failed, recover
	inflight sync.WaitGroup        // groups handed to the syncer and not yet answered
	pending  atomic.Int64          // the same, as a count the sequencer can read
	stop     chan struct{}         //
	wg       sync.WaitGroup        //
	closed   atomic.Bool           //
	durable  struct {              // derived rows (day totals, balances) as of the last synced group
		sync.Mutex
		rows map[string][]byte
	}

	// Sequencer state, owned by the sequencer goroutine.
	cause    error             // the failure being recovered from
	next     uint64            // seq the next entry gets
	seqAcked uint64            // watermark as of the last applied group
	seqRows  map[string][]byte // derived rows as of the last applied group, cached
	spent    spending          // wallet spending above the watermark
}

type request struct {
	draft *Draft // an entry to append, or
	job   *jobOp // a print job to move, or (both nil) an ack
	ack   uint64 //
	done  chan result
}

type result struct {
	entry Entry
	job   Job
	err   error
}

// group is one atomic batch and the requests it answers.
type group struct {
	batch   *pebble.Batch // nil when the group writes nothing (duplicates only)
	err     error         // set when the batch could not be handed to Pebble
	reqs    []*request
	results []result
	head    uint64            // head once this group is durable
	acked   uint64            // watermark once this group is durable
	rows    map[string][]byte // derived rows written by this group
}

// Open opens (creating if needed) the ledger in dir.
func Open(dir string, opts Options) (*Ledger, error) {
	if err := checkText("kiosk id", opts.KioskID, MaxTextLen); err != nil || (opts.KioskID == "" && !opts.ReadOnly) {
		return nil, fmt.Errorf("%w: kiosk id %q", ErrInvalid, opts.KioskID)
	}
	if opts.Currency == "" {
		opts.Currency = "PKR"
	}
	if len(opts.Currency) != currencySize {
		return nil, fmt.Errorf("%w: currency %q is not an ISO 4217 code", ErrInvalid, opts.Currency)
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.MaxGroup <= 0 {
		opts.MaxGroup = 512
	}
	l := &Ledger{
		opts:   opts,
		dir:    dir,
		log:    opts.Logger.With().Str("component", "ledger").Logger(),
		reqs:   make(chan *request),
		groups: make(chan *group, 32),
		failed: make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		return l, nil
	}
	l.wg.Add(2)
	go l.sequence()
	go l.syncLoop()
	return l, nil
}

// open opens Pebble and loads the ledger's state from it. It runs at Open and
// at every recovery, with no writer running.
func (l *Ledger) open() error {
	po := &pebble.Options{
		// Every new entry looks its idempotency key up and almost always
		// misses; bloom filters answer a miss without reading the table.
		Levels:             [7]pebble.LevelOptions{{FilterPolicy: bloom.FilterPolicy(10)}},
		CacheSize:          32 << 20,
		FS:                 l.opts.FS,
		FormatMajorVersion: formatVersion,
		Logger:             pebbleLogger{l.log},
		ReadOnly:           l.opts.ReadOnly,
		ErrorIfNotExists:   l.opts.ReadOnly,
	}
	if l.opts.Tune != nil {
		l.opts.Tune(po)
	}
	db, err := openPebble(l.dir, po)
	if err != nil {
		return fmt.Errorf("%w: open %s: %v", ErrUnavailable, l.dir, err)
	}
	m, head, acked, err := l.load(db)
	if err == nil && l.opts.SpendLimits {
		err = l.spent.rebuild(db, acked, head)
	}
	if err != nil {
		_ = closePebble(db)
		return err
	}
	l.db, l.meta = db, m
	l.head.Store(head)
	l.acked.Store(acked)
	l.next, l.seqAcked = head+1, acked
	l.seqRows = map[string][]byte{}
	l.durable.Lock()
	l.durable.rows = map[string][]byte{}
	l.durable.Unlock()
	l.log.Info().Str("dir", l.dir).Str("ledger_id", fmt.Sprintf("%016x", m.LedgerID)).
		Uint64("head", head).Uint64("acked", acked).Msg("ledger open")
	return nil
}

// load reads the meta row (creating it for a new ledger), the last seq and
// the acknowledged watermark.
func (l *Ledger) load(db *pebble.DB) (meta, uint64, uint64, error) {
	head, err := lastSeq(db)
	if err != nil {
		return meta{}, 0, 0, err
	}
	v, closer, err := db.Get(keyMeta)
	var m meta
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if head != 0 {
			return meta{}, 0, 0, fmt.Errorf("%w: %d entries but no meta row", ErrCorrupt, head)
		}
		if l.opts.ReadOnly {
			return meta{}, 0, 0, fmt.Errorf("%w: %s holds no ledger", ErrNotFound, l.dir)
		}
		var id [8]byte
		if _, err := io.ReadFull(l.opts.Rand, id[:]); err != nil {
			return meta{}, 0, 0, fmt.Errorf("ledger: drawing a ledger id: %w", err)
		}
		m = meta{LedgerID: binary.BigEndian.Uint64(id[:]), Created: l.opts.Clock(), KioskID: l.opts.KioskID}
		if err := db.Set(keyMeta, encodeMeta(m), pebble.Sync); err != nil {
			return meta{}, 0, 0, fmt.Errorf("%w: writing meta: %v", ErrUnavailable, err)
		}
	case err != nil:
		return meta{}, 0, 0, fmt.Errorf("%w: reading meta: %v", ErrUnavailable, err)
	default:
		m, err = decodeMeta(v)
		closer.Close()
		if err != nil {
			return meta{}, 0, 0, err
		}
	}
	if l.opts.ReadOnly {
		l.opts.KioskID = m.KioskID
	}
	if m.KioskID != l.opts.KioskID {
		// A kiosk may be renamed by its operator; entries carry the id they
		// were made under, and the ledger id still ties them together.
		l.log.Warn().Str("was", m.KioskID).Str("now", l.opts.KioskID).Msg("kiosk id changed; new entries carry the new id")
		m.KioskID = l.opts.KioskID
		if err := db.Set(keyMeta, encodeMeta(m), pebble.Sync); err != nil {
			return meta{}, 0, 0, fmt.Errorf("%w: writing meta: %v", ErrUnavailable, err)
		}
	}
	var acked uint64
	v, closer, err = db.Get(keyAck)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return meta{}, 0, 0, fmt.Errorf("%w: reading watermark: %v", ErrUnavailable, err)
	default:
		acked, err = decodeSeqValue(v)
		closer.Close()
		if err != nil {
			return meta{}, 0, 0, err
		}
	}
	if acked > head {
		return meta{}, 0, 0, fmt.Errorf("%w: watermark %d is past the last entry %d", ErrCorrupt, acked, head)
	}
	return m, head, acked, nil
}

// lastSeq finds the highest entry seq, or 0 for an empty ledger.
func lastSeq(db *pebble.DB) (uint64, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagEntry}, UpperBound: []byte{tagEntry + 1}})
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	seq, err := seqFromEntryKey(it.Key())
	if err != nil {
		return 0, err
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	e, err := decodeEntry(v)
	if err != nil {
		return 0, err
	}
	if e.Seq != seq {
		return 0, fmt.Errorf("%w: entry under key %d says seq %d", ErrCorrupt, seq, e.Seq)
	}
	return seq, nil
}

// Close stops the writers, answering any queued request with ErrUnavailable,
// and closes the store. It is safe to call twice.
func (l *Ledger) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	db := l.db
	l.db = nil
	l.mu.Unlock()
	if db == nil {
		return nil
	}
	return closeWithin(db, closeTimeout)
}

// Append records a draft and returns the entry once it is synced to disk.
// A draft whose idempotency key is already recorded returns the recorded
// entry, unchanged, after a restart or a crash as much as within one run.
func (l *Ledger) Append(ctx context.Context, d Draft) (Entry, error) {
	if err := d.validate(); err != nil {
		return Entry{}, err
	}
	d.Lines = append([]Line(nil), d.Lines...)
	d.Card = append([]byte(nil), d.Card...)
	return l.submit(ctx, &request{draft: &d, done: make(chan result, 1)})
}

// Ack moves the acknowledged watermark up to seq: the fleet has stored every
// entry up to and including it. A lower seq than the current watermark is a
// no-op; a seq past the last entry is an error.
func (l *Ledger) Ack(ctx context.Context, seq uint64) error {
	_, err := l.submit(ctx, &request{ack: seq, done: make(chan result, 1)})
	return err
}

func (l *Ledger) submit(ctx context.Context, r *request) (Entry, error) {
	res, err := l.submitResult(ctx, r)
	return res.entry, err
}

func (l *Ledger) submitResult(ctx context.Context, r *request) (result, error) {
	if l.opts.ReadOnly {
		return result{}, fmt.Errorf("%w: opened read-only", ErrUnavailable)
	}
	select {
	case l.reqs <- r:
	case <-l.stop:
		return result{}, fmt.Errorf("%w: closed", ErrUnavailable)
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res, res.err
	case <-ctx.Done():
		return result{}, fmt.Errorf("ledger: stopped waiting for the sync; the write may still be recorded: %w", ctx.Err())
	}
}

// Flush writes what Pebble holds in memory out to sorted tables and waits
// for it. Synced entries are durable without it (they are in the WAL); it
// spares the next open a WAL replay, and before a battery shutdown it does
// the flush's writing while there is still power for it.
func (l *Ledger) Flush() error {
	// Pebble rotates its WAL to flush; after a failed WAL sync, that path
	// can fail in a way Go cannot recover from. Recovery reopens instead.
	if err := l.Health(); err != nil {
		return err
	}
	return l.read(func(db *pebble.DB) error {
		if err := guard(db.Flush); err != nil {
			return fmt.Errorf("%w: flush: %v", ErrUnavailable, err)
		}
		return nil
	})
}

// Health is nil when the ledger takes writes, or the reason it does not.
func (l *Ledger) Health() error {
	if l.closed.Load() {
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	if p := l.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// SyncStalled is how long the syncer has been waiting on one fsync, or 0.
// A watchdog that sees this grow past its limit should stop vouching for
// the process: a storage device that never answers needs a restart.
func (l *Ledger) SyncStalled(now time.Time) time.Duration {
	from := l.syncFrom.Load()
	if from == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, from))
}

// Head is the last durable seq (0 for an empty ledger).
func (l *Ledger) Head() uint64 { return l.head.Load() }

// Acked is the fleet's acknowledged watermark.
func (l *Ledger) Acked() uint64 { return l.acked.Load() }

// OutboxLen is how many entries the fleet has not acknowledged.
func (l *Ledger) OutboxLen() uint64 {
	// Load acked first: it never passes head, so this never underflows.
	a := l.acked.Load()
	return l.head.Load() - a
}

// KioskID is the kiosk id new entries carry.
func (l *Ledger) KioskID() string { return l.opts.KioskID }

// Currency is the ISO 4217 code of the ledger's amounts.
func (l *Ledger) Currency() string { return l.opts.Currency }

// LedgerID is this ledger's random id, the first half of every entry's ID.
func (l *Ledger) LedgerID() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.meta.LedgerID
}

// read runs fn against the open store, or fails if it is being recovered.
func (l *Ledger) read(fn func(db *pebble.DB) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.db == nil {
		if err := l.Health(); err != nil {
			return err
		}
		return fmt.Errorf("%w: not open", ErrUnavailable)
	}
	return fn(l.db)
}

// Get returns the entry with the given seq.
func (l *Ledger) Get(seq uint64) (Entry, error) {
	if seq == 0 || seq > l.head.Load() {
		return Entry{}, fmt.Errorf("%w: no entry with seq %d", ErrNotFound, seq)
	}
	var e Entry
	err := l.read(func(db *pebble.DB) error {
		var err error
		e, err = getEntry(db, seq)
		return err
	})
	return e, err
}

// ByID returns the entry with the given id, if this ledger made it.
func (l *Ledger) ByID(id ID) (Entry, error) {
	if id.Ledger != l.LedgerID() {
		return Entry{}, fmt.Errorf("%w: entry %s was not recorded by this kiosk's ledger", ErrNotFound, id)
	}
	return l.Get(id.Seq)
}

// ByKey returns the entry recorded under an idempotency key.
func (l *Ledger) ByKey(key string) (Entry, error) {
	var seq uint64
	err := l.read(func(db *pebble.DB) error {
		var err error
		seq, err = getSeq(db, idempotencyKey(key))
		return err
	})
	if err != nil {
		return Entry{}, err
	}
	if seq == 0 {
		return Entry{}, fmt.Errorf("%w: no entry with idempotency key %q", ErrNotFound, key)
	}
	return l.Get(seq)
}

// RefundedBy is the seq of the refund of entry seq, or 0 while it is not
// refunded, counting only durable entries.
func (l *Ledger) RefundedBy(seq uint64) (uint64, error) {
	var by uint64
	err := l.read(func(db *pebble.DB) error {
		var err error
		by, err = getSeq(db, refundedKey(seq))
		return err
	})
	if by > l.head.Load() {
		by = 0 // being recorded, not yet durable
	}
	return by, err
}

// Range returns up to limit durable entries from seq from upwards, in seq order.
func (l *Ledger) Range(from uint64, limit int) ([]Entry, error) {
	if from == 0 {
		from = 1
	}
	head := l.head.Load()
	if from > head || limit <= 0 {
		return nil, nil
	}
	to := head
	if uint64(limit) <= to-from {
		to = from + uint64(limit) - 1
	}
	out := make([]Entry, 0, to-from+1)
	err := l.read(func(db *pebble.DB) error {
		return eachEntry(db, from, to, func(e Entry) { out = append(out, e) })
	})
	return out, err
}

// eachEntry hands fn the entries from seq from to seq to of db, in seq
// order, and fails if any between them is missing.
func eachEntry(db *pebble.DB, from, to uint64, fn func(Entry)) error {
	if from > to {
		return nil
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: entryKey(from), UpperBound: entryKey(to + 1)})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer it.Close()
	want := from
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		e, err := decodeEntry(v)
		if err != nil {
			return err
		}
		if e.Seq != want {
			return fmt.Errorf("%w: expected seq %d, found %d", ErrCorrupt, want, e.Seq)
		}
		fn(e)
		want++
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if want != to+1 {
		return fmt.Errorf("%w: entries %d to %d missing", ErrCorrupt, want, to)
	}
	return nil
}

// Outbox returns up to limit entries the fleet has not acknowledged, oldest
// first.
func (l *Ledger) Outbox(limit int) ([]Entry, error) {
	return l.Range(l.acked.Load()+1, limit)
}

// DayOf is the business day t falls in, by this ledger's time zone and day start.
func (l *Ledger) DayOf(t time.Time) Day {
	return DayOf(t, l.opts.Location, l.opts.DayStart)
}

// Today is the current business day.
func (l *Ledger) Today() Day { return l.DayOf(l.opts.Clock()) }

// DayTotals returns the totals of one business day, counting only durable
// entries.
func (l *Ledger) DayTotals(d Day) (*Totals, error) {
	v, err := l.row(dayKey(d), false)
	if err != nil {
		return nil, err
	}
	return decodeTotals(d, v)
}

// WalletBalance returns what a wallet card holds, in minor units, counting
// only durable entries.
func (l *Ledger) WalletBalance(card []byte) (int64, error) {
	if len(card) == 0 || len(card) > MaxCardLen {
		return 0, fmt.Errorf("%w: card uid of %d bytes", ErrInvalid, len(card))
	}
	v, err := l.row(walletKey(card), false)
	if err != nil {
		return 0, err
	}
	return decodeBalance(v)
}

// Sold is how many units of a drop have been sold, counting only durable
// entries.
func (l *Ledger) Sold(drop string) (int64, error) {
	v, err := l.row(stockKey(drop), false)
	if err != nil {
		return 0, err
	}
	return decodeSold(v)
}

// row reads a derived row (day totals, a wallet balance); nil means absent.
//
// Readers (seed false) get the row as of the last synced group: Pebble
// alone may already hold a value that an applied but unsynced group wrote.
// The sequencer (seed true) gets the row as Pebble holds it, every applied
// group included (cached in seqRows), and, the first time it touches a
// row, records that value for readers: no change to the row has been
// applied since the store was opened (or the caches pruned), so the value
// is durable. The syncer replaces it as changes sync.
func (l *Ledger) row(key []byte, seed bool) ([]byte, error) {
	if seed {
		if v, ok := l.seqRows[string(key)]; ok {
			return v, nil
		}
		v, err := getRow(l.db, key)
		if err != nil {
			return nil, err
		}
		l.seqRows[string(key)] = v
		l.durable.Lock()
		if _, seen := l.durable.rows[string(key)]; !seen {
			l.durable.rows[string(key)] = v
		}
		l.durable.Unlock()
		return v, nil
	}
	var v []byte
	err := l.read(func(db *pebble.DB) error {
		// The miss check and the read are one step under the lock the
		// sequencer takes to seed a row, so the sequencer cannot change the
		// row in between. (Lock order: l.mu, then durable.)
		l.durable.Lock()
		defer l.durable.Unlock()
		if cached, ok := l.durable.rows[string(key)]; ok {
			v = cached
			return nil
		}
		var err error
		v, err = getRow(db, key)
		return err
	})
	return v, err
}

func getRow(db *pebble.DB, key []byte) ([]byte, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

func getEntry(db *pebble.DB, seq uint64) (Entry, error) {
	v, closer, err := db.Get(entryKey(seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return Entry{}, fmt.Errorf("%w: no entry with seq %d", ErrNotFound, seq)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer closer.Close()
	e, err := decodeEntry(v)
	if err == nil && e.Seq != seq {
		err = fmt.Errorf("%w: entry under key %d says seq %d", ErrCorrupt, seq, e.Seq)
	}
	return e, err
}

// getSeq reads a seq-valued row; 0 means absent.
func getSeq(db *pebble.DB, key []byte) (uint64, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer closer.Close()
	return decodeSeqValue(v)
}
