package ledger

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// spending is what each wallet card has spent in entries above the fleet's
// watermark: what the fleet has not seen yet, so what a card could have
// spent here and, from the same balance, at another kiosk. The sequencer
// adds to it and forgets what an ack covers; it is rebuilt from the
// entries whenever the store opens, so an entry a failed sync took back is
// not counted.
type spending struct {
	mu    sync.Mutex
	cards map[string][]spend
}

type spend struct {
	seq    uint64
	amount int64 // paid from the card; negative for a refund back to it
}

func (s *spending) add(e *Entry) {
	if e.Payment != PaymentWallet {
		return
	}
	amount := e.Total()
	if e.Kind == KindRefund {
		amount = -amount
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cards == nil {
		s.cards = map[string][]spend{}
	}
	s.cards[string(e.Card)] = append(s.cards[string(e.Card)], spend{e.Seq, amount})
}

// forget drops what the fleet has acknowledged: entries up to seq.
func (s *spending) forget(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for card, l := range s.cards {
		i := 0
		for i < len(l) && l[i].seq <= seq {
			i++
		}
		if i == len(l) {
			delete(s.cards, card)
		} else {
			s.cards[card] = l[i:]
		}
	}
}

func (s *spending) total(card []byte) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t int64
	for _, sp := range s.cards[string(card)] {
		t += sp.amount
	}
	return t
}

// rebuild reads the entries above acked, up to head, from db.
func (s *spending) rebuild(db *pebble.DB, acked, head uint64) error {
	s.mu.Lock()
	s.cards = nil
	s.mu.Unlock()
	return eachEntry(db, acked+1, head, func(e Entry) { s.add(&e) })
}

// spendAllowed refuses a wallet payment that takes its card past limit in
// unacknowledged spending.
func (l *Ledger) spendAllowed(e *Entry, limit int64) error {
	if limit <= 0 || e.Payment != PaymentWallet || e.Kind == KindRefund {
		return nil
	}
	if !l.opts.SpendLimits {
		return fmt.Errorf("%w: a spending limit needs a ledger opened with SpendLimits", ErrInvalid)
	}
	if spent := l.spent.total(e.Card); spent+e.Total() > limit {
		return fmt.Errorf("%w: card %x has spent %d since the fleet last synced; %d more would pass the offline limit of %d",
			ErrLimit, e.Card, max(spent, 0), e.Total(), limit)
	}
	return nil
}

// OfflineSpent is what a wallet card has spent, net of refunds to it, in
// entries the fleet has not acknowledged. It counts a payment from the
// moment it is being recorded, so it never understates.
func (l *Ledger) OfflineSpent(card []byte) int64 { return max(l.spent.total(card), 0) }
