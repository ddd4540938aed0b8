package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/internal/mosquitto"
	"github.com/microretail/kioskd/internal/salesdb"
	"github.com/microretail/kioskd/telemetry"
)

// kioskctlBinary builds the console once per test run.
func kioskctlBinary(t *testing.T) string { return buildBinary(t, "../kioskctl") }

// ingest is `kioskctl sales ingest` storing into data from the broker.
type ingest struct {
	data string
	log  *strings.Builder
	cmd  *exec.Cmd
	done chan error
}

// startIngest runs an ingest for the rest of the test.
func startIngest(t *testing.T, broker string) *ingest {
	t.Helper()
	in := &ingest{data: t.TempDir(), log: &strings.Builder{}, done: make(chan error, 1)}
	in.cmd = exec.Command(kioskctlBinary(t), "--broker", broker, "sales", "ingest", "--data", in.data)
	in.cmd.Stdout, in.cmd.Stderr = in.log, in.log
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { in.done <- in.cmd.Wait() }()
	t.Cleanup(func() { _ = in.cmd.Process.Kill() })
	return in
}

// stop ends the ingest with SIGTERM, as an operator does; it must exit 0.
func (in *ingest) stop(t *testing.T) {
	t.Helper()
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-in.done:
		if err != nil {
			t.Fatalf("ingest exited with %v\n%s", err, in.log)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ingest did not stop\n%s", in.log)
	}
}

// TestBacklogSyncsAcrossBrokerRestarts: 10,000 sales made offline reach
// `kioskctl sales ingest` while the broker restarts five times in the
// middle of the sync: every sale is stored once, none is missing, and the
// kiosk's watermark reaches the last one.
func TestBacklogSyncsAcrossBrokerRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000-sale sync across broker restarts; not in -short")
	}
	const total = 10000
	b := mosquitto.Start(t, mosquitto.Options{})
	data, addr := t.TempDir(), freeAddr(t)

	// The backlog: sales made while the kiosk had no fleet.
	l, err := ledger.Open(filepath.Join(data, "ledger"), ledger.Options{KioskID: "proc-test", Currency: "PKR"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 16 {
				_, err := l.Append(context.Background(), ledger.Draft{Kind: ledger.KindSale, Payment: ledger.PaymentCash,
					IdempotencyKey: fmt.Sprint("offline-", i), Lines: []ledger.Line{{SKU: "CHAI", Name: "Chai", Qty: 1 + int64(i%3), Price: 8000}}})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil || t.Failed() {
		t.Fatal(err)
	}

	// Small batches, so the sync lasts long enough to be interrupted.
	conf := filepath.Join(t.TempDir(), "kioskd.toml")
	if err := os.WriteFile(conf, []byte("[fleet]\nbatch_max = 20\nack_timeout = \"2s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ingest := startIngest(t, b.URL())

	w := watchFleet(t, b.URL(), "kiosk/proc-test/sales/ack")
	p := startKioskd(t, data, addr, "--mqtt", b.URL(), "--config", conf)
	p.waitReady(t)

	// Restart the broker each time the acknowledged watermark passes
	// another sixth of the backlog.
	var upto uint64
	restarts := 0
	deadline := time.After(120 * time.Second)
	for upto < total {
		select {
		case m := <-w.ch:
			var a telemetry.SalesAck
			if err := json.Unmarshal(m.Payload(), &a); err != nil {
				t.Fatalf("ack %s: %v", m.Payload(), err)
			}
			upto = max(upto, a.UptoSeq)
			if restarts < 5 && upto >= uint64(restarts+1)*total/6 {
				restarts++
				t.Logf("broker restart %d at ack %d", restarts, upto)
				b.Restart(200 * time.Millisecond)
			}
		case <-deadline:
			t.Fatalf("acked up to %d of %d after %d restarts\nkioskd:\n%s\ningest:\n%s", upto, total, restarts, p.log, ingest.log)
		}
	}
	if restarts != 5 {
		t.Fatalf("%d broker restarts, want 5", restarts)
	}
	// The kiosk records the last ack as it arrives; its outbox empties.
	p.waitState(t, "an empty outbox", func(st state) bool { return st.MQTT.Outbox != nil && *st.MQTT.Outbox == 0 })
	stopKioskd(t, p)
	ingest.stop(t)

	// The kiosk counts every sale delivered…
	l, err = ledger.Open(filepath.Join(data, "ledger"), ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Acked() != total || l.OutboxLen() != 0 {
		t.Fatalf("kiosk watermark %d, outbox %d", l.Acked(), l.OutboxLen())
	}
	// …and the ingest holds each exactly once, as the kiosk recorded it.
	db, err := salesdb.Open(ingest.data, salesdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if c := db.Contiguous("proc-test"); c != total {
		t.Fatalf("ingest holds proc-test up to %d without a gap, want %d", c, total)
	}
	stored, err := db.Entries("proc-test", 1, 2*total)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != total {
		t.Fatalf("ingest holds %d entries, want %d (duplicates or extras)", len(stored), total)
	}
	mine, err := l.Range(1, total)
	if err != nil {
		t.Fatal(err)
	}
	for i := range mine {
		if stored[i].Seq != uint64(i+1) || stored[i].ID != mine[i].ID || stored[i].Total() != mine[i].Total() {
			t.Fatalf("entry %d: ingest %+v, kiosk %+v", i+1, stored[i], mine[i])
		}
	}
}
