package ledger

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// The ledger's on-disk layout, in one Pebble keyspace. Every key begins with a
// one-byte table tag; integers in keys are big-endian so that Pebble's
// bytewise order is numeric order. Every value begins with a version byte.
//
//	key                               value
//	'e' seq:u64be                     entry (entryV1, below)
//	'k' idempotency key bytes         ver:u8=1 seq:u64be        the entry holding that key
//	'r' seq:u64be                     ver:u8=1 seq:u64be        entry seq → the refund of it
//	'd' day:u32be                     totals (totalsV1, totals.go)
//	'w' card uid bytes                ver:u8=1 balance:uvarint  a wallet card's balance, minor units
//	's' drop id bytes                 ver:u8=1 units:uvarint    units sold of a limited drop
//	'm' "meta"                        meta (metaV1, below)
//	'm' "ack"                         ver:u8=1 seq:u64be        the fleet's acknowledged watermark
//
// day is the business day, counted in days since 1970-01-01 (see Day).
//
// Versioning: a decoder accepts the versions it knows and returns ErrCorrupt
// for anything else. Entry values end in a tagged tail that a decoder skips
// when it does not know a tag, so adding an optional field needs no new
// version and an older kioskd, after an OTA rollback, still reads entries a
// newer one wrote.
const (
	tagEntry     = 'e'
	tagKey       = 'k'
	tagRefunded  = 'r'
	tagDay       = 'd'
	tagMeta      = 'm'
	tagWallet    = 'w'
	tagStock     = 's'
	valueVersion = 1
)

var (
	keyMeta = []byte("mmeta")
	keyAck  = []byte("mack")
)

// seqKey is the key of a row kept per entry: tag, then the seq u64be.
func seqKey(tag byte, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = tag
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func entryKey(seq uint64) []byte { return seqKey(tagEntry, seq) }

func seqFromEntryKey(k []byte) (uint64, error) {
	if len(k) != 9 || k[0] != tagEntry {
		return 0, fmt.Errorf("%w: entry key %x", ErrCorrupt, k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

func idempotencyKey(key string) []byte {
	return append([]byte{tagKey}, key...)
}

func refundedKey(seq uint64) []byte { return seqKey(tagRefunded, seq) }

func dayKey(d Day) []byte {
	k := make([]byte, 5)
	k[0] = tagDay
	binary.BigEndian.PutUint32(k[1:], uint32(d))
	return k
}

func walletKey(card []byte) []byte {
	return append([]byte{tagWallet}, card...)
}

func stockKey(drop string) []byte {
	return append([]byte{tagStock}, drop...)
}

// Units sold of a drop share the balance's value layout: a non-negative
// count.
var (
	soldValue  = balanceValue
	decodeSold = decodeBalance
)

func balanceValue(b int64) []byte {
	return binary.AppendUvarint([]byte{valueVersion}, uint64(b))
}

// decodeBalance decodes a wallet balance; nil (no row yet) is zero.
func decodeBalance(v []byte) (int64, error) {
	if v == nil {
		return 0, nil
	}
	if len(v) < 2 || v[0] != valueVersion {
		return 0, fmt.Errorf("%w: balance value %x", ErrCorrupt, v)
	}
	b, n := binary.Uvarint(v[1:])
	if n != len(v)-1 || b > 1<<62 {
		return 0, fmt.Errorf("%w: balance value %x", ErrCorrupt, v)
	}
	return int64(b), nil
}

// seqValue encodes the values of the 'k', 'r' and ack rows: ver:u8=1 seq:u64be.
func seqValue(seq uint64) []byte {
	v := make([]byte, 9)
	v[0] = valueVersion
	binary.BigEndian.PutUint64(v[1:], seq)
	return v
}

func decodeSeqValue(v []byte) (uint64, error) {
	if len(v) != 9 || v[0] != valueVersion {
		return 0, fmt.Errorf("%w: seq value %x", ErrCorrupt, v)
	}
	return binary.BigEndian.Uint64(v[1:]), nil
}

// Entry value, version 1:
//
//	off  size  field
//	0    1     version = 1
//	1    1     kind
//	2    1     payment (0 for none)
//	3    3     currency, ISO 4217 ASCII
//	6    8     seq, u64be (repeats the key, so a value read alone is whole)
//	14   8     ledger id, u64be
//	22   8     device time, unix nanoseconds, i64be
//	30   ...   kiosk id           uvarint length, bytes
//	           idempotency key    uvarint length, bytes
//	           line count         uvarint
//	           each line          sku (uvarint length, bytes), name (same),
//	                              qty uvarint, unit price uvarint (minor units)
//	           tail               zero or more of: tag u8, uvarint length, bytes
//	                                0x01 refund of: seq u64be
//	                                0x02 card uid
//	                                0x03 phone
//	                                0x04 plan
//	                                0x05 cash tendered: uvarint, minor units
//	                                0x06 drops: repeated line index uvarint,
//	                                     drop id (uvarint length, bytes)
//	end−4 4    CRC-32C (Castagnoli) of every byte before it, u32be
//
// Pebble checksums its blocks and WAL records; the CRC covers the value end
// to end, so a value cut or spliced anywhere, by a bug as much as by a
// disk, reads as corrupt rather than as a shorter entry.
const (
	entryHeaderSize = 30
	crcSize         = 4

	fieldRefundOf = 0x01
	fieldCard     = 0x02
	fieldPhone    = 0x03
	fieldPlan     = 0x04
	fieldTendered = 0x05
	fieldDrops    = 0x06
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendField(b []byte, tag byte, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// encodeEntry appends e's value encoding to b.
func encodeEntry(b []byte, e *Entry) []byte {
	start := len(b)
	var h [entryHeaderSize]byte
	h[0] = valueVersion
	h[1] = byte(e.Kind)
	h[2] = byte(e.Payment)
	copy(h[3:6], e.Currency)
	binary.BigEndian.PutUint64(h[6:], e.Seq)
	binary.BigEndian.PutUint64(h[14:], e.ID.Ledger)
	binary.BigEndian.PutUint64(h[22:], uint64(e.Time.UnixNano()))
	b = append(b, h[:]...)
	b = appendString(b, e.KioskID)
	b = appendString(b, e.IdempotencyKey)
	b = binary.AppendUvarint(b, uint64(len(e.Lines)))
	for _, l := range e.Lines {
		b = appendString(b, l.SKU)
		b = appendString(b, l.Name)
		b = binary.AppendUvarint(b, uint64(l.Qty))
		b = binary.AppendUvarint(b, uint64(l.Price))
	}
	if e.RefundOf != 0 {
		b = appendField(b, fieldRefundOf, binary.BigEndian.AppendUint64(nil, e.RefundOf))
	}
	b = appendField(b, fieldCard, e.Card)
	b = appendField(b, fieldPhone, []byte(e.Phone))
	b = appendField(b, fieldPlan, []byte(e.Plan))
	if e.Tendered != 0 {
		b = appendField(b, fieldTendered, binary.AppendUvarint(nil, uint64(e.Tendered)))
	}
	var drops []byte
	for i, l := range e.Lines {
		if l.Drop != "" {
			drops = binary.AppendUvarint(drops, uint64(i))
			drops = appendString(drops, l.Drop)
		}
	}
	b = appendField(b, fieldDrops, drops)
	return seal(b, start)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// seal appends the CRC-32C of b[start:].
func seal(b []byte, start int) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// reader walks a value. Running out of bytes mid-field is corruption: a value
// is always stored whole, so "end of data" is only ever reached between
// tail fields.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or malformed %s", ErrCorrupt, what)
	}
	r.b = nil
}

func (r *reader) uvarint(what string) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(what string, max int) []byte {
	n := r.uvarint(what)
	if r.err != nil || n > uint64(len(r.b)) || n > uint64(max) {
		r.fail(what)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// decodeEntry decodes an entry value. It never panics, whatever the input,
// and returns an error wrapping ErrCorrupt for anything it cannot read.
func decodeEntry(v []byte) (Entry, error) {
	var e Entry
	if len(v) < entryHeaderSize+crcSize {
		return e, fmt.Errorf("%w: entry value is %d bytes, shorter than its header", ErrCorrupt, len(v))
	}
	if v[0] != valueVersion {
		return e, fmt.Errorf("%w: entry value version %d", ErrCorrupt, v[0])
	}
	body := v[:len(v)-crcSize]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(v[len(body):]) {
		return e, fmt.Errorf("%w: entry value fails its checksum", ErrCorrupt)
	}
	v = body
	e.Kind = Kind(v[1])
	e.Payment = Payment(v[2])
	e.Currency = string(v[3:6])
	e.Seq = binary.BigEndian.Uint64(v[6:])
	e.ID = ID{Ledger: binary.BigEndian.Uint64(v[14:]), Seq: e.Seq}
	e.Time = time.Unix(0, int64(binary.BigEndian.Uint64(v[22:]))).UTC()
	r := reader{b: v[entryHeaderSize:]}
	e.KioskID = string(r.bytes("kiosk id", MaxTextLen))
	e.IdempotencyKey = string(r.bytes("idempotency key", MaxKeyLen))
	n := r.uvarint("line count")
	// Every line takes at least four bytes, which bounds the allocation.
	if r.err == nil && (n > MaxLines || n*4 > uint64(len(r.b))) {
		r.fail("line count")
	}
	if r.err == nil && n > 0 {
		e.Lines = make([]Line, n)
		for i := range e.Lines {
			l := &e.Lines[i]
			l.SKU = string(r.bytes("line sku", MaxTextLen))
			l.Name = string(r.bytes("line name", MaxTextLen))
			qty := r.uvarint("line qty")
			price := r.uvarint("line price")
			if qty > MaxQty || price > uint64(MaxPrice) {
				r.fail("line amount")
			}
			l.Qty, l.Price = int64(qty), int64(price)
		}
	}
	for r.err == nil && len(r.b) > 0 {
		tag := r.b[0]
		r.b = r.b[1:]
		f := r.bytes("tail field", 1<<16)
		if r.err != nil {
			break
		}
		switch tag {
		case fieldRefundOf:
			if len(f) != 8 {
				r.fail("refund-of field")
				break
			}
			e.RefundOf = binary.BigEndian.Uint64(f)
		case fieldCard:
			e.Card = append([]byte(nil), f...)
		case fieldPhone:
			e.Phone = string(f)
		case fieldPlan:
			e.Plan = string(f)
		case fieldTendered:
			t, n := binary.Uvarint(f)
			if n != len(f) || t > uint64(MaxTendered) {
				r.fail("tendered field")
				break
			}
			e.Tendered = int64(t)
		case fieldDrops:
			d := reader{b: f}
			for d.err == nil && len(d.b) > 0 {
				i := d.uvarint("drop line")
				drop := d.bytes("drop id", MaxTextLen)
				if d.err == nil && (i >= uint64(len(e.Lines)) || len(drop) == 0) {
					d.fail("drop line")
				}
				if d.err == nil {
					e.Lines[i].Drop = string(drop)
				}
			}
			if d.err != nil {
				r.fail("drops field")
			}
		}
	}
	if r.err != nil {
		return Entry{}, fmt.Errorf("entry seq %d: %w", e.Seq, r.err)
	}
	return e, nil
}

// Meta value, version 1:
//
//	off  size  field
//	0    1     version = 1
//	1    8     ledger id, u64be, drawn at random when the ledger is created
//	9    8     created, unix nanoseconds, i64be
//	17   ...   kiosk id, uvarint length, bytes (the id last opened with)
type meta struct {
	LedgerID uint64
	Created  time.Time
	KioskID  string
}

func encodeMeta(m meta) []byte {
	b := make([]byte, 17, 17+1+len(m.KioskID))
	b[0] = valueVersion
	binary.BigEndian.PutUint64(b[1:], m.LedgerID)
	binary.BigEndian.PutUint64(b[9:], uint64(m.Created.UnixNano()))
	return appendString(b, m.KioskID)
}

func decodeMeta(v []byte) (meta, error) {
	if len(v) < 17 || v[0] != valueVersion {
		return meta{}, fmt.Errorf("%w: meta value %x", ErrCorrupt, v)
	}
	m := meta{
		LedgerID: binary.BigEndian.Uint64(v[1:]),
		Created:  time.Unix(0, int64(binary.BigEndian.Uint64(v[9:]))).UTC(),
	}
	r := reader{b: v[17:]}
	m.KioskID = string(r.bytes("meta kiosk id", MaxTextLen))
	if r.err == nil && len(r.b) != 0 {
		r.fail("meta trailing bytes")
	}
	if r.err != nil {
		return meta{}, r.err
	}
	return m, nil
}
