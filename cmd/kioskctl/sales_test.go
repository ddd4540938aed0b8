package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/internal/mosquitto"
	"github.com/microretail/kioskd/internal/realtest"
	"github.com/microretail/kioskd/internal/salesdb"
	"github.com/microretail/kioskd/telemetry"
)

// ackLog records the sales acks a fake kiosk receives, per kiosk.
type ackLog struct {
	mu  sync.Mutex
	got map[string][]uint64
}

func (a *ackLog) handle(_ mqtt.Client, m mqtt.Message) {
	kiosk, _, _ := telemetry.SplitTopic(m.Topic())
	ack, err := telemetry.ParseSalesAck(m.Payload())
	if err != nil {
		panic(fmt.Sprintf("ingest sent a malformed ack %q: %v", m.Payload(), err))
	}
	a.mu.Lock()
	a.got[kiosk] = append(a.got[kiosk], ack.UptoSeq)
	a.mu.Unlock()
}

func (a *ackLog) of(kiosk string) []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]uint64(nil), a.got[kiosk]...)
}

// last is the highest ack kiosk has had, 0 for none.
func (a *ackLog) last(kiosk string) uint64 {
	var hi uint64
	for _, n := range a.of(kiosk) {
		hi = max(hi, n)
	}
	return hi
}

func newAckLog() *ackLog { return &ackLog{got: map[string][]uint64{}} }

func startIngest(t *testing.T, args ...string) *background {
	t.Helper()
	in := startCLI(t, append([]string{"sales", "ingest"}, args...)...)
	eventually(t, "the ingest to subscribe", func() bool { return strings.Contains(in.err.String(), `"subscribed"`) })
	return in
}

// TestIngest: a kiosk's batches, sent once, twice, above a gap, malformed
// and for another kiosk, are stored once each and acknowledged up to the
// highest contiguous seq, never past what is stored; the persistent
// session keeps batches sent while the ingest is down.
func TestIngest(t *testing.T) {
	b := broker(t)
	data := t.TempDir()
	in := startIngest(t, "--broker", b.URL(), "--data", data, "--log-every", "2")

	kiosk := client(t, b, "k1")
	acks := newAckLog()
	subscribeTest(t, kiosk, "kiosk/+/sales/ack", acks.handle)
	sales := telemetry.Topic("k1", telemetry.TopicSales)
	send := func(p any, wantAcks ...uint64) {
		t.Helper()
		publish(t, kiosk, sales, false, p)
		if wantAcks == nil {
			return
		}
		eventually(t, fmt.Sprintf("acks %v", wantAcks), func() bool { return len(acks.of("k1")) >= len(wantAcks) })
		if got := acks.of("k1"); fmt.Sprint(got) != fmt.Sprint(wantAcks) {
			t.Fatalf("acks %v, want %v", got, wantAcks)
		}
	}
	send(batch("k1", 1, 3), 3)
	send(batch("k1", 1, 3), 3, 3)    // a duplicate is acknowledged again
	send(batch("k1", 7, 9), 3, 3, 3) // above a gap: stored, not acked past the gap
	send("not json")
	bad := batch("k1", 4, 6)
	bad.ToSeq = 9 // claims more than it holds
	send(bad)
	send(batch("k2", 4, 6)) // entries of k2 on k1's topic
	// The malformed and the foreign batch got no ack: the next ack is
	// the one for the batch that fills the gap.
	send(batch("k1", 4, 6), 3, 3, 3, 9)
	if got := acks.of("k2"); len(got) != 0 {
		t.Fatalf("k2 acked %v", got)
	}

	if code := in.stop(t); code != 0 {
		t.Fatalf("ingest exited %d\n%s", code, in.err.String())
	}
	var final map[string]any
	for _, l := range lines(in.err.String()) {
		if strings.Contains(l, "ingest stopped") {
			if err := json.Unmarshal([]byte(l), &final); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := map[string]float64{"kiosks": 1, "stored": 9, "duplicates": 3, "malformed": 2, "refused": 1, "batches": 4}
	for k, v := range want {
		if final[k] != v {
			t.Fatalf("final log %v: %s is %v, want %v", final, k, final[k], v)
		}
	}
	if !strings.Contains(in.err.String(), "ingest progress") {
		t.Fatalf("no progress line:\n%s", in.err.String())
	}

	// Sent while the ingest is down: the broker keeps it for the
	// ingest's persistent session.
	publish(t, kiosk, sales, false, batch("k1", 10, 12))
	in = startIngest(t, "--broker", b.URL(), "--data", data)
	eventually(t, "ack 12", func() bool { return acks.last("k1") == 12 })
	in.stop(t)

	db, err := salesdb.Open(data, salesdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	es, err := db.Entries("k1", 1, 0)
	if err != nil || len(es) != 12 {
		t.Fatalf("%d entries stored, %v", len(es), err)
	}
	for i, e := range es {
		if e.Seq != uint64(i+1) || e.KioskID != "k1" || e.IdempotencyKey != fmt.Sprintf("k1-%d", i+1) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	if es, _ := db.Entries("k2", 1, 0); len(es) != 0 {
		t.Fatalf("k2's entries were stored under k1's topic: %v", es)
	}
	db.Close()
}

func TestIngestBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"sales", "ingest"},
		{"sales", "ingest", "--data", t.TempDir(), "--share", "a/b"},
		{"sales", "ingest", "--data", t.TempDir(), "extra"},
		{"sales", "report"},
		{"sales", "report", "--data", t.TempDir(), "--from", "yesterday"},
		{"sales", "report", "--data", t.TempDir(), "--kiosk", "a/#"},
		{"sales"},
	} {
		if code, _, errs := cli(args...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, %q", args, code, errs)
		}
	}
	// Nothing listens on port 1: a clear error, not a hang.
	code, _, errs := cli("sales", "ingest", "--data", t.TempDir(), "--broker", "tcp://127.0.0.1:1")
	if code != 1 || !strings.Contains(errs, "connect to tcp://127.0.0.1:1") {
		t.Fatalf("unreachable broker: %d %q", code, errs)
	}
	code, _, errs = cli("sales", "report", "--data", t.TempDir()+"/none")
	if code != 1 || !strings.Contains(errs, "salesdb") {
		t.Fatalf("report of nothing: %d %q", code, errs)
	}
}

// TestShare: two workers in one $share group split the batches; every
// entry ends up in one store or the other, and in both only when its
// batch was sent again (a kiosk resending what no worker could ack).
func TestShare(t *testing.T) {
	b := broker(t)
	dirs := []string{t.TempDir(), t.TempDir()}
	w1 := startIngest(t, "--broker", b.URL(), "--data", dirs[0], "--share", "ing", "--client-id", "w1")
	w2 := startIngest(t, "--broker", b.URL(), "--data", dirs[1], "--share", "ing", "--client-id", "w2")

	const kiosks, batches, per = 20, 3, 5
	pub := client(t, b, "fleet-sim")
	acks := newAckLog()
	subscribeTest(t, pub, "kiosk/+/sales/ack", acks.handle)
	resent := map[string]map[uint64]bool{} // kiosk → seqs sent more than once
	sendFrom := func(k string, from uint64) {
		for s := from; s <= batches*per; s += per {
			hi := min(s+per-1, batches*per)
			publish(t, pub, telemetry.Topic(k, telemetry.TopicSales), false, batch(k, s, hi))
		}
	}
	id := func(i int) string { return fmt.Sprintf("k%02d", i) }
	for i := range kiosks {
		sendFrom(id(i), 1)
	}
	// Like a kiosk, resend from the acknowledged watermark what stays
	// unacknowledged, until everything is.
	for round := 0; ; round++ {
		done := func() bool {
			for i := range kiosks {
				if acks.last(id(i)) != batches*per {
					return false
				}
			}
			return true
		}
		deadline := time.Now().Add(500 * time.Millisecond)
		for !done() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if done() {
			break
		}
		if round == 30 {
			t.Fatalf("the workers never acknowledged everything: %v\n%s\n%s", acks.got, w1.err.String(), w2.err.String())
		}
		for i := range kiosks {
			k := id(i)
			if w := acks.last(k); w < batches*per {
				// Resend whole batches from the first one not covered.
				from := w/per*per + 1
				for s := from; s <= batches*per; s++ {
					if resent[k] == nil {
						resent[k] = map[uint64]bool{}
					}
					resent[k][s] = true
				}
				sendFrom(k, from)
			}
		}
	}
	w1.stop(t)
	w2.stop(t)

	held := make([]map[string]ledger.Entry, 2)
	for i, dir := range dirs {
		db, err := salesdb.Open(dir, salesdb.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		held[i] = map[string]ledger.Entry{}
		for _, m := range db.Marks() {
			es, err := db.Entries(m.Kiosk, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				held[i][fmt.Sprintf("%s/%d", e.KioskID, e.Seq)] = e
			}
		}
		db.Close()
	}
	if len(held[0]) == 0 || len(held[1]) == 0 {
		t.Fatalf("the workers did not share the work: %d and %d entries", len(held[0]), len(held[1]))
	}
	both := 0
	for i := range kiosks {
		k := id(i)
		for s := uint64(1); s <= batches*per; s++ {
			key := fmt.Sprintf("%s/%d", k, s)
			e0, in0 := held[0][key]
			e1, in1 := held[1][key]
			switch {
			case !in0 && !in1:
				t.Fatalf("%s stored nowhere", key)
			case in0 && in1:
				both++
				if !resent[k][s] {
					t.Fatalf("%s stored by both workers but sent once", key)
				}
			}
			e := e0
			if !in0 {
				e = e1
			}
			if want := saleEntry(k, s, ledger.KindSale, 10000); e.ID != want.ID || e.IdempotencyKey != want.IdempotencyKey || e.Total() != 10000 {
				t.Fatalf("%s stored as %+v", key, e)
			}
		}
	}
	t.Logf("worker 1 holds %d entries, worker 2 %d, %d in both (resent)", len(held[0]), len(held[1]), both)
}

// TestReport: the report's arithmetic through the CLI, human and JSON.
func TestReport(t *testing.T) {
	data := t.TempDir()
	db, err := salesdb.Open(data, salesdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k1 := []ledger.Entry{
		saleEntry("k1", 1, ledger.KindSale, 25000),
		saleEntry("k1", 2, ledger.KindSale, 15000),
		saleEntry("k1", 3, ledger.KindRefund, 15000),
		saleEntry("k1", 4, ledger.KindTopUp, 100000),
		saleEntry("k1", 5, ledger.KindSubscription, 123456789),
	}
	if _, err := db.Store([]salesdb.Batch{{Kiosk: "k1", Entries: k1}, {Kiosk: "k2", Entries: batch("k2", 1, 2).Entries}}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	code, out, errs := cli("--json", "sales", "report", "--data", data)
	if code != 0 {
		t.Fatalf("report: %d %s", code, errs)
	}
	var rep salesdb.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Kiosks) != 2 || len(rep.Totals) != 1 {
		t.Fatalf("%s", out)
	}
	r := rep.Kiosks[0]
	if r.Kiosk != "k1" || r.Revenue != 25000+15000-15000+123456789 || r.Sales != (salesdb.Tally{Count: 2, Amount: 40000}) ||
		r.AOV != 20000 || r.Refunds != (salesdb.Tally{Count: 1, Amount: 15000}) || r.TopUps != (salesdb.Tally{Count: 1, Amount: 100000}) {
		t.Fatalf("k1: %+v", r)
	}
	if tot := rep.Totals[0]; tot.Revenue != r.Revenue+20000 || tot.Sales.Count != 4 {
		t.Fatalf("total: %+v", tot)
	}

	code, out, errs = cli("sales", "report", "--data", data, "--kiosk", "k1")
	if code != 0 {
		t.Fatalf("report: %d %s", code, errs)
	}
	// Rupees with two decimals and separators, from integer paisa.
	for _, want := range []string{"1,234,817.89", "2 / 400.00", "1 / 150.00", "1 / 1,000.00", "200.00", "TOTAL"} {
		if !strings.Contains(out, want) {
			t.Fatalf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "k2") {
		t.Fatalf("--kiosk k1 shows k2:\n%s", out)
	}
	code, out, _ = cli("sales", "report", "--data", data, "--from", "2026-03-01T09:03:00Z")
	if code != 0 || strings.Contains(out, "400.00") || !strings.Contains(out, "0 / 0.00") {
		t.Fatalf("--from: %d\n%s", code, out)
	}
}

// TestIngestSurvivesBrokerRestart: after the broker restarts, the ingest
// reconnects, keeps its subscription and acknowledges new batches.
func TestIngestSurvivesBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a reconnect")
	}
	b := mosquitto.Start(t, mosquitto.Options{Persist: true})
	in := startIngest(t, "--broker", b.URL(), "--data", t.TempDir())
	b.Restart(100 * time.Millisecond)
	eventually(t, "the ingest to resubscribe", func() bool { return strings.Count(in.err.String(), `"subscribed"`) == 2 })
	kiosk := client(t, b, "k1")
	acks := newAckLog()
	subscribeTest(t, kiosk, "kiosk/+/sales/ack", acks.handle)
	publish(t, kiosk, telemetry.Topic("k1", telemetry.TopicSales), false, batch("k1", 1, 4))
	eventually(t, "ack 4", func() bool { return acks.last("k1") == 4 })
	if !strings.Contains(in.err.String(), "connection lost") {
		t.Fatalf("the restart went unnoticed:\n%s", in.err.String())
	}
}

// TestAuth: --username/--password reach the broker; a wrong password is
// a clear error.
func TestAuth(t *testing.T) {
	mosquitto.Find(t) // skips (or fails) without mosquitto
	tool := realtest.Command(t, "mosquitto_passwd", "apt-get install mosquitto", "mosquitto_passwd")
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	if out, err := exec.Command(tool, "-b", "-c", file, "operator", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b := mosquitto.Start(t, mosquitto.Options{Config: "allow_anonymous false\npassword_file " + file})
	if code, out, errs := cli("fleet", "--broker", b.URL(), "--username", "operator", "--password", "s3cret", "--wait", "500ms"); code != 0 ||
		!strings.Contains(out, "0 kiosks") {
		t.Fatalf("with the password: %d %s %s", code, out, errs)
	}
	code, _, errs := cli("fleet", "--broker", b.URL(), "--username", "operator", "--password", "wrong")
	if code != 1 || !strings.Contains(errs, "connect to") {
		t.Fatalf("with a wrong password: %d %q", code, errs)
	}
	code, _, errs = cli("fleet", "--broker", b.URL(), "--tls-ca", file)
	if code != 1 || !strings.Contains(errs, "not a TLS URL") {
		t.Fatalf("TLS files with tcp://: %d %q", code, errs)
	}
	code, _, errs = cli("fleet", "--broker", "ssl://127.0.0.1:1", "--tls-ca", file)
	if code != 1 || !strings.Contains(errs, "no PEM certificate") {
		t.Fatalf("a CA that is not one: %d %q", code, errs)
	}
}
