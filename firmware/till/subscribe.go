package till

import (
	"context"
	"fmt"
	"strings"

	"github.com/microretail/kioskd/firmware/ledger"
)

// Subscription is a buyer signing up to a plan at the counter.
type Subscription struct {
	Phone    string // as typed; normalised by NormalizePhone
	Plan     string // the plan's id
	Payment  ledger.Payment
	Card     []byte // wallet payments
	Tendered int64  // cash handed over, minor units; 0 when not counted
	Key      string // idempotency key
}

// Subscribe records a sign-up, paid like a sale, as one ledger entry.
func (t *Till) Subscribe(ctx context.Context, s Subscription) (ledger.Entry, error) {
	if err := t.admit(s.Key, false); err != nil {
		return ledger.Entry{}, err
	}
	phone, err := NormalizePhone(s.Phone)
	if err != nil {
		return ledger.Entry{}, err
	}
	plan, ok := t.Catalog().Plan(s.Plan)
	if !ok {
		return ledger.Entry{}, fmt.Errorf("%w: no subscription plan %q", ErrUnknown, s.Plan)
	}
	if s.Key == "" {
		return ledger.Entry{}, fmt.Errorf("%w: a sign-up needs an idempotency_key, or a retry would sign up twice", ErrInvalid)
	}
	e, err := t.record(ctx, ledger.Draft{
		Kind: ledger.KindSubscription, Payment: s.Payment, Card: s.Card, Tendered: s.Tendered, IdempotencyKey: s.Key,
		Phone: phone, Plan: plan.ID,
		Lines:   []ledger.Line{{SKU: planSKU + plan.ID, Name: plan.Name + " (" + plan.Period + ")", Qty: 1, Price: plan.Price}},
		Receipt: t.receipt, Drawer: t.drawer && s.Payment == ledger.PaymentCash,
	})
	if err != nil {
		return ledger.Entry{}, err
	}
	t.log.Info().Uint64("seq", e.Seq).Str("plan", plan.ID).Int64("total", e.Total()).Msg("subscription")
	return e, nil
}

// NormalizePhone checks a buyer's mobile number and writes it in E.164:
// Pakistani mobiles as dialled at home (0300 1234567) or abroad (+92 300
// 1234567), or any number in international form. Spaces and dashes are
// ignored.
func NormalizePhone(s string) (string, error) {
	d := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, s)
	bad := fmt.Errorf("%w: phone number %q: want a mobile like 0300 1234567 or +92 300 1234567", ErrInvalid, s)
	intl := strings.HasPrefix(d, "+")
	d = strings.TrimPrefix(d, "+")
	for _, r := range d {
		if r < '0' || r > '9' {
			return "", bad
		}
	}
	switch {
	case !intl && len(d) == 11 && strings.HasPrefix(d, "03"):
		return "+92" + d[1:], nil
	case strings.HasPrefix(d, "92"):
		if len(d) != 12 || d[2] != '3' {
			return "", bad
		}
		return "+" + d, nil
	case intl && len(d) >= 8 && len(d) <= 15 && d[0] != '0':
		return "+" + d, nil
	}
	return "", bad
}
