package salesdb

import (
	"math/big"
	"sort"
	"time"

	"github.com/microretail/kioskd/firmware/ledger"
)

// Filter narrows a report. Zero fields do not filter.
type Filter struct {
	Kiosk string
	From  time.Time // entries at or after, device time
	To    time.Time // entries before
}

// Tally is a count and an amount in minor units.
type Tally struct {
	Count  int64 `json:"count"`
	Amount int64 `json:"amount"`
}

// Totals are one kiosk's figures in one currency, or (Kiosk "") the
// fleet's. Money is integer minor units.
type Totals struct {
	Kiosk    string `json:"kiosk,omitempty"`
	Currency string `json:"currency"`
	Entries  int64  `json:"entries"`
	// Revenue is sales plus subscriptions less refunds. Wallet top-ups are
	// not revenue: they are money owed to card holders until spent.
	Revenue       int64 `json:"revenue"`
	Sales         Tally `json:"sales"`
	AOV           int64 `json:"aov"` // average sale, rounded half away from zero
	Refunds       Tally `json:"refunds"`
	TopUps        Tally `json:"topups"`
	Subscriptions Tally `json:"subscriptions"`
	// RevenuePerHour is Revenue over the hours between the first and the
	// last entry, counting at least one hour.
	RevenuePerHour int64     `json:"revenue_per_hour"`
	First          time.Time `json:"first"`
	Last           time.Time `json:"last"`

	first, last int64 // unix ns
}

// Report is per kiosk (sorted by kiosk, then currency) and the fleet's
// totals per currency.
type Report struct {
	Kiosks []Totals `json:"kiosks"`
	Totals []Totals `json:"totals"`
}

func (t *Totals) add(s summary) {
	if t.Entries == 0 || s.Time < t.first {
		t.first = s.Time
	}
	if t.Entries == 0 || s.Time > t.last {
		t.last = s.Time
	}
	t.Entries++
	switch s.Kind {
	case ledger.KindSale:
		t.Sales.Count++
		t.Sales.Amount += s.Total
	case ledger.KindRefund:
		t.Refunds.Count++
		t.Refunds.Amount += s.Total
	case ledger.KindTopUp:
		t.TopUps.Count++
		t.TopUps.Amount += s.Total
	case ledger.KindSubscription:
		t.Subscriptions.Count++
		t.Subscriptions.Amount += s.Total
	}
}

func (t *Totals) merge(o *Totals) {
	if o.Entries == 0 {
		return
	}
	if t.Entries == 0 || o.first < t.first {
		t.first = o.first
	}
	if t.Entries == 0 || o.last > t.last {
		t.last = o.last
	}
	t.Entries += o.Entries
	for _, p := range [][2]*Tally{{&t.Sales, &o.Sales}, {&t.Refunds, &o.Refunds}, {&t.TopUps, &o.TopUps}, {&t.Subscriptions, &o.Subscriptions}} {
		p[0].Count += p[1].Count
		p[0].Amount += p[1].Amount
	}
}

// finish derives revenue, AOV and the hourly rate.
func (t *Totals) finish() {
	t.Revenue = t.Sales.Amount + t.Subscriptions.Amount - t.Refunds.Amount
	t.AOV = divRound(big.NewInt(t.Sales.Amount), big.NewInt(t.Sales.Count))
	span := (t.last - t.first) / int64(time.Second)
	span = max(span, int64(time.Hour/time.Second))
	// revenue × 3600 / seconds, in big integers: no overflow, no floats.
	t.RevenuePerHour = divRound(new(big.Int).Mul(big.NewInt(t.Revenue), big.NewInt(3600)), big.NewInt(span))
	t.First, t.Last = timeOf(t.first), timeOf(t.last)
}

// divRound is n/d rounded half away from zero; 0 when d is 0.
func divRound(n, d *big.Int) int64 {
	if d.Sign() == 0 {
		return 0
	}
	q, r := new(big.Int).QuoRem(n, d, new(big.Int))
	if r.Sign() != 0 && new(big.Int).Mul(new(big.Int).Abs(r), big.NewInt(2)).Cmp(new(big.Int).Abs(d)) >= 0 {
		if (n.Sign() < 0) != (d.Sign() < 0) {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return q.Int64()
}

// Report adds up the stored entries that pass f, reading only each
// entry's summary.
func (d *DB) Report(f Filter) (Report, error) {
	lower, upper := []byte{tagEntry}, []byte{tagEntry + 1}
	if f.Kiosk != "" {
		if err := checkKiosk(f.Kiosk); err != nil {
			return Report{}, err
		}
		lower, upper = entryKey(f.Kiosk, 0), kioskEnd(f.Kiosk)
	}
	var from, to int64 = 0, 0
	if !f.From.IsZero() {
		from = f.From.UnixNano()
	}
	if !f.To.IsZero() {
		to = f.To.UnixNano()
	}
	type key struct{ kiosk, currency string }
	per := map[key]*Totals{}
	err := d.each(lower, upper, func(kiosk string, _ uint64, v []byte) (bool, error) {
		s, err := decodeSummary(v)
		if err != nil {
			return false, err
		}
		if (from != 0 && s.Time < from) || (to != 0 && s.Time >= to) {
			return true, nil
		}
		k := key{kiosk, string(s.Currency[:])}
		t := per[k]
		if t == nil {
			t = &Totals{Kiosk: kiosk, Currency: k.currency}
			per[k] = t
		}
		t.add(s)
		return true, nil
	})
	if err != nil {
		return Report{}, err
	}
	rep := Report{Kiosks: make([]Totals, 0, len(per)), Totals: []Totals{}}
	fleet := map[string]*Totals{}
	for k, t := range per {
		ft := fleet[k.currency]
		if ft == nil {
			ft = &Totals{Currency: k.currency}
			fleet[k.currency] = ft
		}
		ft.merge(t)
		t.finish()
		rep.Kiosks = append(rep.Kiosks, *t)
	}
	for _, t := range fleet {
		t.finish()
		rep.Totals = append(rep.Totals, *t)
	}
	sort.Slice(rep.Kiosks, func(i, j int) bool {
		a, b := rep.Kiosks[i], rep.Kiosks[j]
		return a.Kiosk < b.Kiosk || (a.Kiosk == b.Kiosk && a.Currency < b.Currency)
	})
	sort.Slice(rep.Totals, func(i, j int) bool { return rep.Totals[i].Currency < rep.Totals[j].Currency })
	return rep, nil
}
