package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/telemetry"
)

// saleLines are a typical counter sale: two lines, as the ledger's own
// benchmarks sell.
var saleLines = []ledger.Line{{SKU: "CHAI", Name: "Doodh patti chai", Qty: 2, Price: 8000}, {SKU: "SAMOSA", Name: "Aloo samosa", Qty: 3, Price: 5000}}

// keys makes idempotency keys unique across the whole run.
var keys atomic.Uint64

func sale(kiosk string) ledger.Draft {
	return ledger.Draft{Kind: ledger.KindSale, Payment: ledger.PaymentCash,
		IdempotencyKey: kiosk + "-" + strconv.FormatUint(keys.Add(1), 10), Lines: saleLines}
}

// fillLedger opens a ledger for kiosk in dir and appends n sales from
// writers concurrent checkouts, which the ledger's group commit shares
// fsyncs among.
func fillLedger(dir, kiosk string, n, writers int) (*ledger.Ledger, error) {
	l, err := ledger.Open(dir, ledger.Options{KioskID: kiosk, Location: time.UTC})
	if err != nil {
		return nil, err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := l.Append(context.Background(), sale(kiosk)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		l.Close()
		return nil, fmt.Errorf("filling %s: %w", kiosk, err)
	}
	return l, nil
}

// batches cuts the outbox into sales batches exactly as the session's sync
// does (telemetry/sync.go): at most max entries and maxBytes bytes each,
// the fields in the session's order.
func batches(l *ledger.Ledger, maxEntries, maxBytes int) ([][]byte, error) {
	var out [][]byte
	for from := uint64(1); from <= l.Head(); {
		es, err := l.Range(from, maxEntries)
		if err != nil {
			return nil, err
		}
		b, to, err := telemetry.EncodeBatch(es, maxBytes)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		from = to + 1
	}
	return out, nil
}

// drainResult is one way of moving the backlog to the fleet.
type drainResult struct {
	sales   int
	batches int
	bytes   int
	took    time.Duration
}

func (r drainResult) rate() float64 { return float64(r.sales) / r.took.Seconds() }

// baseline streams the same batch payloads with mosquitto_pub -q 1 -l, one
// per line on one connection, to a paho subscriber at QoS 1 that counts
// them: the most one MQTT connection carries here, with no ledger, no
// ingest and no acknowledgements behind it. The topic is outside
// kiosk/+/sales, so the ingest does not read these.
func baseline(b *broker, l *ledger.Ledger, scratch, topic string) (drainResult, error) {
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		return drainResult{}, fmt.Errorf("mosquitto_pub not found (apt-get install mosquitto-clients): %w", err)
	}
	bs, err := batches(l, 500, 128<<10)
	if err != nil {
		return drainResult{}, err
	}
	path := filepath.Join(scratch, l.KioskID()+"-batches.txt")
	f, err := os.Create(path)
	if err != nil {
		return drainResult{}, err
	}
	w := bufio.NewWriter(f)
	r := drainResult{sales: int(l.Head()), batches: len(bs)}
	for _, p := range bs {
		r.bytes += len(p)
		w.Write(p)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return r, err
	}
	if err := f.Close(); err != nil {
		return r, err
	}

	var got, gotBytes atomic.Int64
	all := make(chan struct{})
	sub, err := dial(b, "bench-baseline-sub", nil)
	if err != nil {
		return r, err
	}
	defer sub.Disconnect(100)
	if err := await(sub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		gotBytes.Add(int64(len(m.Payload())))
		if got.Add(1) == int64(len(bs)) {
			close(all)
		}
	})); err != nil {
		return r, err
	}
	in, err := os.Open(path)
	if err != nil {
		return r, err
	}
	defer in.Close()
	host, port := "127.0.0.1", strconv.Itoa(b.port)
	cmd := exec.Command(pub, "-h", host, "-p", port, "-i", "bench-baseline-pub", "-q", "1", "-l", "-t", topic)
	cmd.Stdin = in
	out := &tailBuffer{}
	cmd.Stderr = out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timeout := time.After(5 * time.Minute)
	for waiting := true; waiting; {
		select {
		case <-all:
			r.took = time.Since(t0)
			waiting = false
		case err := <-exited:
			if err != nil {
				return r, fmt.Errorf("mosquitto_pub: %v: %s", err, out)
			}
			exited = nil // it sent everything; wait for the subscriber
		case <-timeout:
			_ = cmd.Process.Kill()
			return r, fmt.Errorf("baseline: %d of %d batches arrived in 5 minutes", got.Load(), len(bs))
		}
	}
	if exited != nil {
		if err := <-exited; err != nil {
			return r, fmt.Errorf("mosquitto_pub: %v: %s", err, out)
		}
	}
	if gotBytes.Load() != int64(r.bytes) {
		return r, fmt.Errorf("baseline: %d payload bytes arrived, %d sent", gotBytes.Load(), r.bytes)
	}
	return r, nil
}

// drain runs a telemetry.Session over l against the broker, where the
// ingest listens, and times it from the session's start until the ledger's
// acknowledged watermark reaches its head.
func drain(b *broker, l *ledger.Ledger, stateDir, kiosk string) (drainResult, error) {
	r := drainResult{sales: int(l.Head())}
	ctx, cancel := context.WithCancel(context.Background())
	t0 := time.Now()
	s, err := telemetry.New(telemetry.Options{Broker: b.url(), KioskID: kiosk, StateDir: stateDir, Ledger: l,
		Version: "bench", Board: "sim", Log: zerolog.Nop()})
	if err != nil {
		cancel()
		return r, err
	}
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		stop, cancelStop := context.WithTimeout(context.Background(), 2*time.Second)
		s.Stop(stop, "bench done")
		cancelStop()
	}()
	deadline := t0.Add(5 * time.Minute)
	for l.Acked() < l.Head() {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("drain: %d of %d sales acknowledged in 5 minutes", l.Acked(), l.Head())
		}
		time.Sleep(time.Millisecond)
	}
	r.took = time.Since(t0)
	return r, nil
}

// tailBuffer keeps the last few KB written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
