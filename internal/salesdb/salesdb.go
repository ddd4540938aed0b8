// Package salesdb is the fleet's copy of every kiosk's sales, written by
// `kioskctl sales ingest` and read by `kioskctl sales report`: entries keyed
// by (kiosk, seq), so a batch sent twice is stored once, and per kiosk the
// highest seq up to which nothing is missing, which is what the ingest may
// acknowledge.
//
// A Store call is one Pebble batch, synced to disk before it returns: the
// entries and the kiosks' marks change together or not at all. After a
// failed commit the store refuses writes (ErrUnavailable); the ingest exits
// and a restart reopens it from what is on disk, like any crash.
package salesdb

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/rs/zerolog"
)

// Errors callers act on. Test with errors.Is.
var (
	// ErrInvalid: a batch is not what a kiosk sends (bad kiosk id, an entry
	// of another kiosk, mixed ledgers). Nothing of it is stored.
	ErrInvalid = errors.New("salesdb: invalid")
	// ErrConflict: a batch comes from another ledger than the one the
	// kiosk's stored entries come from (its data was wiped and it counts
	// from seq 1 again). Nothing of it is stored, and it must not be
	// acknowledged: the operator gives the kiosk a new id or moves the old
	// entries away.
	ErrConflict = errors.New("salesdb: conflict")
	// ErrUnavailable: storage failed or the store is closed or locked.
	ErrUnavailable = errors.New("salesdb: unavailable")
	// ErrCorrupt: something on disk cannot be decoded.
	ErrCorrupt = errors.New("salesdb: corrupt")
)

// formatVersion pins Pebble's on-disk format, so a newer kioskctl never
// ratchets the store past what the previous release reads.
const formatVersion = pebble.FormatTableFormatV6

// Options configures Open. The zero value is usable.
type Options struct {
	ReadOnly bool           // for reports: no writes, the store must exist
	FS       vfs.FS         // default: the real filesystem
	Logger   zerolog.Logger // default: no logging
}

// DB is an open store.
type DB struct {
	db       *pebble.DB
	readOnly bool

	mu     sync.Mutex // serialises Store; guards marks and failed
	marks  map[string]Mark
	failed error
	closed bool
}

// Open opens (creating if needed, unless read-only) the store in dir.
func Open(dir string, o Options) (*DB, error) {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	po := &pebble.Options{
		// Dedupe looks (kiosk, seq) up for entries above a gap; bloom
		// filters answer the usual miss without reading a table.
		Levels:             [7]pebble.LevelOptions{{FilterPolicy: bloom.FilterPolicy(10)}},
		CacheSize:          32 << 20,
		MemTableSize:       32 << 20,
		FS:                 o.FS,
		FormatMajorVersion: formatVersion,
		Logger:             pebbleLogger{o.Logger.With().Str("component", "salesdb").Logger()},
		ReadOnly:           o.ReadOnly,
		ErrorIfNotExists:   o.ReadOnly,
	}
	var db *pebble.DB
	err := guard(func() (err error) {
		db, err = pebble.Open(dir, po)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %v", ErrUnavailable, dir, err)
	}
	d := &DB{db: db, readOnly: o.ReadOnly, marks: map[string]Mark{}}
	if err := d.loadMarks(); err != nil {
		_ = guard(db.Close)
		return nil, err
	}
	return d, nil
}

func (d *DB) loadMarks() error {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagKiosk}, UpperBound: []byte{tagKiosk + 1}})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		kiosk := string(it.Key()[1:])
		m, err := decodeMark(kiosk, it.Value())
		if err != nil {
			_ = it.Close()
			return err
		}
		d.marks[kiosk] = m
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("%w: reading kiosk marks: %v", ErrUnavailable, err)
	}
	return nil
}

// Close closes the store. Closing twice is harmless.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if err := guard(d.db.Close); err != nil {
		return fmt.Errorf("%w: close: %v", ErrUnavailable, err)
	}
	return nil
}

// Batch is one kiosk's sales batch, as the ingest received it on
// kiosk/<Kiosk>/sales.
type Batch struct {
	Kiosk   string
	Entries []ledger.Entry
}

// Outcome is what became of one batch.
type Outcome struct {
	Kiosk      string
	Stored     int    // entries written now
	Duplicates int    // entries already held (or twice in this call)
	Contiguous uint64 // the kiosk's contiguous mark once the call returns
	Err        error  // why the batch was refused whole: ErrInvalid or ErrConflict
}

// Result sums up a Store call.
type Result struct {
	Stored, Duplicates, Refused int
	Outcomes                    []Outcome // one per batch, in order
}

// Store writes every new entry of batches and the kiosks' marks as one
// batch synced to disk. A batch that is not valid is refused whole (its
// Outcome says why) without failing the others. The error is for the store
// itself: on one, nothing of this call may be relied on, and the store
// refuses further writes.
func (d *DB) Store(batches []Batch) (Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return Result{}, fmt.Errorf("%w: closed", ErrUnavailable)
	case d.readOnly:
		return Result{}, fmt.Errorf("%w: opened read-only", ErrUnavailable)
	case d.failed != nil:
		return Result{}, d.failed
	}
	res := Result{Outcomes: make([]Outcome, len(batches))}
	type pending struct {
		mark  Mark
		added map[uint64]bool
		old   Mark // as stored before this call
	}
	touched := map[string]*pending{}
	b := d.db.NewBatch()
	defer b.Close()
	for i, bt := range batches {
		out := &res.Outcomes[i]
		out.Kiosk = bt.Kiosk
		if err := checkBatch(bt); err != nil {
			out.Err = err
			res.Refused++
			continue
		}
		p := touched[bt.Kiosk]
		if p == nil {
			m, ok := d.marks[bt.Kiosk]
			if !ok {
				m = Mark{Kiosk: bt.Kiosk}
			}
			p = &pending{mark: m, old: m, added: map[uint64]bool{}}
			touched[bt.Kiosk] = p
		}
		if lid := bt.Entries[0].ID.Ledger; p.mark.Ledger != 0 && p.mark.Ledger != lid {
			out.Err = fmt.Errorf("%w: kiosk %s sent entries of ledger %016x, the stored ones are of ledger %016x",
				ErrConflict, bt.Kiosk, lid, p.mark.Ledger)
			res.Refused++
			continue
		}
		p.mark.Ledger = bt.Entries[0].ID.Ledger
		for j := range bt.Entries {
			e := &bt.Entries[j]
			dup, err := d.held(p.old, p.added, e.Seq)
			if err != nil {
				return Result{}, err
			}
			if dup {
				out.Duplicates++
				continue
			}
			v, err := encodeEntry(e)
			if err != nil {
				// checkBatch let it through; refuse it rather than store half.
				return Result{}, err
			}
			if err := b.Set(entryKey(bt.Kiosk, e.Seq), v, nil); err != nil {
				return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			p.added[e.Seq] = true
			p.mark.Max = max(p.mark.Max, e.Seq)
			out.Stored++
		}
		res.Stored += out.Stored
		res.Duplicates += out.Duplicates
	}
	for kiosk, p := range touched {
		for {
			next := p.mark.Contiguous + 1
			held := p.added[next]
			if !held && next <= p.old.Max {
				var err error
				if held, err = d.exists(kiosk, next); err != nil {
					return Result{}, err
				}
			}
			if !held {
				break
			}
			p.mark.Contiguous = next
		}
		if p.mark != p.old {
			if err := b.Set(kioskKey(kiosk), encodeMark(p.mark), nil); err != nil {
				return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
		}
	}
	if !b.Empty() {
		if err := guard(func() error { return d.db.Apply(b, pebble.Sync) }); err != nil {
			d.failed = fmt.Errorf("%w: commit failed, restart to recover: %v", ErrUnavailable, err)
			return Result{}, d.failed
		}
	}
	for kiosk, p := range touched {
		d.marks[kiosk] = p.mark
	}
	for i := range res.Outcomes {
		if m, ok := d.marks[res.Outcomes[i].Kiosk]; ok {
			res.Outcomes[i].Contiguous = m.Contiguous
		}
	}
	return res, nil
}

// checkBatch refuses what a kiosk could not have sent.
func checkBatch(bt Batch) error {
	if err := checkKiosk(bt.Kiosk); err != nil {
		return err
	}
	if len(bt.Entries) == 0 {
		return fmt.Errorf("%w: kiosk %s: empty batch", ErrInvalid, bt.Kiosk)
	}
	lid := bt.Entries[0].ID.Ledger
	for _, e := range bt.Entries {
		switch {
		case e.KioskID != bt.Kiosk:
			return fmt.Errorf("%w: batch of kiosk %s holds entry %d of kiosk %q", ErrInvalid, bt.Kiosk, e.Seq, e.KioskID)
		case e.Seq == 0 || e.ID.Seq != e.Seq:
			return fmt.Errorf("%w: kiosk %s: entry id %s does not carry seq %d", ErrInvalid, bt.Kiosk, e.ID, e.Seq)
		case e.ID.Ledger != lid:
			return fmt.Errorf("%w: kiosk %s: batch mixes ledgers %016x and %016x", ErrInvalid, bt.Kiosk, lid, e.ID.Ledger)
		case len(e.Currency) != 3:
			return fmt.Errorf("%w: kiosk %s: entry %d: currency %q", ErrInvalid, bt.Kiosk, e.Seq, e.Currency)
		}
	}
	return nil
}

// held tells whether seq is stored already or added earlier in this call.
// old is the kiosk's mark before the call: at or below Contiguous it is
// held, above Max it is not, in between it takes a lookup.
func (d *DB) held(old Mark, added map[uint64]bool, seq uint64) (bool, error) {
	switch {
	case added[seq] || seq <= old.Contiguous:
		return true, nil
	case seq > old.Max:
		return false, nil
	}
	return d.exists(old.Kiosk, seq)
}

func (d *DB) exists(kiosk string, seq uint64) (bool, error) {
	var found bool
	err := guard(func() error {
		_, closer, err := d.db.Get(entryKey(kiosk, seq))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return closer.Close()
	})
	if err != nil {
		return false, fmt.Errorf("%w: lookup %s/%d: %v", ErrUnavailable, kiosk, seq, err)
	}
	return found, nil
}

// Contiguous is the highest seq of kiosk up to which every entry from 1 is
// stored; 0 for a kiosk never seen.
func (d *DB) Contiguous(kiosk string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.marks[kiosk].Contiguous
}

// ContiguousFrom is the highest n ≥ base such that this store holds every
// seq of kiosk in (base, n]. With base the fleet's acknowledged watermark
// (every entry up to it stored by some ingest worker), n is what this
// worker may acknowledge: workers that split a kiosk's batches between
// them still move its watermark. With base at or below the kiosk's
// contiguous mark it is the mark.
func (d *DB) ContiguousFrom(kiosk string, base uint64) (uint64, error) {
	d.mu.Lock()
	m := d.marks[kiosk]
	d.mu.Unlock()
	if base <= m.Contiguous {
		return m.Contiguous, nil
	}
	if base >= m.Max {
		return base, nil
	}
	n := base
	err := d.each(entryKey(kiosk, base+1), kioskEnd(kiosk), func(_ string, seq uint64, _ []byte) (bool, error) {
		if seq != n+1 {
			return false, nil
		}
		n = seq
		return true, nil
	})
	return n, err
}

// Marks lists every kiosk the store holds entries of, sorted by id.
func (d *DB) Marks() []Mark {
	d.mu.Lock()
	out := make([]Mark, 0, len(d.marks))
	for _, m := range d.marks {
		out = append(out, m)
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Kiosk < out[j].Kiosk })
	return out
}

// Entries returns up to limit of kiosk's stored entries from seq from on,
// in seq order (limit ≤ 0: all). Entries above a gap come after it with
// nothing in between; check the seqs.
func (d *DB) Entries(kiosk string, from uint64, limit int) ([]ledger.Entry, error) {
	if err := checkKiosk(kiosk); err != nil {
		return nil, err
	}
	var out []ledger.Entry
	err := d.each(entryKey(kiosk, max(from, 1)), kioskEnd(kiosk), func(_ string, _ uint64, v []byte) (bool, error) {
		e, err := decodeEntry(v)
		if err != nil {
			return false, err
		}
		out = append(out, e)
		return limit <= 0 || len(out) < limit, nil
	})
	return out, err
}

// each calls fn for every entry row in [lower, upper) until it returns
// false or an error.
func (d *DB) each(lower, upper []byte, fn func(kiosk string, seq uint64, v []byte) (bool, error)) error {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		kiosk, seq, err := splitEntryKey(it.Key())
		if err != nil {
			_ = it.Close()
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		more, err := fn(kiosk, seq, v)
		if err != nil {
			_ = it.Close()
			return err
		}
		if !more {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// pebbleLogger sends Pebble's logs to zerolog and turns its Fatalf into a
// panic that guard recovers into an error on the open, commit and close
// paths, so a failed fsync is an error the ingest reports, not an exit
// mid-sentence. Elsewhere (a background flush) the panic ends the process,
// as Pebble intends; a restart recovers from disk.
type pebbleLogger struct{ log zerolog.Logger }

type pebbleFatal struct{ msg string }

func (f pebbleFatal) Error() string { return "pebble: " + f.msg }

func (p pebbleLogger) Infof(format string, args ...any) { p.log.Debug().Msgf(format, args...) }

func (p pebbleLogger) Errorf(format string, args ...any) { p.log.Error().Msgf(format, args...) }

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.log.Error().Str("pebble", msg).Msg("pebble fatal")
	panic(pebbleFatal{msg})
}

// guard runs fn, turning a panic on a storage path into an error.
func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(pebbleFatal); ok {
				err = f
				return
			}
			err = fmt.Errorf("pebble panicked: %v", r)
		}
	}()
	return fn()
}
