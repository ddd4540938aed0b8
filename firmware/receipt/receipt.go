// Package receipt lays out what the kiosk prints: a ledger entry as an
// ESC/POS receipt for 58 mm or 80 mm paper. It only builds bytes; the print
// queue sends them.
package receipt

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/firmware/ledger"
)

// Shop is what the receipt says about the stall.
type Shop struct {
	Name    string
	Address string
	Phone   string
	// Footer lines close every receipt: thanks, return policy, a website.
	Footer []string
	// Offer, when set, is a subscription offer printed in a box under the
	// footer of sale receipts, to sign the buyer up on their next visit.
	Offer string
}

// Layout prints entries for one printer.
type Layout struct {
	Paper    escpos.Paper
	CodePage escpos.CodePage
	Shop     Shop
	Location *time.Location // the shop's time zone for the printed time; default UTC
}

// Entry lays out e's receipt. copy is the job's copy number: 0 for the
// original, n for the nth reprint, which says so at the top.
func (l Layout) Entry(e ledger.Entry, copy uint32) ([]byte, error) {
	w, loc, err := l.start()
	if err != nil {
		return nil, err
	}
	if copy > 0 {
		w.Bold(true)
		w.Line(fmt.Sprintf("*** REPRINT, COPY %d ***", copy))
		w.Bold(false)
	}
	w.Align(escpos.Left)
	w.rule()
	w.Bold(true)
	w.Line(title(e))
	w.Bold(false)
	w.pair(e.Time.In(loc).Format("02 Jan 2006 15:04"), e.KioskID)
	if e.Kind == ledger.KindRefund {
		w.Line("Refund of " + ledger.ID{Ledger: e.ID.Ledger, Seq: e.RefundOf}.String())
	}
	if e.Kind == ledger.KindSubscription {
		w.pair("Plan", e.Plan)
		w.pair("Phone", maskPhone(e.Phone))
	}
	w.rule()

	for _, ln := range e.Lines {
		if ln.Qty == 1 {
			w.pair(ln.Name, Amount(ln.Total()))
			continue
		}
		w.Line(clip(ln.Name, l.Paper.Columns))
		w.pair(fmt.Sprintf("  %d x %s", ln.Qty, Amount(ln.Price)), Amount(ln.Total()))
	}
	w.rule()

	w.Bold(true)
	w.Size(1, 2)
	total := "TOTAL"
	if e.Kind == ledger.KindRefund {
		total = "REFUNDED"
	}
	w.pair(total, Money(e.Currency, e.Total()))
	w.Size(1, 1)
	w.Bold(false)
	switch e.Payment {
	case ledger.PaymentCash:
		if e.Tendered > 0 {
			w.pair("Cash", Amount(e.Tendered))
			w.pair("Change", Amount(e.Change()))
		} else {
			w.pair("Paid", "cash")
		}
	case ledger.PaymentWallet:
		w.pair("Paid", "wallet card "+cardTail(e.Card))
	}
	if e.Kind == ledger.KindTopUp {
		w.pair("Credited to", "card "+cardTail(e.Card))
	}
	w.rule()

	// The sale id as a QR code: scanning it starts a refund or a pickup.
	w.Align(escpos.Center)
	module := 6
	if l.Paper.Dots >= escpos.Paper80.Dots {
		module = 8
	}
	if err := w.QRCode(e.ID.String(), escpos.QR{Module: module, ECC: escpos.ECCMedium}); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	w.Line(e.ID.String())
	for _, f := range l.Shop.Footer {
		for _, s := range wrap(f, l.Paper.Columns) {
			w.Line(s)
		}
	}
	if l.Shop.Offer != "" && e.Kind == ledger.KindSale {
		w.Align(escpos.Left)
		w.rule()
		w.Bold(true)
		for _, s := range wrap(l.Shop.Offer, l.Paper.Columns) {
			w.Line(s)
		}
		w.Bold(false)
		w.rule()
	}
	return w.finish()
}

// start begins a print: the printer reset, the code page, and the shop's
// name, address and phone centred on top.
func (l Layout) start() (writer, *time.Location, error) {
	if l.Paper.Columns < 24 {
		return writer{}, nil, fmt.Errorf("receipt: paper of %d columns is too narrow", l.Paper.Columns)
	}
	loc := l.Location
	if loc == nil {
		loc = time.UTC
	}
	w := writer{Encoder: escpos.NewEncoder(), cols: l.Paper.Columns}
	w.Init()
	w.SetCodePage(l.CodePage)

	w.Align(escpos.Center)
	if l.Shop.Name != "" {
		w.Bold(true)
		w.Size(2, 2)
		for _, s := range wrap(l.Shop.Name, l.Paper.Columns/2) {
			w.Line(s)
		}
		w.Size(1, 1)
		w.Bold(false)
	}
	for _, s := range []string{l.Shop.Address, l.Shop.Phone} {
		for _, s := range wrap(s, l.Paper.Columns) {
			w.Line(s)
		}
	}
	return w, loc, nil
}

// finish cuts the paper and returns the bytes.
func (w writer) finish() ([]byte, error) {
	w.Cut(false)
	if err := w.Err(); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	return w.Bytes(), nil
}

func title(e ledger.Entry) string {
	switch e.Kind {
	case ledger.KindRefund:
		return "REFUND"
	case ledger.KindTopUp:
		return "WALLET TOP-UP"
	case ledger.KindSubscription:
		return "SUBSCRIPTION"
	}
	return "SALE"
}

// writer adds the receipt's column helpers to the encoder.
type writer struct {
	*escpos.Encoder
	cols int
}

// rule draws a line across the paper.
func (w writer) rule() { w.Line(strings.Repeat("-", w.cols)) }

// pair prints left and right on one line, right aligned to the edge; the
// left side is clipped if both do not fit.
func (w writer) pair(left, right string) {
	room := w.cols - utf8.RuneCountInString(right) - 1
	left = clip(left, room)
	pad := w.cols - utf8.RuneCountInString(left) - utf8.RuneCountInString(right)
	w.Line(left + strings.Repeat(" ", max(pad, 1)) + right)
}

// clip cuts s to at most n columns.
func clip(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}

// wrap breaks s into lines of at most n columns at spaces, cutting words
// longer than a line.
func wrap(s string, n int) []string {
	var out []string
	var cur []rune
	for _, word := range strings.Fields(s) {
		wr := []rune(word)
		for len(wr) > n {
			if len(cur) > 0 {
				out, cur = append(out, string(cur)), nil
			}
			out, wr = append(out, string(wr[:n])), wr[n:]
		}
		switch {
		case len(cur) == 0:
			cur = wr
		case len(cur)+1+len(wr) <= n:
			cur = append(append(cur, ' '), wr...)
		default:
			out, cur = append(out, string(cur)), wr
		}
	}
	if len(cur) > 0 {
		out = append(out, string(cur))
	}
	return out
}

// Amount formats minor units as a decimal with two places and thousands
// separators: 123456 is "1,234.56".
func Amount(minor int64) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	units := fmt.Sprint(minor / 100)
	var b strings.Builder
	for i, c := range units {
		if i > 0 && (len(units)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return fmt.Sprintf("%s%s.%02d", sign, b.String(), minor%100)
}

// Money is Amount with the currency: "Rs 1,234.56" for rupees, as Pakistani
// shops print it, and the ISO code before the amount otherwise.
func Money(currency string, minor int64) string {
	if currency == "PKR" {
		return "Rs " + Amount(minor)
	}
	return currency + " " + Amount(minor)
}

// cardTail shows the last four hex digits of a card uid, as card slips do.
func cardTail(uid []byte) string {
	s := fmt.Sprintf("%X", uid)
	if len(s) > 4 {
		s = s[len(s)-4:]
	}
	return "..." + s
}

// maskPhone keeps the last three digits of a phone number on paper that
// leaves the stall in the buyer's pocket, or in the bin beside it.
func maskPhone(p string) string {
	r := []rune(p)
	for i := range len(r) - 3 {
		if r[i] >= '0' && r[i] <= '9' {
			r[i] = '*'
		}
	}
	return string(r)
}
