package ledger

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleEntry() Entry {
	return Entry{
		Seq:            42,
		ID:             ID{Ledger: 0x0102030405060708, Seq: 42},
		Kind:           KindRefund,
		KioskID:        "k1",
		Time:           time.Unix(0, 0x1122334455667788).UTC(),
		Payment:        PaymentWallet,
		Currency:       "PKR",
		IdempotencyKey: "r1",
		Lines:          []Line{{SKU: "CHAI", Name: "Chai", Qty: 2, Price: 8000}},
		RefundOf:       7,
		Card:           []byte{0x04, 0xa2, 0x2b, 0x91},
	}
}

// TestEntryLayout pins the documented byte layout of an entry value.
func TestEntryLayout(t *testing.T) {
	e := sampleEntry()
	want := "" +
		"01" + "02" + "02" + "504b52" + // version, kind refund, payment wallet, "PKR"
		"000000000000002a" + // seq 42
		"0102030405060708" + // ledger id
		"1122334455667788" + // time, unix ns
		"02" + "6b31" + // kiosk id "k1"
		"02" + "7231" + // idempotency key "r1"
		"01" + // one line
		"04" + "43484149" + "04" + "43686169" + "02" + "c03e" + // CHAI, Chai, qty 2, price 8000
		"01" + "08" + "0000000000000007" + // tail: refund of seq 7
		"02" + "04" + "04a22b91" // tail: card uid
	body, _ := hex.DecodeString(want)
	want += fmt.Sprintf("%08x", crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))) // CRC-32C
	got := hex.EncodeToString(encodeEntry(nil, &e))
	if got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
	// Encoding appends: a buffer's earlier bytes are not part of the value.
	if withPrefix := encodeEntry([]byte("junk"), &e); hex.EncodeToString(withPrefix[4:]) != want {
		t.Fatal("encoding after a prefix differs")
	}
}

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range []Entry{
		sampleEntry(),
		{Seq: 1, ID: ID{Ledger: 1, Seq: 1}, Kind: KindSubscription, KioskID: "k", Time: time.Unix(1, 2).UTC(), Payment: PaymentCash,
			Currency: "PKR", IdempotencyKey: "x", Phone: "03001234567", Plan: "weekly",
			Lines: []Line{{SKU: "SUB", Name: "Weekly ☕", Qty: 1, Price: MaxPrice}}},
		{Seq: 2, ID: ID{Ledger: 1, Seq: 2}, Kind: KindSale, KioskID: "k", Time: time.Unix(3, 4).UTC(), Payment: PaymentCash,
			Currency: "PKR", IdempotencyKey: "y", Tendered: 50000, Lines: []Line{{SKU: "CHAI", Name: "Chai", Qty: 2, Price: 8000}}},
		{Seq: 3, ID: ID{Ledger: 1, Seq: 3}, Kind: KindSale, KioskID: "k", Time: time.Unix(5, 6).UTC(), Payment: PaymentCash,
			Currency: "PKR", IdempotencyKey: "z", Lines: []Line{{SKU: "CHAI", Name: "Chai", Qty: 1, Price: 8000},
				{SKU: "KASHMIRI", Name: "Kashmiri", Qty: 2, Price: 15000, Drop: "eid-2026"}}},
	} {
		got, err := decodeEntry(encodeEntry(nil, &e))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip\n got %+v\nwant %+v", got, e)
		}
	}
}

// TestEntryUnknownTailField: an older kioskd reads an entry a newer one
// wrote with a field it does not know.
func TestEntryUnknownTailField(t *testing.T) {
	e := sampleEntry()
	v := encodeEntry(nil, &e)
	body := append(v[:len(v)-crcSize:len(v)-crcSize], 0x7f, 0x03, 'n', 'e', 'w')
	got, err := decodeEntry(seal(body, 0))
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("with an unknown field: %+v, %v", got, err)
	}
}

func TestEntryTruncatedIsCorrupt(t *testing.T) {
	e := sampleEntry()
	v := encodeEntry(nil, &e)
	// A value cut anywhere, even between tail fields, is corrupt.
	for n := 0; n < len(v); n++ {
		if _, err := decodeEntry(v[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decoding %d of %d bytes: %v, want ErrCorrupt", n, len(v), err)
		}
	}
	// So is a flipped bit.
	for i := range v {
		w := append([]byte(nil), v...)
		w[i] ^= 0x10
		if _, err := decodeEntry(w); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bit flip at %d: %v", i, err)
		}
	}
}

func TestTotalsRoundTrip(t *testing.T) {
	tot := &Totals{Day: 20780, Cells: map[Cell]Sum{
		{KindSale, PaymentCash}:     {Count: 3, Amount: 45000},
		{KindRefund, PaymentWallet}: {Count: 1, Amount: 8000},
	}}
	v := encodeTotals(tot)
	if got := hex.EncodeToString(v); got != "0102"+"0101"+"03"+"c8df02"+"0202"+"01"+"c03e" {
		t.Fatalf("totals encoding %s", got)
	}
	back, err := decodeTotals(tot.Day, v)
	if err != nil || !reflect.DeepEqual(back, tot) {
		t.Fatalf("%+v %v", back, err)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := meta{LedgerID: 0xdeadbeefcafef00d, Created: time.Unix(0, 12345).UTC(), KioskID: "stall-7"}
	back, err := decodeMeta(encodeMeta(m))
	if err != nil || back != m {
		t.Fatalf("%+v %v", back, err)
	}
}

func TestDayText(t *testing.T) {
	d, err := ParseDay("2026-11-23")
	if err != nil || d.String() != "2026-11-23" || d != 20780 {
		t.Fatalf("%d %s %v", d, d, err)
	}
	if _, err := ParseDay("23/11/2026"); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	// 03:59 local belongs to the business day before when days start at 04:00.
	late := time.Date(2026, 11, 24, 3, 59, 0, 0, karachi)
	if got := DayOf(late, karachi, 4*time.Hour); got != d {
		t.Fatalf("DayOf(%s) = %s", late, got)
	}
	if got := DayOf(late.Add(time.Minute), karachi, 4*time.Hour); got != d+1 {
		t.Fatalf("DayOf(04:00) = %s", got)
	}
}

// FuzzDecodeEntry feeds the decoder arbitrary values, and, since random
// bytes almost never pass the checksum, the same bytes sealed with a valid
// one, so the parser behind the checksum is explored too.
func FuzzDecodeEntry(f *testing.F) {
	e := sampleEntry()
	v := encodeEntry(nil, &e)
	f.Add(v, false)
	f.Add(v[:len(v)-crcSize], true)
	f.Add([]byte{1, 1, 1, 'P', 'K', 'R'}, true)
	f.Add(bytes.Repeat([]byte{0xff}, 64), true)
	f.Fuzz(func(t *testing.T, v []byte, sealIt bool) {
		if sealIt {
			v = seal(append([]byte(nil), v...), 0)
		}
		e, err := decodeEntry(v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		again, err := decodeEntry(encodeEntry(nil, &e))
		if err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("re-encoding changed the entry: %+v vs %+v (%v)", again, e, err)
		}
	})
}

func FuzzDecodeTotals(f *testing.F) {
	f.Add(encodeTotals(&Totals{Cells: map[Cell]Sum{{KindSale, PaymentCash}: {Count: 1, Amount: 100}}}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, v []byte) {
		tot, err := decodeTotals(1, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again, err := decodeTotals(1, encodeTotals(tot))
		if err != nil || !reflect.DeepEqual(again, tot) {
			t.Fatalf("re-encoding changed the totals")
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(meta{LedgerID: 1, KioskID: "k"}))
	f.Fuzz(func(t *testing.T, v []byte) {
		if _, err := decodeMeta(v); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
		if _, err := decodeSeqValue(v); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
	})
}

func FuzzParseID(f *testing.F) {
	f.Add("9f3a2c7e01b4d855-42")
	f.Add("0000000000000000-1")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("ParseID(%q) = %v, which formats as %q", s, id, id.String())
		}
	})
}

func TestEntryJSONRoundTrip(t *testing.T) {
	e := sampleEntry()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"0102030405060708-42","seq":42,"kind":"refund","kiosk_id":"k1","time":"` +
		e.Time.Format(time.RFC3339Nano) + `","payment":"wallet","currency":"PKR","idempotency_key":"r1","total":16000,` +
		`"lines":[{"sku":"CHAI","name":"Chai","qty":2,"price":8000,"total":16000}],` +
		`"refund_of":"0102030405060708-7","card":"04a22b91"}`
	if string(b) != want {
		t.Fatalf("json\n got %s\nwant %s", b, want)
	}
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, e) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	for _, bad := range []string{
		strings.Replace(want, `"total":16000,`, `"total":16001,`, 1),
		strings.Replace(want, `"seq":42`, `"seq":43`, 1),
		strings.Replace(want, `"kind":"refund"`, `"kind":"gift"`, 1),
		strings.Replace(want, `"card":"04a22b91"`, `"card":"zz"`, 1),
		`{"seq":1}`,
		`[]`,
	} {
		if err := json.Unmarshal([]byte(bad), &back); !errors.Is(err, ErrInvalid) {
			t.Errorf("Unmarshal(%s): %v", bad, err)
		}
	}
}
