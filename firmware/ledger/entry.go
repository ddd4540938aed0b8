package ledger

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind says what a ledger entry records.
type Kind uint8

// The entry kinds. The numbers are stored on disk; never renumber them.
const (
	KindSale         Kind = 1 // goods sold at the counter
	KindRefund       Kind = 2 // a sale or subscription given back, in full
	KindTopUp        Kind = 3 // cash taken in and credited to a wallet card
	KindSubscription Kind = 4 // a buyer signed up to a plan at the counter
)

var kindNames = map[Kind]string{
	KindSale:         "sale",
	KindRefund:       "refund",
	KindTopUp:        "topup",
	KindSubscription: "subscription",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for k, name := range kindNames {
		if name == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown entry kind %q", ErrInvalid, s)
}

// MarshalText writes the kind's name, as the HTTP API and MQTT payloads carry it.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	*k = v
	return err
}

// Payment is how the buyer paid (or, for a refund, how the money went back).
type Payment uint8

// The payment methods. The numbers are stored on disk; never renumber them.
const (
	PaymentCash   Payment = 1
	PaymentWallet Payment = 2 // a preloaded NFC wallet card
)

// Payments lists every payment method, in report order.
var Payments = []Payment{PaymentCash, PaymentWallet}

func (p Payment) String() string {
	switch p {
	case PaymentCash:
		return "cash"
	case PaymentWallet:
		return "wallet"
	}
	return "payment(" + strconv.Itoa(int(p)) + ")"
}

// ParsePayment is the inverse of Payment.String.
func ParsePayment(s string) (Payment, error) {
	for _, p := range Payments {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown payment %q (want cash or wallet)", ErrInvalid, s)
}

// MarshalText writes the payment's name.
func (p Payment) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a payment's name.
func (p *Payment) UnmarshalText(b []byte) error {
	v, err := ParsePayment(string(b))
	*p = v
	return err
}

// Line is one row of an entry: a quantity of one SKU at a unit price.
// Prices are integer minor units (paisa for PKR); never floats.
type Line struct {
	SKU   string `json:"sku"`
	Name  string `json:"name"`
	Qty   int64  `json:"qty"`
	Price int64  `json:"price"` // unit price, minor units
	// Drop is the limited drop whose stock this line's units count
	// against, "" for ordinary stock.
	Drop string `json:"drop,omitempty"`
}

// Total is Qty × Price.
func (l Line) Total() int64 { return l.Qty * l.Price }

// ID is an entry's globally unique id: the ledger's random 64-bit id, which is
// drawn once when the ledger is created, and the entry's seq. Two kiosks, or
// one kiosk before and after its data was wiped, never share a ledger id, so
// ids never collide, and an id found on a receipt leads straight to its entry.
type ID struct {
	Ledger uint64
	Seq    uint64
}

// String formats the id as 16 hex digits, a dash and the decimal seq,
// for example "9f3a2c7e01b4d855-42". It is what receipts print as a QR code.
func (id ID) String() string {
	return fmt.Sprintf("%016x-%d", id.Ledger, id.Seq)
}

// ParseID is the inverse of ID.String.
func ParseID(s string) (ID, error) {
	l, q, ok := strings.Cut(s, "-")
	if !ok || len(l) != 16 || strings.ToLower(l) != l {
		return ID{}, fmt.Errorf("%w: malformed entry id %q", ErrInvalid, s)
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], []byte(l)); err != nil {
		return ID{}, fmt.Errorf("%w: malformed entry id %q", ErrInvalid, s)
	}
	seq, err := strconv.ParseUint(q, 10, 64)
	if err != nil || seq == 0 || q[0] == '0' || q[0] == '+' {
		return ID{}, fmt.Errorf("%w: malformed entry id %q", ErrInvalid, s)
	}
	var ledger uint64
	for _, c := range b {
		ledger = ledger<<8 | uint64(c)
	}
	return ID{Ledger: ledger, Seq: seq}, nil
}

// MarshalText writes the id in its String form.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads an id in its String form.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	*id = v
	return err
}

// Entry is one durable ledger record. Entries are never rewritten.
type Entry struct {
	Seq            uint64    // per-kiosk, rises by one with no gaps, from 1
	ID             ID        // globally unique
	Kind           Kind      //
	KioskID        string    // the kiosk that recorded it
	Time           time.Time // device time when it was recorded
	Payment        Payment   //
	Currency       string    // ISO 4217, e.g. "PKR"
	IdempotencyKey string    // the caller's key; the same key always yields this entry
	Lines          []Line    // what was sold, refunded, topped up or subscribed to
	RefundOf       uint64    // Kind == KindRefund: the seq of the entry given back
	Card           []byte    // wallet card UID: wallet payments and top-ups
	Phone          string    // Kind == KindSubscription: the buyer's phone number
	Plan           string    // Kind == KindSubscription: the plan signed up to
	Tendered       int64     // cash handed over, minor units; 0 when not counted
}

// Change is the cash given back: what was tendered less the total, or 0
// when the tendered amount was not recorded.
func (e *Entry) Change() int64 {
	if e.Tendered == 0 {
		return 0
	}
	return e.Tendered - e.Total()
}

// Total is the sum of the entry's lines, in minor units. A refund's total is
// positive: the amount given back.
func (e *Entry) Total() int64 {
	var t int64
	for _, l := range e.Lines {
		t += l.Total()
	}
	return t
}

// Draft is what a caller asks the ledger to record. The ledger assigns the
// seq, id, kiosk id, time and currency.
//
// A refund names only RefundOf: its lines, payment and card are copied from
// the entry it refunds, inside the same serialised step that checks the entry
// was not refunded already.
type Draft struct {
	Kind           Kind
	Payment        Payment
	IdempotencyKey string
	Lines          []Line
	RefundOf       uint64
	Card           []byte
	Phone          string
	Plan           string
	// Receipt queues a print job for the entry in the same atomic write
	// (see Job); Drawer has the print queue open the cash drawer with it.
	// Neither is part of the entry, and a retry with the same idempotency
	// key never queues a second job.
	Receipt bool
	Drawer  bool
	// Tendered is the cash the buyer handed over, for a cash sale or
	// top-up, so the receipt shows the change; 0 when not counted.
	Tendered int64
	// Stock caps the units every entry together may sell of each drop its
	// lines name (drop id → units). A draft that would sell past a cap is
	// refused with ErrSoldOut. Refunds do not put units back.
	Stock map[string]int64
	// SpendLimit, when positive, bounds what a wallet card may spend in
	// entries the fleet has not acknowledged yet, this one included: what
	// an offline kiosk lets a card spend. Past it: ErrLimit.
	SpendLimit int64
}

// Limits on what one entry may hold. They bound memory and the encoded size,
// and catch nonsense (a quantity of 10⁹) before it reaches the disk.
const (
	MaxLines           = 100
	MaxQty             = 9999
	MaxPrice     int64 = 100_000_000_00 // 100 million rupees, in paisa
	MaxTendered        = MaxPrice
	MaxKeyLen          = 128 // idempotency key, bytes
	MaxTextLen         = 128 // sku, name, phone, plan, kiosk id, bytes
	MaxCardLen         = 10  // ISO 14443A UIDs are 4, 7 or 10 bytes
	currencySize       = 3
)

// validate checks a draft before it is queued. It never looks at the store.
func (d *Draft) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if err := checkText("idempotency key", d.IdempotencyKey, MaxKeyLen); err != nil {
		return err
	}
	if d.IdempotencyKey == "" {
		return bad("idempotency key is empty")
	}
	if _, ok := kindNames[d.Kind]; !ok {
		return bad("unknown entry kind %d", d.Kind)
	}
	if len(d.Card) > MaxCardLen {
		return bad("card uid is %d bytes, at most %d", len(d.Card), MaxCardLen)
	}
	if err := checkText("phone", d.Phone, MaxTextLen); err != nil {
		return err
	}
	if err := checkText("plan", d.Plan, MaxTextLen); err != nil {
		return err
	}
	if d.Drawer && !d.Receipt {
		return bad("the cash drawer opens with a receipt job")
	}
	if d.Kind == KindRefund {
		if d.RefundOf == 0 {
			return bad("refund names no entry")
		}
		if len(d.Lines) != 0 || d.Payment != 0 || len(d.Card) != 0 || d.Tendered != 0 {
			return bad("a refund takes its lines, payment and card from the entry it refunds")
		}
		return nil
	}
	if d.RefundOf != 0 {
		return bad("only a refund names an entry to refund")
	}
	if d.Payment != PaymentCash && d.Payment != PaymentWallet {
		return bad("unknown payment %d", d.Payment)
	}
	if d.Payment == PaymentWallet && len(d.Card) == 0 {
		return bad("a wallet payment needs the card uid")
	}
	if len(d.Lines) == 0 {
		return bad("no lines")
	}
	if len(d.Lines) > MaxLines {
		return bad("%d lines, at most %d", len(d.Lines), MaxLines)
	}
	for i, l := range d.Lines {
		if err := checkText("sku", l.SKU, MaxTextLen); err != nil {
			return err
		}
		if l.SKU == "" {
			return bad("line %d has no sku", i+1)
		}
		if err := checkText("name", l.Name, MaxTextLen); err != nil {
			return err
		}
		if l.Qty < 1 || l.Qty > MaxQty {
			return bad("line %d (%s): quantity %d is not between 1 and %d", i+1, l.SKU, l.Qty, MaxQty)
		}
		if l.Price < 0 || l.Price > MaxPrice {
			return bad("line %d (%s): price %d is not between 0 and %d", i+1, l.SKU, l.Price, MaxPrice)
		}
		if l.Drop == "" {
			continue
		}
		if err := checkText("drop", l.Drop, MaxTextLen); err != nil {
			return err
		}
		if c, ok := d.Stock[l.Drop]; !ok || c < 0 {
			return bad("line %d (%s): drop %q has no stock cap", i+1, l.SKU, l.Drop)
		}
		if d.Kind == KindTopUp {
			return bad("a top-up sells no drop")
		}
	}
	if d.Tendered != 0 {
		var total int64
		for _, l := range d.Lines {
			total += l.Total()
		}
		if d.Payment != PaymentCash || d.Tendered < total || d.Tendered > MaxTendered {
			return bad("tendered %d: only cash is tendered, and it must cover the total %d", d.Tendered, total)
		}
	}
	switch d.Kind {
	case KindTopUp:
		if len(d.Card) == 0 {
			return bad("a top-up needs the card uid")
		}
		if len(d.Lines) != 1 {
			return bad("a top-up has exactly one line, the amount credited")
		}
		if d.Payment != PaymentCash {
			return bad("a top-up is paid in cash")
		}
	case KindSubscription:
		if d.Phone == "" || d.Plan == "" {
			return bad("a subscription needs a phone number and a plan")
		}
	}
	return nil
}

// checkText bounds a string and rejects control characters and invalid UTF-8,
// which have no business on a receipt or in a topic.
func checkText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrInvalid, what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s holds a control character", ErrInvalid, what)
		}
	}
	return nil
}

// sameRequest tells whether a draft asks for what an existing entry already
// records, so a retried request with the same idempotency key is answered
// with that entry. Prices and names are not compared: the catalog may have
// changed between the first attempt and the retry, and the entry keeps what
// the buyer was actually charged.
func sameRequest(d *Draft, e *Entry) bool {
	if d.Kind != e.Kind {
		return false
	}
	if d.Kind == KindRefund {
		return d.RefundOf == e.RefundOf
	}
	if d.Payment != e.Payment || string(d.Card) != string(e.Card) ||
		d.Phone != e.Phone || d.Plan != e.Plan || len(d.Lines) != len(e.Lines) {
		return false
	}
	for i := range d.Lines {
		if d.Lines[i].SKU != e.Lines[i].SKU || d.Lines[i].Qty != e.Lines[i].Qty {
			return false
		}
	}
	if d.Kind == KindTopUp && d.Lines[0].Price != e.Lines[0].Price {
		return false // a top-up's amount is the request itself
	}
	return true
}
