// Package cards turns the NFC reader's polls into card taps. A wallet card
// held to the reader is one tap, however long it stays in the field; it
// taps again only after it has left the field. Each tap is published as a
// card_tap event carrying the card's UID, which the till pays or tops up.
package cards

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/drivers/pn532"
	"github.com/microretail/kioskd/firmware/devices"
	"github.com/microretail/kioskd/firmware/events"
)

// Tap is a card entering the reader's field.
type Tap struct {
	UID     string    `json:"uid"` // hex, 4, 7 or 10 bytes
	SensRes uint16    `json:"atqa"`
	SelRes  byte      `json:"sak"`
	Time    time.Time `json:"ts"`
}

// Options configures a Reader.
type Options struct {
	Logger zerolog.Logger
	Events *events.Hub // may be nil
	Clock  func() time.Time
	// Gone is how many empty polls in a row mean the card has left the
	// field (default 2): one missed poll in a wobbly hand is not a
	// removal, so the same card is not tapped twice.
	Gone int
}

// Reader follows the card in the field. It is safe for concurrent use.
type Reader struct {
	opts Options
	log  zerolog.Logger

	mu    sync.Mutex
	inNow []byte // UID of the card in the field, nil if none
	empty int    // empty polls in a row
	last  *Tap
}

// NewReader returns a reader with no card in its field.
func NewReader(opts Options) *Reader {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Gone <= 0 {
		opts.Gone = 2
	}
	return &Reader{opts: opts, log: opts.Logger.With().Str("component", "cards").Logger()}
}

// Last returns the most recent tap.
func (r *Reader) Last() (Tap, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return Tap{}, false
	}
	return *r.last, true
}

// Seen records the result of one poll: the target found, or none. It
// returns the tap when the poll is a new card entering the field.
func (r *Reader) Seen(t *pn532.Target) (Tap, bool) {
	r.mu.Lock()
	if t == nil {
		if r.empty++; r.empty >= r.opts.Gone {
			r.inNow = nil
		}
		r.mu.Unlock()
		return Tap{}, false
	}
	r.empty = 0
	if bytes.Equal(r.inNow, t.UID) {
		r.mu.Unlock()
		return Tap{}, false
	}
	r.inNow = append([]byte(nil), t.UID...)
	tap := Tap{UID: hex.EncodeToString(t.UID), SensRes: t.SensRes, SelRes: t.SelRes, Time: r.opts.Clock()}
	r.last = &tap
	r.mu.Unlock()
	r.log.Info().Str("uid", tap.UID).Msg("card tap")
	if r.opts.Events != nil {
		r.opts.Events.Publish(events.CardTap, tap)
	}
	return tap, true
}

// Device supervises the reader chip. open finds it; every poll is one step.
func (r *Reader) Device(open func(context.Context) (*pn532.Dev, error)) *devices.Chip[*pn532.Dev] {
	return &devices.Chip[*pn532.Dev]{
		OpenFunc: open,
		StepFunc: func(ctx context.Context, d *pn532.Dev) error {
			t, err := d.Poll(ctx)
			switch {
			case errors.Is(err, pn532.ErrNoCard):
				r.Seen(nil)
				return nil
			case errors.Is(err, pn532.ErrTimeout), errors.Is(err, pn532.ErrTargetLost):
				// A brownout put the chip back to waiting for a card for
				// ever, or forgot the card it had selected: set it up
				// again now rather than after three failed polls.
				if ierr := d.Init(); ierr != nil {
					return errors.Join(err, ierr)
				}
				return err
			case err != nil:
				return err
			}
			r.Seen(&t)
			// Leave the card selected no longer than the poll needs; the
			// next poll finds it again while it stays in the field.
			return d.Release(t.Tg)
		},
		// The card in the field is kept when the reader closes: a reader
		// that blips offline and back must not tap a card still resting on
		// it a second time. Only empty polls take the card away.
	}
}
