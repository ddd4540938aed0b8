package ledger

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"
)

// Day is a business day, counted in days since 1970-01-01. A night market
// trades past midnight, so a business day starts at a configured time of day
// (Options.DayStart) in the kiosk's time zone, not at midnight.
type Day int32

// DayOf is the business day that t falls in, for a day that starts dayStart
// after local midnight in loc.
func DayOf(t time.Time, loc *time.Location, dayStart time.Duration) Day {
	lt := t.In(loc).Add(-dayStart)
	y, m, d := lt.Date()
	civil := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	return Day(civil.Unix() / 86400)
}

// ParseDay reads a day written as YYYY-MM-DD.
func ParseDay(s string) (Day, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, fmt.Errorf("%w: day %q is not YYYY-MM-DD", ErrInvalid, s)
	}
	return Day(t.Unix() / 86400), nil
}

func (d Day) String() string {
	return time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly)
}

// MarshalText writes the day as YYYY-MM-DD.
func (d Day) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Sum is a count of entries and their amount in minor units.
type Sum struct {
	Count  int64 `json:"count"`
	Amount int64 `json:"amount"`
}

func (s *Sum) add(o Sum) { s.Count += o.Count; s.Amount += o.Amount }

// Cell addresses one kind of entry paid one way.
type Cell struct {
	Kind    Kind
	Payment Payment
}

// Totals is what one business day took, the figures of a Z-report. It is
// kept up to date in the same atomic batch as every entry, so it is exact
// after any crash, and reading it costs one key however busy the day was.
type Totals struct {
	Day   Day
	Cells map[Cell]Sum
}

// PaymentTotals is one payment method's line on a Z-report.
type PaymentTotals struct {
	In  Sum   `json:"in"`  // sales, subscriptions and top-ups paid this way
	Out Sum   `json:"out"` // refunds given back this way
	Net int64 `json:"net"`
}

// Report is a Z-report: the day's totals in the shop's words.
type Report struct {
	Day           Day                      `json:"day"`
	Sales         Sum                      `json:"sales"`         // count and gross of goods sold
	Subscriptions Sum                      `json:"subscriptions"` // sign-ups and what they paid
	TopUps        Sum                      `json:"topups"`        // wallet credit sold for cash
	Refunds       Sum                      `json:"refunds"`       // refunds and what went back
	NetRevenue    int64                    `json:"net_revenue"`   // sales + subscriptions − refunds
	ByPayment     map[string]PaymentTotals `json:"by_payment"`
}

// Report derives the Z-report figures from the day's cells.
func (t *Totals) Report() Report {
	r := Report{Day: t.Day, ByPayment: map[string]PaymentTotals{}}
	for _, p := range Payments {
		r.ByPayment[p.String()] = PaymentTotals{}
	}
	for c, s := range t.Cells {
		pt := r.ByPayment[c.Payment.String()]
		switch c.Kind {
		case KindSale:
			r.Sales.add(s)
			pt.In.add(s)
		case KindSubscription:
			r.Subscriptions.add(s)
			pt.In.add(s)
		case KindTopUp:
			r.TopUps.add(s)
			pt.In.add(s)
		case KindRefund:
			r.Refunds.add(s)
			pt.Out.add(s)
		}
		pt.Net = pt.In.Amount - pt.Out.Amount
		r.ByPayment[c.Payment.String()] = pt
	}
	r.NetRevenue = r.Sales.Amount + r.Subscriptions.Amount - r.Refunds.Amount
	return r
}

func (t *Totals) add(e *Entry) {
	if t.Cells == nil {
		t.Cells = map[Cell]Sum{}
	}
	c := Cell{Kind: e.Kind, Payment: e.Payment}
	s := t.Cells[c]
	s.add(Sum{Count: 1, Amount: e.Total()})
	t.Cells[c] = s
}

func (t *Totals) clone() *Totals {
	c := &Totals{Day: t.Day, Cells: make(map[Cell]Sum, len(t.Cells))}
	for k, v := range t.Cells {
		c.Cells[k] = v
	}
	return c
}

// Totals value, version 1:
//
//	off  size  field
//	0    1     version = 1
//	1    ...   cell count, uvarint
//	           each cell, in (kind, payment) order:
//	             kind u8, payment u8, count uvarint, amount uvarint
func encodeTotals(t *Totals) []byte {
	cells := make([]Cell, 0, len(t.Cells))
	for c := range t.Cells {
		cells = append(cells, c)
	}
	sort.Slice(cells, func(i, j int) bool {
		if cells[i].Kind != cells[j].Kind {
			return cells[i].Kind < cells[j].Kind
		}
		return cells[i].Payment < cells[j].Payment
	})
	b := []byte{valueVersion}
	b = binary.AppendUvarint(b, uint64(len(cells)))
	for _, c := range cells {
		s := t.Cells[c]
		b = append(b, byte(c.Kind), byte(c.Payment))
		b = binary.AppendUvarint(b, uint64(s.Count))
		b = binary.AppendUvarint(b, uint64(s.Amount))
	}
	return b
}

// decodeTotals decodes a day's totals; nil (no row yet) is an empty day.
func decodeTotals(d Day, v []byte) (*Totals, error) {
	if v == nil {
		return &Totals{Day: d, Cells: map[Cell]Sum{}}, nil
	}
	if len(v) < 1 || v[0] != valueVersion {
		return nil, fmt.Errorf("%w: totals value for %s has version %x", ErrCorrupt, d, v)
	}
	r := reader{b: v[1:]}
	n := r.uvarint("totals cell count")
	if r.err == nil && n > uint64(len(r.b))/4 {
		r.fail("totals cell count")
	}
	t := &Totals{Day: d, Cells: map[Cell]Sum{}}
	for i := uint64(0); r.err == nil && i < n; i++ {
		if len(r.b) < 2 {
			r.fail("totals cell")
			break
		}
		c := Cell{Kind: Kind(r.b[0]), Payment: Payment(r.b[1])}
		r.b = r.b[2:]
		count := r.uvarint("totals count")
		amount := r.uvarint("totals amount")
		if count > 1<<62 || amount > 1<<62 {
			r.fail("totals amount")
		}
		t.Cells[c] = Sum{Count: int64(count), Amount: int64(amount)}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("totals trailing bytes")
	}
	if r.err != nil {
		return nil, fmt.Errorf("day %s: %w", d, r.err)
	}
	return t, nil
}
