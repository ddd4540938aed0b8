package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/mattn/go-isatty"
	"github.com/microretail/kioskd/internal/salesdb"
	"github.com/microretail/kioskd/telemetry"
	"github.com/rs/zerolog"
)

// Ingest tuning: how much one Pebble commit takes when batches queue up.
const (
	maxCommitBatches = 64
	maxCommitEntries = 32_000
)

// ingester stores kiosks' sales batches and acknowledges them.
//
// The paho handler only queues the message. One worker takes everything
// queued (up to a commit's worth), parses it, stores it in one synced
// Pebble batch, publishes each kiosk's sales/ack with its contiguous mark,
// and only then acknowledges the MQTT messages (manual PUBACKs): a batch
// the ingest has not stored is never PUBACKed, so a crash leaves it with
// the broker, which delivers it again.
type ingester struct {
	db     *salesdb.DB
	client mqtt.Client
	log    zerolog.Logger

	mu    sync.Mutex
	queue []mqtt.Message
	wake  chan struct{} // capacity 1

	acks []mqtt.Token // sales/ack publishes not yet completed

	gapSaid map[string]time.Time // when warnGap last spoke of each kiosk

	// With --share, the fleet's acknowledged watermark per kiosk, as any
	// worker's acks on kiosk/+/sales/ack show it: every entry up to it is
	// in some worker's store. nil without --share.
	fleetMu sync.Mutex
	fleet   map[string]uint64

	// Counters, owned by the worker.
	batches, stored, duplicates, malformed, refused int64
}

func (in *ingester) handle(_ mqtt.Client, m mqtt.Message) {
	if strings.HasSuffix(m.Topic(), "/"+telemetry.TopicSalesAck) {
		in.handleAck(m)
		return
	}
	in.mu.Lock()
	in.queue = append(in.queue, m)
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// handleAck follows the acks the workers publish (this one's included).
func (in *ingester) handleAck(m mqtt.Message) {
	defer m.Ack()
	kiosk, _, ok := telemetry.SplitTopic(m.Topic())
	a, err := telemetry.ParseSalesAck(m.Payload())
	if !ok || err != nil || in.fleet == nil {
		return
	}
	in.fleetMu.Lock()
	in.fleet[kiosk] = max(in.fleet[kiosk], a.UptoSeq)
	in.fleetMu.Unlock()
}

// ackable is what this worker may acknowledge for kiosk, whose contiguous
// mark in this store is mark: with --share, also what it holds on top of
// the fleet's watermark.
func (in *ingester) ackable(kiosk string, mark uint64) (uint64, error) {
	if in.fleet == nil {
		return mark, nil
	}
	in.fleetMu.Lock()
	base := in.fleet[kiosk]
	in.fleetMu.Unlock()
	if base <= mark {
		return mark, nil
	}
	return in.db.ContiguousFrom(kiosk, base)
}

// take removes up to a commit's worth of queued messages.
func (in *ingester) take() []mqtt.Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	n, bytes := 0, 0
	for n < len(in.queue) && n < maxCommitBatches && bytes < maxCommitEntries*200 {
		bytes += len(in.queue[n].Payload())
		n++
	}
	out := append([]mqtt.Message(nil), in.queue[:n]...)
	in.queue = in.queue[n:]
	if len(in.queue) == 0 {
		in.queue = nil
	}
	return out
}

// process stores one group of messages and acknowledges them. An error is
// the store failing; nothing of the group is acknowledged then.
func (in *ingester) process(msgs []mqtt.Message) error {
	var batches []salesdb.Batch
	for _, m := range msgs {
		kiosk, suffix, ok := telemetry.SplitTopic(m.Topic())
		if !ok || suffix != telemetry.TopicSales {
			in.log.Warn().Str("topic", m.Topic()).Msg("not a sales topic, skipped")
			in.malformed++
			continue
		}
		b, err := telemetry.ParseSalesBatch(m.Payload())
		if err != nil {
			in.log.Warn().Str("kiosk", kiosk).Err(err).Msg("malformed sales batch, skipped")
			in.malformed++
			continue
		}
		if got := b.Entries[0].KioskID; got != kiosk {
			in.log.Warn().Str("kiosk", kiosk).Str("entries_of", got).Msg("sales batch of another kiosk, refused")
			in.refused++
			continue
		}
		batches = append(batches, salesdb.Batch{Kiosk: kiosk, Entries: b.Entries})
	}
	if len(batches) > 0 {
		res, err := in.db.Store(batches)
		if err != nil {
			return err
		}
		marks := map[string]uint64{}
		var order []string
		for _, o := range res.Outcomes {
			if o.Err != nil {
				in.log.Warn().Str("kiosk", o.Kiosk).Err(o.Err).Msg("sales batch refused")
				in.refused++
				continue
			}
			if _, seen := marks[o.Kiosk]; !seen {
				order = append(order, o.Kiosk)
			}
			marks[o.Kiosk] = o.Contiguous
		}
		in.batches += int64(len(batches))
		in.stored += int64(res.Stored)
		in.duplicates += int64(res.Duplicates)
		for _, k := range order {
			upto, err := in.ackable(k, marks[k])
			if err != nil {
				return err
			}
			if in.fleet == nil {
				in.warnGap(k, upto, batches)
			}
			// A kiosk with nothing to acknowledge yet (its first batch was
			// lost, or is with another worker) gets no ack: it resends.
			if upto == 0 {
				continue
			}
			ack, _ := json.Marshal(telemetry.SalesAck{UptoSeq: upto})
			in.acks = append(in.acks, in.client.Publish(telemetry.Topic(k, telemetry.TopicSalesAck), 1, false, ack))
		}
	}
	for _, m := range msgs {
		m.Ack()
	}
	in.reap()
	return nil
}

// warnGap says, loudly, when a kiosk sends from a seq past what this store
// holds without a gap. Once is a lost batch, which the kiosk sends again;
// repeated, the kiosk's earlier sales were acknowledged to another store
// (a new or lost --data): a kiosk resends only from its own watermark, so
// they never come, and this ingest never acknowledges it again.
func (in *ingester) warnGap(kiosk string, upto uint64, batches []salesdb.Batch) {
	for _, b := range batches {
		if b.Kiosk != kiosk || len(b.Entries) == 0 || b.Entries[0].Seq <= upto+1 {
			continue
		}
		if last, ok := in.gapSaid[kiosk]; ok && time.Since(last) < time.Minute {
			return // a lost batch shows in every batch behind it; say it once a minute
		}
		if in.gapSaid == nil {
			in.gapSaid = map[string]time.Time{}
		}
		in.gapSaid[kiosk] = time.Now()
		in.log.Error().Str("kiosk", kiosk).Uint64("stored_upto", upto).Uint64("kiosk_sends_from", b.Entries[0].Seq).
			Msg("gap: the kiosk sends past what this store holds; a lost batch comes again, but if this repeats, its earlier sales were acknowledged to another store and it is not acknowledged here until they are imported")
		return
	}
}

// reap drops completed ack publishes, logging failures.
func (in *ingester) reap() {
	keep := in.acks[:0]
	for _, t := range in.acks {
		select {
		case <-t.Done():
			if err := t.Error(); err != nil {
				in.log.Warn().Err(err).Msg("publishing a sales ack failed; the kiosk will resend and be acked again")
			}
		default:
			keep = append(keep, t)
		}
	}
	in.acks = keep
}

func (in *ingester) stats(e *zerolog.Event) *zerolog.Event {
	return e.Int("kiosks", len(in.db.Marks())).Int64("batches", in.batches).Int64("stored", in.stored).
		Int64("duplicates", in.duplicates).Int64("malformed", in.malformed).Int64("refused", in.refused)
}

func ingest(ctx context.Context, g *globals, args []string) int {
	fs := g.flags("sales ingest")
	data := fs.String("data", "", "store the sales in `dir`")
	share := fs.String("share", "", "split kiosk/+/sales with other workers through $share/`GROUP`/")
	clientID := fs.String("client-id", "", "MQTT client `id` (default kioskctl-ingest, or kioskctl-ingest-GROUP-HOST with --share)")
	every := fs.Int("log-every", 100, "log progress every `N` batches")
	pos, ok := g.parse(fs, args)
	if !ok {
		return 2
	}
	switch {
	case len(pos) > 0:
		fmt.Fprintf(g.stderr, "kioskctl sales ingest: unexpected argument %q\n", pos[0])
		return 2
	case *data == "":
		fmt.Fprintln(g.stderr, "kioskctl sales ingest: --data is required")
		return 2
	case *share != "" && !validKioskID(*share):
		fmt.Fprintf(g.stderr, "kioskctl sales ingest: bad --share group %q\n", *share)
		return 2
	case *every <= 0:
		fmt.Fprintln(g.stderr, "kioskctl sales ingest: --log-every must be positive")
		return 2
	}
	id := *clientID
	if id == "" {
		id = "kioskctl-ingest"
		if *share != "" {
			host, _ := os.Hostname()
			id = "kioskctl-ingest-" + *share + "-" + host
		}
	}
	topic := telemetry.Topic("+", telemetry.TopicSales)
	if *share != "" {
		topic = "$share/" + *share + "/" + topic
	}
	log := ingestLogger(g)

	db, err := salesdb.Open(*data, salesdb.Options{Logger: log})
	if err != nil {
		return g.fail("%v (is another ingest using %s?)", err, *data)
	}
	defer db.Close()
	in := &ingester{db: db, log: log, wake: make(chan struct{}, 1)}
	if *share != "" {
		in.fleet = map[string]uint64{}
	}
	c, err := g.connect(ctx, session{clientID: id, clean: false, manual: true,
		onConnect: func(c mqtt.Client) {
			// The session is persistent, but a broker that lost it (a
			// restart without persistence) needs the subscription again.
			if err := subscribe(ctx, c, in.handle, topic); err != nil {
				log.Error().Err(err).Msg("subscribe failed")
				return
			}
			if in.fleet != nil {
				// Not shared: every worker sees every ack.
				if err := subscribeQoS(ctx, c, in.handle, 0, telemetry.Topic("+", telemetry.TopicSalesAck)); err != nil {
					log.Error().Err(err).Msg("subscribe failed")
					return
				}
			}
			log.Info().Str("topic", topic).Msg("subscribed")
		},
		onLost:   func(err error) { log.Warn().Err(err).Msg("connection lost, reconnecting") },
		fallback: in.handle,
	})
	if err != nil {
		return g.fail("%v", err)
	}
	in.client = c
	log.Info().Str("broker", g.broker).Str("client_id", id).Str("data", *data).Msg("ingest running")

	code := in.run(ctx, *every)
	// Let the last acks out before saying goodbye.
	deadline := time.Now().Add(2 * time.Second)
	for _, t := range in.acks {
		t.WaitTimeout(time.Until(deadline))
	}
	in.reap()
	c.Disconnect(500)
	in.stats(log.Info()).Msg("ingest stopped")
	if err := db.Close(); err != nil {
		log.Error().Err(err).Msg("closing the store")
		return 1
	}
	return code
}

// run is the worker: it stores what is queued until ctx ends, finishing
// the group in hand.
func (in *ingester) run(ctx context.Context, every int) int {
	next := int64(every)
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-in.wake:
		}
		for ctx.Err() == nil {
			msgs := in.take()
			if len(msgs) == 0 {
				break
			}
			if err := in.process(msgs); err != nil {
				in.log.Error().Err(err).Msg("storing sales failed; stopping (the broker keeps what was not stored)")
				return 1
			}
			if in.batches >= next {
				in.stats(in.log.Info()).Msg("ingest progress")
				for next <= in.batches {
					next += int64(every)
				}
			}
		}
	}
}

// ingestLogger logs to stderr: human-readable on a terminal, JSON lines
// otherwise.
func ingestLogger(g *globals) zerolog.Logger {
	w := g.stderr
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: f, NoColor: os.Getenv("NO_COLOR") != "", TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(zerolog.InfoLevel).With().Timestamp().Str("component", "ingest").Logger()
}

func report(g *globals, args []string) int {
	fs := g.flags("sales report")
	data := fs.String("data", "", "the ingest's data `dir`")
	from := fs.String("from", "", "entries at or after `T`")
	to := fs.String("to", "", "entries before `T`")
	kiosk := fs.String("kiosk", "", "one kiosk's figures only")
	pos, ok := g.parse(fs, args)
	if !ok {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(g.stderr, "kioskctl sales report: unexpected argument %q\n", pos[0])
		return 2
	}
	if *data == "" {
		fmt.Fprintln(g.stderr, "kioskctl sales report: --data is required")
		return 2
	}
	var f salesdb.Filter
	var err error
	if f.From, err = parseTime(*from); err != nil {
		fmt.Fprintf(g.stderr, "kioskctl sales report: --from: %v\n", err)
		return 2
	}
	if f.To, err = parseTime(*to); err != nil {
		fmt.Fprintf(g.stderr, "kioskctl sales report: --to: %v\n", err)
		return 2
	}
	if *kiosk != "" && !validKioskID(*kiosk) {
		fmt.Fprintf(g.stderr, "kioskctl sales report: bad kiosk id %q\n", *kiosk)
		return 2
	}
	f.Kiosk = *kiosk
	db, err := salesdb.Open(*data, salesdb.Options{ReadOnly: true})
	if err != nil {
		return g.fail("%v\n(is the ingest still running on it? stop it, or report on a copy)", err)
	}
	defer db.Close()
	rep, err := db.Report(f)
	if err != nil {
		return g.fail("%v", err)
	}
	if g.json {
		if err := writeJSON(g.stdout, rep); err != nil {
			return g.fail("%v", err)
		}
		return 0
	}
	tw := newTable(g.stdout)
	fmt.Fprintln(tw, "KIOSK\tCUR\tREVENUE\tSALES\tAOV\tREFUNDS\tREVENUE/H\tTOP-UPS\tSUBSCRIPTIONS\tFIRST\tLAST")
	row := func(t salesdb.Totals, name string) {
		tally := func(x salesdb.Tally) string { return fmt.Sprintf("%d / %s", x.Count, money(x.Amount)) }
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, t.Currency, money(t.Revenue), tally(t.Sales),
			money(t.AOV), tally(t.Refunds), money(t.RevenuePerHour), tally(t.TopUps), tally(t.Subscriptions),
			t.First.Local().Format("2006-01-02 15:04"), t.Last.Local().Format("2006-01-02 15:04"))
	}
	for _, t := range rep.Kiosks {
		row(t, t.Kiosk)
	}
	for _, t := range rep.Totals {
		row(t, "TOTAL")
	}
	tw.Flush()
	if len(rep.Kiosks) == 0 {
		fmt.Fprintln(g.stdout, "no entries")
	}
	fmt.Fprintln(g.stdout, "revenue = sales + subscriptions - refunds; top-ups are owed to card holders, not revenue; counts / amounts")
	return 0
}

// parseTime reads RFC 3339, or a local date with an optional time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New(strings.TrimSpace(fmt.Sprintf("%q is not RFC 3339 or YYYY-MM-DD[THH:MM]", s)))
}
