package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/internal/mosquitto"
	"github.com/microretail/kioskd/telemetry"
)

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond until it holds, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// background is a kioskctl command running until stopped (watch, ingest).
type background struct {
	cancel   context.CancelFunc
	done     chan int
	out, err *syncBuffer
}

func startCLI(t *testing.T, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel, done: make(chan int, 1), out: &syncBuffer{}, err: &syncBuffer{}}
	go func() { b.done <- runContext(ctx, args, b.out, b.err) }()
	t.Cleanup(func() { b.stop(t) })
	return b
}

// stop interrupts the command and returns its exit code.
func (b *background) stop(t *testing.T) int {
	t.Helper()
	b.cancel()
	select {
	case code := <-b.done:
		b.done <- code // a second stop sees it too
		return code
	case <-time.After(15 * time.Second):
		t.Fatalf("command did not stop; stderr:\n%s", b.err.String())
		return -1
	}
}

// cli runs a command that ends by itself.
func cli(args ...string) (code int, stdout, stderr string) {
	var out, errs bytes.Buffer
	code = run(args, &out, &errs)
	return code, out.String(), errs.String()
}

func broker(t *testing.T) *mosquitto.Broker {
	t.Helper()
	return mosquitto.Start(t, mosquitto.Options{})
}

// client connects a raw paho client: a fake kiosk or a test's publisher.
func client(t *testing.T, b *mosquitto.Broker, id string, opts ...func(*mqtt.ClientOptions)) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetCleanSession(true).SetAutoReconnect(false)
	for _, f := range opts {
		f(o)
	}
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic string, retained bool, payload any) {
	t.Helper()
	var b []byte
	switch p := payload.(type) {
	case []byte:
		b = p
	case string:
		b = []byte(p)
	default:
		var err error
		if b, err = json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	}
	if tok := c.Publish(topic, 1, retained, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func subscribeTest(t *testing.T, c mqtt.Client, topic string, h mqtt.MessageHandler) {
	t.Helper()
	if tok := c.Subscribe(topic, 1, h); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
}

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// saleEntry is kiosk's entry seq: a sale of 100 rupees, or the kind asked.
func saleEntry(kiosk string, seq uint64, kind ledger.Kind, amount int64) ledger.Entry {
	e := ledger.Entry{Seq: seq, ID: ledger.ID{Ledger: 0x5eed, Seq: seq}, Kind: kind, KioskID: kiosk,
		Time: t0.Add(time.Duration(seq) * time.Minute), Payment: ledger.PaymentCash, Currency: "PKR",
		IdempotencyKey: fmt.Sprintf("%s-%d", kiosk, seq),
		Lines:          []ledger.Line{{SKU: "CHAI", Name: "Chai", Qty: 1, Price: amount}}}
	switch kind {
	case ledger.KindRefund:
		e.RefundOf = 1
	case ledger.KindTopUp:
		e.Card = []byte{1, 2, 3, 4}
	case ledger.KindSubscription:
		e.Phone, e.Plan = "03001234567", "weekly"
	}
	return e
}

// batch is kiosk's sales from..to, 100 rupees each.
func batch(kiosk string, from, to uint64) telemetry.SalesBatch {
	b := telemetry.SalesBatch{FromSeq: from, ToSeq: to}
	for s := from; s <= to; s++ {
		b.Entries = append(b.Entries, saleEntry(kiosk, s, ledger.KindSale, 10000))
	}
	return b
}

// lines splits output into non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
