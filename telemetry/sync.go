package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/microretail/kioskd/firmware/ledger"
)

// inflightBatches bounds how many batches go out before the fleet
// acknowledges the first: enough to keep a link busy, few enough that a
// resend after a lost ack is small.
const inflightBatches = 8

// maxAckWait caps the backoff between probes of an ingest that does not
// answer.
const maxAckWait = 10 * time.Minute

// syncLoop sends the ledger's outbox in batches and moves the watermark
// when, and only when, the fleet's ingest acknowledges. A PUBACK only says
// the broker has the batch; an ingest that is down would lose it, so a
// batch with no ack after AckTimeout, and everything after a reconnect or
// a restart, is sent again from the watermark. The ingest dedupes by
// (kiosk, seq).
func (s *Session) syncLoop(ctx context.Context) {
	l := s.o.Ledger
	if l == nil {
		return
	}
	tick := time.NewTicker(time.Second) // new sales: the ledger's head moves
	defer tick.Stop()
	var (
		sent     uint64    // highest seq sent on this connection
		gen      uint64    // the connection that was sent on
		progress time.Time // last send from the watermark, or last ack
		wait     = s.o.AckTimeout
		probing  bool // no ack came: send one batch at a time, ever more slowly
	)
	for {
		select {
		case <-ctx.Done():
			// An ack already here is recorded before the ledger closes,
			// so the next boot does not send those sales again.
			fctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s.recordAck(fctx)
			cancel()
			return
		case <-s.wake:
		case <-tick.C:
		}
		now := s.o.Clock()
		if s.recordAck(ctx) {
			progress, wait, probing = now, s.o.AckTimeout, false
		}
		if !s.connected.Load() {
			continue
		}
		acked := l.Acked()
		if g := s.gen.Load(); g != gen {
			gen, sent, progress, wait, probing = g, acked, now, s.o.AckTimeout, false
		}
		sent = max(sent, acked)
		if sent > acked && now.Sub(progress) >= wait {
			// The ingest may be down for hours: resending the whole window
			// every AckTimeout would spend a cellular plan on nothing. Probe
			// with one batch, backing off, until an ack says it is back.
			s.log.Info().Uint64("from_seq", acked+1).Uint64("to_seq", sent).Dur("next_wait", wait).
				Msg("no ack from the fleet; sending again")
			sent, progress, probing = acked, now, true
			wait = min(2*wait, maxAckWait)
		}
		window := uint64(inflightBatches * s.o.BatchMax)
		if probing {
			window = 1
		}
		for sent < l.Head() && sent-acked < window && s.connected.Load() && ctx.Err() == nil {
			if sent == acked {
				progress = now
			}
			b, to, err := s.batch(sent + 1)
			if err != nil {
				s.log.Error().Err(err).Uint64("from_seq", sent+1).Msg("cannot read the outbox")
				break
			}
			// Publish hands the batch to the connection and returns; a
			// token already failed (not connected) means it never left.
			// Send it again next round rather than wait out the ack timeout.
			if err := s.client.Publish(Topic(s.o.KioskID, TopicSales), 1, false, b).Error(); err != nil {
				s.log.Warn().Err(err).Uint64("from_seq", sent+1).Msg("sales batch not sent")
				break
			}
			sent = to
		}
	}
}

// recordAck moves the ledger's watermark to the highest ack the fleet
// sent, durably, and reports whether it moved.
func (s *Session) recordAck(ctx context.Context) bool {
	l := s.o.Ledger
	a := s.ackMax.Load()
	if a <= l.Acked() { // route refused acks past the head
		return false
	}
	if err := l.Ack(ctx, a); err != nil {
		s.log.Warn().Err(err).Uint64("upto_seq", a).Msg("could not record the fleet's ack; will retry")
		return false
	}
	return true
}

// batch reads entries from seq from and writes them as one sales batch.
func (s *Session) batch(from uint64) ([]byte, uint64, error) {
	es, err := s.o.Ledger.Range(from, s.o.BatchMax)
	if err != nil || len(es) == 0 {
		return nil, 0, err
	}
	return EncodeBatch(es, s.o.BatchBytes)
}

// EncodeBatch writes consecutive entries as one kiosk/<id>/sales batch of
// at most maxBytes bytes (always at least one entry, however large),
// taking as many from the front of es as fit. It returns the payload and
// the last seq in it.
func EncodeBatch(es []ledger.Entry, maxBytes int) ([]byte, uint64, error) {
	if len(es) == 0 {
		return nil, 0, errors.New("telemetry: an empty sales batch")
	}
	const head = `{"from_seq":,"to_seq":,"entries":[]}`
	from := es[0].Seq
	buf := make([]byte, 0, min(maxBytes, 64<<10))
	buf = append(buf, `{"from_seq":`...)
	buf = strconv.AppendUint(buf, from, 10)
	buf = append(buf, `,"entries":[`...)
	to := from - 1
	for i, e := range es {
		j, err := json.Marshal(e)
		if err != nil {
			return nil, 0, err
		}
		if i > 0 && len(buf)+len(j)+len(head)+40 > maxBytes {
			break
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, j...)
		to = e.Seq
	}
	buf = append(buf, `],"to_seq":`...)
	buf = strconv.AppendUint(buf, to, 10)
	buf = append(buf, '}')
	return buf, to, nil
}
