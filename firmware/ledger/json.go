package ledger

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// entryJSON is an entry's wire form, shared by the till's HTTP API and the
// fleet's sales batches. Money is integer minor units with the currency.
type entryJSON struct {
	ID             ID         `json:"id"`
	Seq            uint64     `json:"seq"`
	Kind           Kind       `json:"kind"`
	KioskID        string     `json:"kiosk_id"`
	Time           time.Time  `json:"time"`
	Payment        Payment    `json:"payment"`
	Currency       string     `json:"currency"`
	IdempotencyKey string     `json:"idempotency_key"`
	Total          int64      `json:"total"`
	Lines          []lineJSON `json:"lines"`
	RefundOf       *ID        `json:"refund_of,omitempty"`
	Card           string     `json:"card,omitempty"` // uid, hex
	Phone          string     `json:"phone,omitempty"`
	Plan           string     `json:"plan,omitempty"`
	Tendered       int64      `json:"tendered,omitempty"` // cash handed over
	Change         int64      `json:"change,omitempty"`   // cash given back
}

type lineJSON struct {
	SKU   string `json:"sku"`
	Name  string `json:"name"`
	Qty   int64  `json:"qty"`
	Price int64  `json:"price"`
	Total int64  `json:"total"`
	Drop  string `json:"drop,omitempty"`
}

// MarshalJSON writes the entry's wire form.
func (e Entry) MarshalJSON() ([]byte, error) {
	j := entryJSON{
		ID: e.ID, Seq: e.Seq, Kind: e.Kind, KioskID: e.KioskID, Time: e.Time, Payment: e.Payment,
		Currency: e.Currency, IdempotencyKey: e.IdempotencyKey, Total: e.Total(),
		Lines: make([]lineJSON, len(e.Lines)), Card: hex.EncodeToString(e.Card), Phone: e.Phone, Plan: e.Plan,
		Tendered: e.Tendered, Change: e.Change(),
	}
	for i, l := range e.Lines {
		j.Lines[i] = lineJSON{SKU: l.SKU, Name: l.Name, Qty: l.Qty, Price: l.Price, Total: l.Total(), Drop: l.Drop}
	}
	if e.RefundOf != 0 {
		j.RefundOf = &ID{Ledger: e.ID.Ledger, Seq: e.RefundOf}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the wire form back, checking that it is whole and
// self-consistent: the id carries the seq, line totals and the total add up.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var j entryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("%w: entry: %v", ErrInvalid, err)
	}
	card, err := hex.DecodeString(j.Card)
	if err != nil || len(card) > MaxCardLen {
		return fmt.Errorf("%w: entry %d: card %q", ErrInvalid, j.Seq, j.Card)
	}
	out := Entry{
		Seq: j.Seq, ID: j.ID, Kind: j.Kind, KioskID: j.KioskID, Time: j.Time.UTC(), Payment: j.Payment,
		Currency: j.Currency, IdempotencyKey: j.IdempotencyKey, Phone: j.Phone, Plan: j.Plan,
		Tendered: j.Tendered,
	}
	if len(card) > 0 {
		out.Card = card
	}
	if j.Seq == 0 || j.ID.Seq != j.Seq {
		return fmt.Errorf("%w: entry id %s does not carry seq %d", ErrInvalid, j.ID, j.Seq)
	}
	if j.RefundOf != nil {
		if j.RefundOf.Ledger != j.ID.Ledger {
			return fmt.Errorf("%w: entry %d refunds an entry of another ledger", ErrInvalid, j.Seq)
		}
		out.RefundOf = j.RefundOf.Seq
	}
	if len(j.Lines) > MaxLines {
		return fmt.Errorf("%w: entry %d has %d lines", ErrInvalid, j.Seq, len(j.Lines))
	}
	for _, l := range j.Lines {
		if l.Qty < 1 || l.Qty > MaxQty || l.Price < 0 || l.Price > MaxPrice || l.Total != l.Qty*l.Price {
			return fmt.Errorf("%w: entry %d: line %s does not add up", ErrInvalid, j.Seq, l.SKU)
		}
		out.Lines = append(out.Lines, Line{SKU: l.SKU, Name: l.Name, Qty: l.Qty, Price: l.Price, Drop: l.Drop})
	}
	if out.Total() != j.Total {
		return fmt.Errorf("%w: entry %d: total %d, lines add up to %d", ErrInvalid, j.Seq, j.Total, out.Total())
	}
	if out.Tendered < 0 || out.Tendered > MaxTendered || (out.Tendered != 0 && out.Change() != j.Change) {
		return fmt.Errorf("%w: entry %d: tendered %d and change %d do not add up", ErrInvalid, j.Seq, j.Tendered, j.Change)
	}
	*e = out
	return nil
}
