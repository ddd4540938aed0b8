package salesdb

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/microretail/kioskd/firmware/ledger"
)

// The store's on-disk layout, in one Pebble keyspace. Every key begins with a
// one-byte table tag; integers are big-endian so that Pebble's bytewise order
// is numeric order. Every value begins with a version byte.
//
//	key                                value
//	'e' kiosk 0x00 seq:u64be           entry (entryV1, below)
//	'k' kiosk                          ver:u8=1 ledger:u64be contiguous:u64be max:u64be
//
// A kiosk id holds no byte below 0x20 (checkKiosk), so the 0x00 after it
// ends it unambiguously and sorts "k1" before "k1x": one kiosk's entries are
// one contiguous key range, in seq order.
//
// entryV1, 22 bytes of summary then the entry's wire JSON:
//
//	offset size
//	0      1    version = 1
//	1      1    kind (ledger.Kind)
//	2      8    device time, unix nanoseconds, i64be
//	10     8    total, minor units, i64be (a refund's total is what was given back)
//	18     3    currency, ISO 4217
//	21     1    payment (ledger.Payment)
//	22     …    the entry as ledger.Entry marshals it (the sales wire form)
//
// Report reads only the summary; Entries decodes the JSON. The kiosk row
// says which ledger the kiosk's entries come from (a kiosk whose data was
// wiped starts a new ledger at seq 1 again, which must not pass for a
// duplicate), the highest seq up to which every entry from 1 is held (what
// the ingest acknowledges), and the highest seq held at all, so a batch
// above it needs no lookup to know it is new.
const (
	tagEntry     = 'e'
	tagKiosk     = 'k'
	valueVersion = 1
	summarySize  = 22
	kioskRowSize = 25
)

// maxKiosk bounds a kiosk id, as the ledger bounds the one it stamps.
const maxKiosk = ledger.MaxTextLen

// checkKiosk refuses kiosk ids that could not have come from a topic or
// that would break the key layout.
func checkKiosk(id string) error {
	if id == "" || len(id) > maxKiosk || !utf8.ValidString(id) {
		return fmt.Errorf("%w: kiosk id %q", ErrInvalid, id)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r == '/' || r == '+' || r == '#' {
			return fmt.Errorf("%w: kiosk id %q holds %q", ErrInvalid, id, r)
		}
	}
	return nil
}

func entryKey(kiosk string, seq uint64) []byte {
	k := make([]byte, 0, len(kiosk)+10)
	k = append(k, tagEntry)
	k = append(k, kiosk...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// kioskEnd is the first key after every entry of kiosk.
func kioskEnd(kiosk string) []byte {
	k := make([]byte, 0, len(kiosk)+2)
	k = append(k, tagEntry)
	k = append(k, kiosk...)
	return append(k, 1)
}

// splitEntryKey is the inverse of entryKey.
func splitEntryKey(k []byte) (string, uint64, error) {
	if len(k) < 11 || k[0] != tagEntry || k[len(k)-9] != 0 {
		return "", 0, fmt.Errorf("%w: entry key %x", ErrCorrupt, k)
	}
	return string(k[1 : len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:]), nil
}

func kioskKey(kiosk string) []byte { return append([]byte{tagKiosk}, kiosk...) }

// Mark is what the store knows of one kiosk.
type Mark struct {
	Kiosk string `json:"kiosk"`
	// Ledger is the id of the kiosk ledger its entries come from.
	Ledger uint64 `json:"ledger"`
	// Contiguous is the highest seq up to which every entry from 1 is
	// held: what the ingest acknowledges.
	Contiguous uint64 `json:"contiguous"`
	// Max is the highest seq held. Above Contiguous there is a gap.
	Max uint64 `json:"max"`
}

func encodeMark(m Mark) []byte {
	v := make([]byte, 1, kioskRowSize)
	v[0] = valueVersion
	v = binary.BigEndian.AppendUint64(v, m.Ledger)
	v = binary.BigEndian.AppendUint64(v, m.Contiguous)
	return binary.BigEndian.AppendUint64(v, m.Max)
}

func decodeMark(kiosk string, v []byte) (Mark, error) {
	if len(v) != kioskRowSize || v[0] != valueVersion {
		return Mark{}, fmt.Errorf("%w: kiosk row %q: %d bytes, version %v", ErrCorrupt, kiosk, len(v), v[:min(len(v), 1)])
	}
	m := Mark{Kiosk: kiosk, Ledger: binary.BigEndian.Uint64(v[1:]), Contiguous: binary.BigEndian.Uint64(v[9:]),
		Max: binary.BigEndian.Uint64(v[17:])}
	if m.Contiguous > m.Max {
		return Mark{}, fmt.Errorf("%w: kiosk row %q: contiguous %d above max %d", ErrCorrupt, kiosk, m.Contiguous, m.Max)
	}
	return m, nil
}

// summary is the fixed head of an entry value: what a report needs.
type summary struct {
	Kind     ledger.Kind
	Payment  ledger.Payment
	Time     int64 // unix ns
	Total    int64
	Currency [3]byte
}

func encodeEntry(e *ledger.Entry) ([]byte, error) {
	if len(e.Currency) != 3 {
		return nil, fmt.Errorf("%w: entry %d: currency %q", ErrInvalid, e.Seq, e.Currency)
	}
	wire, err := e.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("%w: entry %d: %v", ErrInvalid, e.Seq, err)
	}
	v := make([]byte, summarySize, summarySize+len(wire))
	v[0] = valueVersion
	v[1] = byte(e.Kind)
	binary.BigEndian.PutUint64(v[2:], uint64(e.Time.UnixNano()))
	binary.BigEndian.PutUint64(v[10:], uint64(e.Total()))
	copy(v[18:21], e.Currency)
	v[21] = byte(e.Payment)
	return append(v, wire...), nil
}

func decodeSummary(v []byte) (summary, error) {
	if len(v) < summarySize || v[0] != valueVersion {
		return summary{}, fmt.Errorf("%w: entry value of %d bytes, version %v", ErrCorrupt, len(v), v[:min(len(v), 1)])
	}
	s := summary{Kind: ledger.Kind(v[1]), Payment: ledger.Payment(v[21]),
		Time: int64(binary.BigEndian.Uint64(v[2:])), Total: int64(binary.BigEndian.Uint64(v[10:]))}
	copy(s.Currency[:], v[18:21])
	return s, nil
}

func decodeEntry(v []byte) (ledger.Entry, error) {
	var e ledger.Entry
	if _, err := decodeSummary(v); err != nil {
		return e, err
	}
	if err := e.UnmarshalJSON(v[summarySize:]); err != nil {
		return e, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return e, nil
}

// timeOf is the inverse of the summary's time field.
func timeOf(ns int64) time.Time { return time.Unix(0, ns).UTC() }
