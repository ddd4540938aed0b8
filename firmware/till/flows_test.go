package till

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/internal/testclock"
)

var dropStart = time.Date(2026, 11, 23, 19, 0, 0, 0, time.UTC)

// dropMenu is the sim stock with Kashmiri chai dropped from 19:00 to 21:00,
// three cups.
func dropMenu() Menu {
	return Menu{
		Products: SimCatalog(),
		Drops:    []Drop{{ID: "eid", SKU: "KASHMIRI", Starts: dropStart, Ends: dropStart.Add(2 * time.Hour), Stock: 3}},
		Plans:    []Plan{{ID: "chai-month", Name: "Chai every evening", Price: 200000, Period: "month"}},
	}
}

func dropState(t *testing.T, f *fixture) map[string]any {
	t.Helper()
	for _, p := range f.must("GET", "/api/state", "")["catalog"].([]any) {
		if p := p.(map[string]any); p["sku"] == "KASHMIRI" {
			return p["drop"].(map[string]any)
		}
	}
	t.Fatal("no KASHMIRI in the catalog")
	return nil
}

func TestDrops(t *testing.T) {
	clock := testclock.New(dropStart.Add(-5 * time.Minute))
	f := newFixtureWith(t, vfs.NewMem(), dropMenu(), func(o *Options, so *ServerOptions) {
		o.Clock, so.Clock = clock.Now, clock.Now
		o.Location = time.FixedZone("PKT", 5*3600)
	})
	if d := dropState(t, f); d["state"] != DropUpcoming || d["left"] != 3.0 {
		t.Fatalf("before the window: %v", d)
	}
	code, out := f.call("POST", "/api/cart/add", `{"sku":"KASHMIRI"}`)
	if code != http.StatusConflict || !strings.Contains(out["error"].(string), "goes on sale at Nov 24 00:00") {
		t.Fatalf("adding before the window: %d %v", code, out)
	}
	code, _ = f.call("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"early","lines":[{"sku":"KASHMIRI","qty":1}]}`)
	if code != http.StatusConflict {
		t.Fatalf("selling before the window: %d", code)
	}

	clock.Advance(10 * time.Minute)
	if d := dropState(t, f); d["state"] != DropOpen {
		t.Fatalf("in the window: %v", d)
	}
	code, out = f.call("POST", "/api/cart/set", `{"sku":"KASHMIRI","qty":4}`)
	if code != http.StatusConflict || !strings.Contains(out["error"].(string), "only 3 Kashmiri chai left") {
		t.Fatalf("four of three: %d %v", code, out)
	}
	f.must("POST", "/api/cart/set", `{"sku":"KASHMIRI","qty":2}`)
	f.must("POST", "/api/checkout", `{"payment":"cash"}`)
	// The cart was checked when filled; checkout is what enforces the cap.
	f.must("POST", "/api/cart/add", `{"sku":"KASHMIRI"}`)
	last := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"last","lines":[{"sku":"KASHMIRI","qty":1}]}`)
	code, out = f.call("POST", "/api/checkout", `{"payment":"cash"}`)
	if code != http.StatusConflict || !strings.Contains(out["error"].(string), "Kashmiri chai is sold out") {
		t.Fatalf("checkout past the cap: %d %v", code, out)
	}
	if d := dropState(t, f); d["state"] != DropSoldOut || d["left"] != 0.0 || d["sold"] != 3.0 {
		t.Fatalf("sold out: %v", d)
	}
	e, err := f.ledger.ByKey("last")
	if err != nil || e.Lines[0].Drop != "eid" {
		t.Fatalf("the sale does not name its drop: %+v %v", e, err)
	}
	// A retry whose reply was lost gets its sale, even once the drop ended.
	clock.Advance(3 * time.Hour)
	if again := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"last","lines":[{"sku":"KASHMIRI","qty":1}]}`); again["id"] != last["id"] {
		t.Fatalf("the retry after the drop ended: %v", again)
	}
	// Other products sell as ever.
	f.must("POST", "/api/cart/clear", "")
	f.must("POST", "/api/cart/add", `{"sku":"CHAI"}`)
	f.must("POST", "/api/checkout", `{"payment":"cash"}`)
}

func TestDropEnds(t *testing.T) {
	clock := testclock.New(dropStart.Add(2*time.Hour + time.Second))
	f := newFixtureWith(t, vfs.NewMem(), dropMenu(), func(o *Options, so *ServerOptions) {
		o.Clock, so.Clock = clock.Now, clock.Now
	})
	if d := dropState(t, f); d["state"] != DropEnded {
		t.Fatalf("after the window: %v", d)
	}
	code, out := f.call("POST", "/api/cart/add", `{"sku":"KASHMIRI"}`)
	if code != http.StatusConflict || !strings.Contains(out["error"].(string), "has ended") {
		t.Fatalf("after the window: %d %v", code, out)
	}
}

func TestCatalogRefusesBadDrops(t *testing.T) {
	good := dropMenu()
	for name, edit := range map[string]func(m *Menu){
		"unknown sku": func(m *Menu) { m.Drops[0].SKU = "NOPE" },
		"no start":    func(m *Menu) { m.Drops[0].Starts = time.Time{} },
		"backwards":   func(m *Menu) { m.Drops[0].Ends = dropStart.Add(-time.Hour) },
		"no stock":    func(m *Menu) { m.Drops[0].Stock = 0 },
		"overlap": func(m *Menu) {
			m.Drops = append(m.Drops, Drop{ID: "again", SKU: "KASHMIRI", Starts: dropStart.Add(time.Hour), Stock: 1})
		},
		"duplicate id": func(m *Menu) {
			m.Drops = append(m.Drops, Drop{ID: "eid", SKU: "GOLA", Starts: dropStart, Stock: 1})
		},
		"unpriced plan": func(m *Menu) { m.Plans[0].Price = 0 },
		"unnamed plan":  func(m *Menu) { m.Plans[0].Name = "" },
	} {
		t.Run(name, func(t *testing.T) {
			m := dropMenu()
			m.Drops = append([]Drop(nil), good.Drops...)
			edit(&m)
			if _, err := BuildCatalog(m); !errors.Is(err, ErrInvalid) {
				t.Fatalf("accepted: %v", err)
			}
		})
	}
	// A nightly drop: the next one after the last ended.
	m := dropMenu()
	m.Drops = append(m.Drops, Drop{ID: "next", SKU: "KASHMIRI", Starts: dropStart.Add(24 * time.Hour), Stock: 3})
	c, err := BuildCatalog(m)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DropAt("KASHMIRI", dropStart.Add(3*time.Hour)); d.ID != "next" {
		t.Fatalf("between drops: %+v", d)
	}
	if _, ok := c.DropAt("CHAI", dropStart); ok {
		t.Fatal("chai is not dropped")
	}
}

func TestSubscribe(t *testing.T) {
	f := newFixtureWith(t, vfs.NewMem(), dropMenu(), nil)
	e := f.must("POST", "/api/subscribe", `{"phone":"0300-123 4567","plan":"chai-month","payment":"cash","tendered":200000,"idempotency_key":"sub-1"}`)
	if e["kind"] != "subscription" || e["phone"] != "+923001234567" || e["plan"] != "chai-month" || e["total"] != 200000.0 {
		t.Fatalf("sign-up %v", e)
	}
	again := f.must("POST", "/api/subscribe", `{"phone":"03001234567","plan":"chai-month","payment":"cash","tendered":200000,"idempotency_key":"sub-1"}`)
	if again["id"] != e["id"] {
		t.Fatalf("a retry signed up twice: %v", again)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"phone":"12345","plan":"chai-month","payment":"cash","idempotency_key":"x"}`, "phone number"},
		{`{"phone":"03001234567","plan":"gold","payment":"cash","idempotency_key":"x"}`, "no subscription plan"},
		{`{"phone":"03001234567","plan":"chai-month","payment":"cash"}`, "idempotency_key"},
		{`{"phone":"03001234567","plan":"chai-month","payment":"wallet","idempotency_key":"x"}`, "card uid"},
		{`{"phone":"03001234567","plan":"chai-month","payment":"wallet","card":"04a1b2c3","idempotency_key":"x"}`, "insufficient"},
	} {
		if code, out := f.call("POST", "/api/subscribe", tc.body); code < 400 || !strings.Contains(out["error"].(string), tc.want) {
			t.Errorf("%s: %d %v, want an error saying %q", tc.body, code, out, tc.want)
		}
	}
	if r := f.must("GET", "/api/zreport", "")["report"].(map[string]any); r["subscriptions"].(map[string]any)["count"] != 1.0 {
		t.Fatalf("z-report %v", r)
	}
}

func TestNormalizePhone(t *testing.T) {
	for in, want := range map[string]string{
		"03001234567":     "+923001234567",
		"0300 1234567":    "+923001234567",
		"+92 300 1234567": "+923001234567",
		"923211234567":    "+923211234567",
		"+44 7700 900123": "+447700900123",
	} {
		if got, err := NormalizePhone(in); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0300123456", "04001234567", "+92 21 1234567", "0300-ABC-4567", "+0123456789", "12345678"} {
		if got, err := NormalizePhone(in); err == nil {
			t.Errorf("%q accepted as %q", in, got)
		}
	}
}

func TestTradingDay(t *testing.T) {
	file := filepath.Join(t.TempDir(), "trading")
	var lights []bool
	tweak := func(o *Options, _ *ServerOptions) {
		o.TradingFile = file
		o.OnTrading = func(open bool) { lights = append(lights, open) }
	}
	f := newFixtureWith(t, vfs.NewMem(), dropMenu(), tweak)
	if !f.must("GET", "/api/state", "")["trading"].(bool) || len(lights) != 1 || !lights[0] {
		t.Fatalf("a new till is not open: %v", lights)
	}
	sold := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"before-closing","lines":[{"sku":"CHAI","qty":1}]}`)
	f.must("POST", "/api/cart/add", `{"sku":"CHAI"}`)
	if out := f.must("POST", "/api/till", `{"trading":false}`); out["trading"] != false {
		t.Fatalf("closing: %v", out)
	}
	if code, out := f.call("POST", "/api/checkout", `{"payment":"cash"}`); code != http.StatusConflict || !strings.Contains(out["error"].(string), "closed for the day") {
		t.Fatalf("selling while closed: %d %v", code, out)
	}
	// A retry of a sale made before closing still gets its sale.
	if again := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"before-closing","lines":[{"sku":"CHAI","qty":1}]}`); again["id"] != sold["id"] {
		t.Fatalf("a retry after closing: %v", again)
	}
	if code, _ := f.call("POST", "/api/till", `{}`); code != http.StatusBadRequest {
		t.Fatalf("no trading field: %d", code)
	}
	// Closed survives a restart.
	lights = nil
	f2 := newFixtureWith(t, vfs.NewMem(), dropMenu(), tweak)
	if f2.till.Trading() || len(lights) != 1 || lights[0] {
		t.Fatalf("after a restart: trading %v, lights %v", f2.till.Trading(), lights)
	}
	f2.must("POST", "/api/till", `{"trading":true}`)
	f2.must("POST", "/api/cart/add", `{"sku":"CHAI"}`)
	f2.must("POST", "/api/checkout", `{"payment":"cash"}`)
}

func TestReceiptScanAndRefund(t *testing.T) {
	f := newFixture(t, vfs.NewMem())
	f.must("POST", "/api/cart/add", `{"sku":"CHAI","qty":2}`)
	sale := f.must("POST", "/api/checkout", `{"payment":"cash"}`)
	id := sale["id"].(string)
	got := f.must("POST", "/api/cart/scan", `{"code":"`+id+`"}`)
	rec := got["receipt"].(map[string]any)
	if rec["entry"].(map[string]any)["id"] != id || rec["refunded_by"] != nil || got["product"] != nil {
		t.Fatalf("scanning the receipt: %v", got)
	}
	refund := f.must("POST", "/api/refund", `{"sale_id":"`+id+`","idempotency_key":"r-1"}`)
	rec = f.must("GET", "/api/sales/"+id, "")
	if rec["refunded_by"] != refund["id"] {
		t.Fatalf("after the refund: %v", rec)
	}
	if code, _ := f.call("POST", "/api/cart/scan", `{"code":"0123456789abcdef-1"}`); code != http.StatusNotFound {
		t.Fatalf("another kiosk's receipt: %d", code)
	}
	if code, _ := f.call("GET", "/api/sales/nonsense", ""); code != http.StatusBadRequest {
		t.Fatalf("a malformed id: %d", code)
	}
}

func TestWalletOfflineLimit(t *testing.T) {
	f := newFixtureWith(t, vfs.NewMem(), dropMenu(), func(o *Options, _ *ServerOptions) { o.OfflineLimit = 20000 })
	f.must("POST", "/api/wallet/topup", `{"card":"04a1b2c3","amount":100000,"tendered":100000,"idempotency_key":"t"}`)
	f.must("POST", "/api/checkout", `{"payment":"wallet","card":"04a1b2c3","idempotency_key":"a","lines":[{"sku":"CHAI","qty":2}]}`)
	code, out := f.call("POST", "/api/checkout", `{"payment":"wallet","card":"04a1b2c3","idempotency_key":"b","lines":[{"sku":"CHAI","qty":1}]}`)
	if code != http.StatusPaymentRequired || !strings.Contains(out["error"].(string), "offline limit") {
		t.Fatalf("past the offline limit: %d %v", code, out)
	}
	w := f.must("GET", "/api/wallet/04a1b2c3", "")
	if w["balance"] != 84000.0 || w["offline_spent"] != 16000.0 || w["offline_limit"] != 20000.0 {
		t.Fatalf("wallet %v", w)
	}
	// Cash still sells.
	f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"c","lines":[{"sku":"CHAI","qty":1}]}`)
}

func TestZReportPrint(t *testing.T) {
	var printed []ledger.Report
	f := newFixtureWith(t, vfs.NewMem(), dropMenu(), func(_ *Options, so *ServerOptions) {
		so.PrintReport = func(r ledger.Report) error { printed = append(printed, r); return nil }
	})
	f.must("POST", "/api/cart/add", `{"sku":"CHAI"}`)
	f.must("POST", "/api/checkout", `{"payment":"cash"}`)
	f.must("POST", "/api/zreport/print", "")
	if len(printed) != 1 || printed[0].Sales.Count != 1 || printed[0].Sales.Amount != 8000 {
		t.Fatalf("printed %+v", printed)
	}
	if code, _ := f.call("POST", "/api/zreport/print", `{"day":"yesterday"}`); code != http.StatusBadRequest {
		t.Fatalf("a bad day: %d", code)
	}
	nf := newFixture(t, vfs.NewMem())
	if code, _ := nf.call("POST", "/api/zreport/print", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("without a printer: %d", code)
	}
}

func TestSaleAndCartEvents(t *testing.T) {
	hub := events.NewHub(64, nil)
	f := newFixtureWith(t, vfs.NewMem(), dropMenu(), func(o *Options, _ *ServerOptions) { o.Events = hub })
	sub := hub.Subscribe(0, false, 64)
	defer hub.Unsubscribe(sub)
	f.must("POST", "/api/cart/add", `{"sku":"CHAI"}`)
	f.must("POST", "/api/cart/set", `{"sku":"CHAI","qty":0}`)
	f.must("POST", "/api/cart/add", `{"sku":"SAMOSA"}`)
	f.must("POST", "/api/checkout", `{"payment":"cash"}`)
	var types []string
	for len(sub.C()) > 0 {
		types = append(types, (<-sub.C()).Type)
	}
	want := "cart cart cart sale cart"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// TestClosing: in its last minutes on a dying battery the till finishes
// the sale on the counter and starts nothing new, saying why; then it
// closes.
func TestClosing(t *testing.T) {
	hub := events.NewHub(64, nil)
	f := newFixtureWith(t, vfs.NewMem(), dropMenu(), func(o *Options, _ *ServerOptions) { o.Events = hub })
	sub := hub.Subscribe(0, false, 64)
	defer hub.Unsubscribe(sub)
	before := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"before","lines":[{"sku":"SAMOSA","qty":1}]}`)
	cart := f.must("POST", "/api/cart/add", `{"sku":"CHAI","qty":2}`)
	cartKey := cart["cart"].(map[string]any)["idempotency_key"].(string)
	f.till.Closing("battery critical")
	f.till.Closing("again") // the first reason stands
	if st := f.must("GET", "/api/state", ""); st["closing"] != "battery critical" {
		t.Fatalf("state while closing: %v", st["closing"])
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/cart/add", `{"sku":"SAMOSA"}`},
		{"POST", "/api/cart/set", `{"sku":"CHAI","qty":3}`},
		{"POST", "/api/checkout", `{"payment":"cash","idempotency_key":"other","lines":[{"sku":"CHAI","qty":1}]}`},
		{"POST", "/api/wallet/topup", `{"card":"04a1b2c3","amount":1000,"tendered":1000,"idempotency_key":"t"}`},
		{"POST", "/api/cart/scan", `{"code":"8964000100011"}`},
		// The cart's key is public: it must not carry other lines through.
		{"POST", "/api/checkout", `{"payment":"cash","idempotency_key":"` + cartKey + `","lines":[{"sku":"SAMOSA","qty":50}]}`},
		{"POST", "/api/refund", `{"sale_id":"` + before["id"].(string) + `","idempotency_key":"r"}`},
		{"POST", "/api/subscribe", `{"phone":"03001234567","plan":"chai-month","payment":"cash","idempotency_key":"s"}`},
	} {
		code, out := f.call(c.method, c.path, c.body)
		if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(out["error"]), "closing (battery critical): only the sale on the counter") {
			t.Errorf("%s %s while closing: %d %v", c.method, c.path, code, out)
		}
	}
	// Taking an item off is fine; the sale on the counter sells.
	f.must("POST", "/api/cart/set", `{"sku":"CHAI","qty":1}`)
	if f.till.CounterClear() {
		t.Fatal("the counter reads clear with a sale on it")
	}
	sale := f.must("POST", "/api/checkout", `{"payment":"cash"}`)
	if sale["seq"] != 2.0 || !f.till.CounterClear() {
		t.Fatalf("the sale on the counter: %v", sale)
	}
	// Nothing new after it.
	if code, _ := f.call("POST", "/api/cart/add", `{"sku":"CHAI"}`); code != http.StatusServiceUnavailable {
		t.Fatalf("a new sale after the last one: %d", code)
	}
	// Closing can end (mains back to a kiosk resting after a battery
	// shutdown): selling again.
	f.till.Reopen()
	f.must("POST", "/api/cart/add", `{"sku":"CHAI"}`)
	f.till.Closing("battery critical")
	f.till.Close()
	f.till.Reopen() // closed stays closed
	code, out := f.call("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"x","lines":[{"sku":"CHAI","qty":1}]}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(out["error"]), "shutting down (battery critical); every sale made is saved") {
		t.Fatalf("after Close: %d %v", code, out)
	}
	var closing int
	for len(sub.C()) > 0 {
		if e := <-sub.C(); e.Type == events.Closing {
			closing++
		}
	}
	if closing != 3 { // closing, reopened, closing again; nothing for a reopen after Close
		t.Fatalf("%d closing events, want 3", closing)
	}
}
