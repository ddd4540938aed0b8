package receipt

import (
	"fmt"
	"slices"
	"time"

	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/firmware/ledger"
)

// ZReport lays out a business day's totals, as the operator prints them to
// close the night and keep with the cash.
func (l Layout) ZReport(r ledger.Report, kioskID, currency string, printed time.Time) ([]byte, error) {
	w, loc, err := l.start()
	if err != nil {
		return nil, err
	}
	w.Align(escpos.Left)
	w.rule()
	w.Bold(true)
	w.Line("Z-REPORT " + r.Day.String())
	w.Bold(false)
	w.pair(printed.In(loc).Format("02 Jan 2006 15:04"), kioskID)
	w.rule()
	sum := func(name string, s ledger.Sum) {
		w.pair(fmt.Sprintf("%s (%d)", name, s.Count), Amount(s.Amount))
	}
	sum("Sales", r.Sales)
	sum("Subscriptions", r.Subscriptions)
	sum("Refunds", r.Refunds)
	sum("Wallet top-ups", r.TopUps)
	w.rule()
	w.Bold(true)
	w.pair("NET REVENUE", Money(currency, r.NetRevenue))
	w.Bold(false)
	w.rule()
	pays := make([]string, 0, len(r.ByPayment))
	for p := range r.ByPayment {
		pays = append(pays, p)
	}
	slices.Sort(pays)
	for _, p := range pays {
		t := r.ByPayment[p]
		w.Bold(true)
		w.Line(payName(p))
		w.Bold(false)
		w.pair(fmt.Sprintf("  In (%d)", t.In.Count), Amount(t.In.Amount))
		w.pair(fmt.Sprintf("  Out (%d)", t.Out.Count), Amount(t.Out.Amount))
		w.pair("  Net", Amount(t.Net))
	}
	w.rule()
	w.Feed(3)
	return w.finish()
}

func payName(p string) string {
	switch p {
	case ledger.PaymentCash.String():
		return "CASH"
	case ledger.PaymentWallet.String():
		return "WALLET CARDS"
	}
	return p
}
