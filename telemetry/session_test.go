package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/internal/mosquitto"
)

// The tests here run the session against a real Mosquitto and watch it
// with a plain paho client, as the fleet would.

// watcher is a paho client that records what arrives on a filter.
type watcher struct {
	c  paho.Client
	mu sync.Mutex
	ms []paho.Message
	ch chan paho.Message
}

func watch(t *testing.T, url, filter string) *watcher {
	t.Helper()
	w := &watcher{ch: make(chan paho.Message, 10000)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("watch-%d", time.Now().UnixNano())).
		SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
				w.mu.Lock()
				w.ms = append(w.ms, m)
				w.mu.Unlock()
				w.ch <- m
			})
		})
	w.c = paho.NewClient(o)
	if tok := w.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.c.Disconnect(0) })
	return w
}

// next waits for the next message on topic, failing the test after d.
func (w *watcher) next(t *testing.T, topic string, d time.Duration) paho.Message {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-w.ch:
			if m.Topic() == topic {
				return m
			}
		case <-deadline:
			t.Fatalf("nothing on %s within %s", topic, d)
			return nil
		}
	}
}

func (w *watcher) publish(t *testing.T, topic string, v any) {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if tok := w.c.Publish(topic, 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func openLedger(t *testing.T, n int) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(t.TempDir(), ledger.Options{KioskID: "k1", Currency: "PKR"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	appendSales(t, l, 0, n)
	return l
}

func appendSales(t *testing.T, l *ledger.Ledger, from, n int) {
	t.Helper()
	for i := range n {
		_, err := l.Append(context.Background(), ledger.Draft{Kind: ledger.KindSale, Payment: ledger.PaymentCash,
			IdempotencyKey: fmt.Sprint("sale-", from+i), Lines: []ledger.Line{{SKU: "CHAI", Name: "Chai", Qty: 1, Price: 8000}}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

type session struct {
	*Session
	cancel context.CancelFunc
	done   chan struct{}
}

func startSession(t *testing.T, o Options) *session {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{Session: s, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(ss.done); s.Run(ctx) }()
	t.Cleanup(ss.stop)
	return ss
}

func (s *session) stop() {
	s.cancel()
	<-s.done
	s.Stop(context.Background(), "test over")
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBirthStopAndBootCounter(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Options{})
	dir := t.TempDir()
	for boot := uint64(1); boot <= 2; boot++ {
		s := startSession(t, Options{Broker: b.URL(), KioskID: "k1", StateDir: dir, Version: "v1", Board: "sim"})
		waitFor(t, "connected", 5*time.Second, s.Connected)
		w := watch(t, b.URL(), "kiosk/k1/status")
		var st Status
		m := w.next(t, "kiosk/k1/status", 5*time.Second)
		if err := json.Unmarshal(m.Payload(), &st); err != nil {
			t.Fatal(err)
		}
		// The watcher subscribed after the birth: it came as retained.
		if !m.Retained() || st.State != "online" || st.Boot != boot || st.Board != "sim" {
			t.Fatalf("boot %d: status %s retained=%v", boot, m.Payload(), m.Retained())
		}
		if boot == 2 && st.LastShutdown != "stop" {
			t.Fatalf("birth after a clean stop says last_shutdown %q", st.LastShutdown)
		}
		s.cancel()
		<-s.done
		s.Stop(context.Background(), "stop")
		m = w.next(t, "kiosk/k1/status", 5*time.Second)
		if err := json.Unmarshal(m.Payload(), &st); err != nil || st.State != "offline" || st.Reason != "stop" {
			t.Fatalf("after stop: %s", m.Payload())
		}
	}
}

func TestSalesSyncMovesTheWatermarkOnlyOnTheFleetsAck(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Options{})
	l := openLedger(t, 25)
	w := watch(t, b.URL(), "kiosk/k1/#")
	s := startSession(t, Options{Broker: b.URL(), KioskID: "k1", StateDir: t.TempDir(), Ledger: l,
		BatchMax: 10, AckTimeout: 500 * time.Millisecond})
	var got []SalesBatch
	for len(got) < 3 {
		bt, err := ParseSalesBatch(w.next(t, "kiosk/k1/sales", 5*time.Second).Payload())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, bt)
	}
	if got[0].FromSeq != 1 || got[0].ToSeq != 10 || got[2].ToSeq != 25 {
		t.Fatalf("batches %d..%d, …, ..%d", got[0].FromSeq, got[0].ToSeq, got[2].ToSeq)
	}
	// The broker has PUBACKed every batch; nothing is acked yet.
	if l.Acked() != 0 {
		t.Fatalf("watermark moved to %d without an ack", l.Acked())
	}
	// With no ack, the batches come again after AckTimeout, from 1.
	if bt, _ := ParseSalesBatch(w.next(t, "kiosk/k1/sales", 5*time.Second).Payload()); bt.FromSeq != 1 {
		t.Fatalf("resend starts at %d", bt.FromSeq)
	}
	// Still no ack: the kiosk probes with that one batch again, after
	// twice the wait, rather than resend the whole window.
	probe := time.Now()
	if bt, _ := ParseSalesBatch(w.next(t, "kiosk/k1/sales", 5*time.Second).Payload()); bt.FromSeq != 1 || bt.ToSeq != 10 {
		t.Fatalf("second probe %d..%d", bt.FromSeq, bt.ToSeq)
	}
	if d := time.Since(probe); d < 900*time.Millisecond {
		t.Fatalf("second probe after %s, want about 1 s", d)
	}
	w.publish(t, "kiosk/k1/sales/ack", SalesAck{UptoSeq: 10})
	waitFor(t, "ack 10 recorded", 5*time.Second, func() bool { return l.Acked() == 10 })
	// Bad acks are refused without harm: garbage, and past the head.
	w.publish(t, "kiosk/k1/sales/ack", []byte(`{"upto_seq":"many"}`))
	w.publish(t, "kiosk/k1/sales/ack", SalesAck{UptoSeq: 999})
	w.publish(t, "kiosk/k1/sales/ack", SalesAck{UptoSeq: 25})
	waitFor(t, "ack 25 recorded", 5*time.Second, func() bool { return l.Acked() == 25 })
	// New sales go out from the watermark.
	appendSales(t, l, 25, 1)
	for {
		bt, err := ParseSalesBatch(w.next(t, "kiosk/k1/sales", 5*time.Second).Payload())
		if err != nil {
			t.Fatal(err)
		}
		if bt.FromSeq == 26 {
			break
		}
	}
	s.stop()
}

func TestBatchesAreCappedByBytes(t *testing.T) {
	l := openLedger(t, 50)
	s, err := New(Options{Broker: "tcp://127.0.0.1:1", KioskID: "k1", StateDir: t.TempDir(), Ledger: l, BatchBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	b, to, err := s.batch(1)
	if err != nil {
		t.Fatal(err)
	}
	bt, err := ParseSalesBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 4096 || to >= 50 || bt.ToSeq != to || len(bt.Entries) < 2 {
		t.Fatalf("batch of %d bytes, %d entries, to %d", len(b), len(bt.Entries), to)
	}
}

func TestCommands(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Options{})
	dir := t.TempDir()
	runs := 0
	var mu sync.Mutex
	o := Options{Broker: b.URL(), KioskID: "k1", StateDir: dir, Commands: map[string]CommandFunc{
		"count": func(context.Context, json.RawMessage) (any, error) {
			mu.Lock()
			defer mu.Unlock()
			runs++
			return map[string]int{"runs": runs}, nil
		},
		"fail": func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("printer on fire") },
	}}
	s := startSession(t, o)
	w := watch(t, b.URL(), "kiosk/k1/cmd/result")
	waitFor(t, "connected", 5*time.Second, s.Connected)
	ask := func(topic string, payload []byte) Result {
		t.Helper()
		w.publish(t, topic, payload)
		var r Result
		if err := json.Unmarshal(w.next(t, "kiosk/k1/cmd/result", 5*time.Second).Payload(), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := ask("kiosk/k1/cmd", []byte(`{"id":"c1","cmd":"count"}`))
	if !r.OK || r.ID != "c1" || r.Kiosk != "k1" || string(r.Data) != `{"runs":1}` || r.Replayed {
		t.Fatalf("first: %+v", r)
	}
	// The same id again, here and through fleet/cmd: answered from memory.
	for _, topic := range []string{"kiosk/k1/cmd", "fleet/cmd"} {
		if r := ask(topic, []byte(`{"id":"c1","cmd":"count"}`)); !r.Replayed || string(r.Data) != `{"runs":1}` {
			t.Fatalf("again on %s: %+v", topic, r)
		}
	}
	for _, c := range []struct{ payload, id, want string }{
		{`{"id":"c2","cmd":"reformat"}`, "c2", "unknown command"},
		{`{"id":"c3","cmd":"fail"}`, "c3", "printer on fire"},
		{`{"id":"c4","cmd":"count","args":[1]}`, "c4", "args must be an object"},
		{`{"id":"c5","cmd":`, "", "malformed"},
		{`{"cmd":"count"}`, "", "no id"},
		{`{"id":"c6","cmd":"config","args":{"version":1}}`, "c6", "no fleet config"},
	} {
		r := ask("kiosk/k1/cmd", []byte(c.payload))
		if r.OK || r.ID != c.id || !strings.Contains(r.Error, c.want) {
			t.Errorf("%s: %+v, want an error with %q", c.payload, r, c.want)
		}
	}
	// The memory survives a restart: a new boot still will not run c1 again.
	s.stop()
	// A command left retained is refused when the new session subscribes.
	if tok := w.c.Publish("kiosk/k1/cmd", 1, true, []byte(`{"id":"r1","cmd":"count"}`)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	s = startSession(t, o)
	var rr Result
	if err := json.Unmarshal(w.next(t, "kiosk/k1/cmd/result", 5*time.Second).Payload(), &rr); err != nil ||
		rr.ID != "r1" || rr.OK || !strings.Contains(rr.Error, "retained") {
		t.Fatalf("retained command: %+v %v", rr, err)
	}
	w.c.Publish("kiosk/k1/cmd", 1, true, []byte{}).WaitTimeout(5 * time.Second)
	waitFor(t, "reconnected", 5*time.Second, s.Connected)
	if r := ask("kiosk/k1/cmd", []byte(`{"id":"c1","cmd":"count"}`)); !r.Replayed {
		t.Fatalf("after restart: %+v", r)
	}
	if r := ask("kiosk/k1/cmd", []byte(`{"id":"c7","cmd":"count"}`)); string(r.Data) != `{"runs":2}` {
		t.Fatalf("c7: %+v", r)
	}
	if runs != 2 {
		t.Fatalf("count ran %d times, want 2", runs)
	}
}

func TestReconnectAfterBrokerRestart(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Options{})
	s := startSession(t, Options{Broker: b.URL(), KioskID: "k1", StateDir: t.TempDir()})
	waitFor(t, "connected", 5*time.Second, s.Connected)
	b.Restart(300 * time.Millisecond)
	// Backoff starts at 1 s (0.5-1 s with jitter) and doubles.
	waitFor(t, "reconnected", 15*time.Second, func() bool { return s.Connected() && s.gen.Load() >= 2 })
	w := watch(t, b.URL(), "kiosk/k1/cmd/result")
	w.publish(t, "kiosk/k1/cmd", Command{ID: "p", Cmd: "ping"})
	var r Result
	if err := json.Unmarshal(w.next(t, "kiosk/k1/cmd/result", 5*time.Second).Payload(), &r); err != nil || !r.OK {
		t.Fatalf("ping after reconnect: %+v %v", r, err)
	}
}

// TestStaleLostSignalRecovers: a "connection lost" that arrives for a
// connection that is in fact still up makes the session reconnect
// cleanly, not believe itself offline while paho stays connected.
func TestStaleLostSignalRecovers(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Options{})
	s := startSession(t, Options{Broker: b.URL(), KioskID: "k1", StateDir: t.TempDir()})
	waitFor(t, "connected", 5*time.Second, s.Connected)
	s.lost <- errors.New("stale")
	waitFor(t, "reconnected", 10*time.Second, func() bool { return s.Connected() && s.gen.Load() >= 2 })
	if !s.client.IsConnectionOpen() || s.State()["state"] != "connected" {
		t.Fatalf("session %v, paho open %v", s.State(), s.client.IsConnectionOpen())
	}
}
