package till

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/microretail/kioskd/firmware/ledger"
)

type fixture struct {
	t      *testing.T
	ledger *ledger.Ledger
	till   *Till
	srv    *httptest.Server
}

func newFixture(t *testing.T, fs vfs.FS) *fixture {
	t.Helper()
	return newFixtureWith(t, fs, Menu{Products: SimCatalog()}, nil)
}

// newFixtureWith sells menu; tweak, if not nil, adjusts the options first.
func newFixtureWith(t *testing.T, fs vfs.FS, menu Menu, tweak func(*Options, *ServerOptions)) *fixture {
	t.Helper()
	l, err := ledger.Open("ledger", ledger.Options{KioskID: "stall-1", FS: fs, SpendLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := BuildCatalog(menu)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	opts := Options{Ledger: l, Catalog: cat, NewKey: func() string { n++; return fmt.Sprint("cart-", n) },
		Receipts: true, Drawer: true}
	sopts := ServerOptions{Identity: Identity{KioskID: "stall-1", Board: "sim", Version: "test", Currency: "PKR"}}
	if tweak != nil {
		tweak(&opts, &sopts)
	}
	tl := New(opts)
	s := NewServer(sopts)
	s.SetTill(tl)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); l.Close() })
	return &fixture{t: t, ledger: l, till: tl, srv: srv}
}

// call sends a request and decodes the JSON reply into a map.
func (f *fixture) call(method, path, body string) (int, map[string]any) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		f.t.Fatalf("%s %s: reply is not JSON: %v", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, out
}

func (f *fixture) must(method, path, body string) map[string]any {
	f.t.Helper()
	code, out := f.call(method, path, body)
	if code != http.StatusOK {
		f.t.Fatalf("%s %s %s: %d %v", method, path, body, code, out)
	}
	return out
}

func TestSaleOverHTTP(t *testing.T) {
	f := newFixture(t, vfs.NewMem())
	if h := f.must("GET", "/healthz", ""); h["ready"] != true || h["kiosk_id"] != "stall-1" {
		t.Fatalf("healthz %v", h)
	}
	f.must("POST", "/api/cart/scan", `{"code":"8964000100011"}`) // chai
	f.must("POST", "/api/cart/scan", `{"code":" 8964000100011 "}`)
	out := f.must("POST", "/api/cart/add", `{"sku":"SAMOSA","qty":3}`)
	cart := out["cart"].(map[string]any)
	if cart["total"].(float64) != 2*8000+3*5000 || cart["items"].(float64) != 5 {
		t.Fatalf("cart %v", cart)
	}
	sale := f.must("POST", "/api/checkout", `{"payment":"cash"}`)
	if sale["seq"].(float64) != 1 || sale["total"].(float64) != 31000 || sale["kind"] != "sale" ||
		sale["payment"] != "cash" || sale["idempotency_key"] != "cart-1" || len(sale["lines"].([]any)) != 2 {
		t.Fatalf("sale %v", sale)
	}
	state := f.must("GET", "/api/state", "")
	if c := state["cart"].(map[string]any); len(c["lines"].([]any)) != 0 || c["idempotency_key"] == "cart-1" {
		t.Fatalf("cart after checkout %v", c)
	}
	if len(state["catalog"].([]any)) != 10 || state["ledger"].(map[string]any)["head_seq"].(float64) != 1 {
		t.Fatalf("state %v", state)
	}
	if today := state["today"].(map[string]any); today["sales"].(map[string]any)["amount"].(float64) != 31000 {
		t.Fatalf("today %v", today)
	}

	// Checkout of given lines, retried with the same key: one sale.
	body := `{"payment":"cash","idempotency_key":"pos-7","lines":[{"sku":"PAKOLA","qty":2}]}`
	a := f.must("POST", "/api/checkout", body)
	b := f.must("POST", "/api/checkout", body)
	if a["id"] != b["id"] || a["seq"].(float64) != 2 {
		t.Fatalf("retry: %v vs %v", a, b)
	}
	if code, out := f.call("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"pos-7","lines":[{"sku":"PAKOLA","qty":3}]}`); code != http.StatusConflict {
		t.Fatalf("key reused for another sale: %d %v", code, out)
	}

	// Refund by sale id, once.
	r := f.must("POST", "/api/refund", fmt.Sprintf(`{"sale_id":%q,"idempotency_key":"ref-1"}`, sale["id"]))
	if r["kind"] != "refund" || r["refund_of"] != sale["id"] || r["total"] != sale["total"] {
		t.Fatalf("refund %v", r)
	}
	if code, _ := f.call("POST", "/api/refund", fmt.Sprintf(`{"sale_id":%q,"idempotency_key":"ref-2"}`, sale["id"])); code != http.StatusConflict {
		t.Fatalf("second refund: %d", code)
	}

	// Wallet: top up, pay, refuse an overdraft.
	f.must("POST", "/api/wallet/topup", `{"card":"04a22b91","amount":20000,"idempotency_key":"top-1"}`)
	f.must("POST", "/api/wallet/topup", `{"card":"04a22b91","amount":20000,"idempotency_key":"top-1"}`) // a retry credits once
	f.must("POST", "/api/checkout", `{"payment":"wallet","card":"04a22b91","idempotency_key":"w1","lines":[{"sku":"KASHMIRI","qty":1}]}`)
	if code, out := f.call("POST", "/api/checkout", `{"payment":"wallet","card":"04a22b91","idempotency_key":"w2","lines":[{"sku":"KASHMIRI","qty":1}]}`); code != http.StatusPaymentRequired {
		t.Fatalf("overdraft: %d %v", code, out)
	}
	if w := f.must("GET", "/api/wallet/04a22b91", ""); w["balance"].(float64) != 5000 {
		t.Fatalf("wallet %v", w)
	}

	sales := f.must("GET", "/api/sales?from_seq=2&limit=2", "")
	entries := sales["entries"].([]any)
	if len(entries) != 2 || entries[0].(map[string]any)["seq"].(float64) != 2 || sales["head_seq"].(float64) != 5 {
		t.Fatalf("sales %v", sales)
	}
	z := f.must("GET", "/api/zreport", "")["report"].(map[string]any)
	if z["refunds"].(map[string]any)["amount"].(float64) != 31000 || z["topups"].(map[string]any)["count"].(float64) != 1 {
		t.Fatalf("z-report %v", z)
	}
}

// TestBadInput: every malformed or impossible request gets a 4xx with a JSON
// error, and nothing reaches the ledger or the cart.
func TestBadInput(t *testing.T) {
	f := newFixture(t, vfs.NewMem())
	f.must("POST", "/api/cart/add", `{"sku":"CHAI"}`)
	before := f.till.Cart()
	huge := `{"code":"` + strings.Repeat("8", MaxBody) + `"}`
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"malformed json", "POST", "/api/checkout", `{"payment":`, 400},
		{"not an object", "POST", "/api/checkout", `["cash"]`, 400},
		{"empty body", "POST", "/api/cart/scan", ``, 400},
		{"trailing data", "POST", "/api/cart/scan", `{"code":"8964000100011"} {"code":"x"}`, 400},
		{"unknown field", "POST", "/api/checkout", `{"payment":"cash","tip":5}`, 400},
		{"oversized body", "POST", "/api/cart/scan", huge, 413},
		{"no payment", "POST", "/api/checkout", `{}`, 400},
		{"unknown payment", "POST", "/api/checkout", `{"payment":"bitcoin"}`, 400},
		{"unknown sku in lines", "POST", "/api/checkout", `{"payment":"cash","idempotency_key":"x","lines":[{"sku":"CAVIAR","qty":1}]}`, 404},
		{"zero qty in lines", "POST", "/api/checkout", `{"payment":"cash","idempotency_key":"x","lines":[{"sku":"CHAI","qty":0}]}`, 400},
		{"negative qty in lines", "POST", "/api/checkout", `{"payment":"cash","idempotency_key":"x","lines":[{"sku":"CHAI","qty":-2}]}`, 400},
		{"empty lines", "POST", "/api/checkout", `{"payment":"cash","idempotency_key":"x","lines":[]}`, 400},
		{"lines without a key", "POST", "/api/checkout", `{"payment":"cash","lines":[{"sku":"CHAI","qty":1}]}`, 400},
		{"wallet without card", "POST", "/api/checkout", `{"payment":"wallet"}`, 400},
		{"wallet with bad card", "POST", "/api/checkout", `{"payment":"wallet","card":"xyz"}`, 400},
		{"wallet with no balance", "POST", "/api/checkout", `{"payment":"wallet","card":"04a22b91"}`, 402},
		{"unknown sku", "POST", "/api/cart/add", `{"sku":"CAVIAR","qty":1}`, 404},
		{"zero qty", "POST", "/api/cart/add", `{"sku":"CHAI","qty":0}`, 400},
		{"negative qty", "POST", "/api/cart/add", `{"sku":"CHAI","qty":-1}`, 400},
		{"huge qty", "POST", "/api/cart/add", `{"sku":"CHAI","qty":100000}`, 400},
		{"qty not a number", "POST", "/api/cart/add", `{"sku":"CHAI","qty":"2"}`, 400},
		{"unknown barcode", "POST", "/api/cart/scan", `{"code":"8964000199992"}`, 404},
		{"bad check digit", "POST", "/api/cart/scan", `{"code":"8964000100012"}`, 400},
		{"control characters", "POST", "/api/cart/scan", `{"code":"89640\u0000"}`, 400},
		{"refund of unknown sale", "POST", "/api/refund", `{"sale_id":"0000000000000001-1","idempotency_key":"r"}`, 404},
		{"refund of unknown seq", "POST", "/api/refund", `{"sale_id":"` + fmt.Sprintf("%016x", f.ledger.LedgerID()) + `-99","idempotency_key":"r"}`, 404},
		{"refund of malformed id", "POST", "/api/refund", `{"sale_id":"sale-1","idempotency_key":"r"}`, 400},
		{"refund without key", "POST", "/api/refund", `{"sale_id":"` + fmt.Sprintf("%016x", f.ledger.LedgerID()) + `-1"}`, 400},
		{"sales bad from", "GET", "/api/sales?from_seq=abc", "", 400},
		{"sales zero limit", "GET", "/api/sales?limit=0", "", 400},
		{"sales huge limit", "GET", "/api/sales?limit=100000", "", 400},
		{"zreport bad day", "GET", "/api/zreport?day=yesterday", "", 400},
		{"top-up zero", "POST", "/api/wallet/topup", `{"card":"04a22b91","amount":0,"idempotency_key":"x"}`, 400},
		{"top-up negative", "POST", "/api/wallet/topup", `{"card":"04a22b91","amount":-100,"idempotency_key":"x"}`, 400},
		{"top-up without a key", "POST", "/api/wallet/topup", `{"card":"04a22b91","amount":500}`, 400},
		{"wallet bad uid", "GET", "/api/wallet/0102", "", 400},
		{"unknown endpoint", "GET", "/api/nope", "", 404},
		{"sim endpoint off the sim board", "POST", "/api/sim/mains", `{"on":false}`, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := f.call(tc.method, tc.path, tc.body)
			msg, _ := out["error"].(string)
			if code != tc.want || msg == "" {
				t.Fatalf("%d %v, want %d with an error", code, out, tc.want)
			}
		})
	}
	if f.ledger.Head() != 0 {
		t.Fatalf("bad input wrote %d entries", f.ledger.Head())
	}
	if after := f.till.Cart(); after.Total != before.Total || after.IdempotencyKey != before.IdempotencyKey {
		t.Fatalf("bad input changed the cart: %+v -> %+v", before, after)
	}
	// Clearing leaves nothing to sell.
	f.must("POST", "/api/cart/clear", "")
	if code, out := f.call("POST", "/api/checkout", `{"payment":"cash"}`); code != 400 || !strings.Contains(out["error"].(string), "empty") {
		t.Fatalf("empty cart: %d %v", code, out)
	}
}

func TestNotReadyUntilTill(t *testing.T) {
	s := NewServer(ServerOptions{Identity: Identity{KioskID: "k"}})
	s.SetWaiting("ledger: opening /var/lib/kioskd: disk on fire")
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, path := range []string{"/healthz", "/api/state"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		text := fmt.Sprint(out)
		if resp.StatusCode != 503 || !strings.Contains(text, "disk on fire") {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, out)
		}
	}
}

// TestSyncFailureOverHTTP: a checkout whose fsync failed never gets a 200;
// /healthz says why the till stopped selling; once the disk works again the
// till sells again and the retried checkout exists exactly once.
func TestSyncFailureOverHTTP(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	f := newFixture(t, fs)
	ok := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"a","lines":[{"sku":"CHAI","qty":1}]}`)

	failing.Store(true)
	doomed := `{"payment":"cash","idempotency_key":"b","lines":[{"sku":"GOLA","qty":2}]}`
	if code, out := f.call("POST", "/api/checkout", doomed); code != http.StatusServiceUnavailable {
		t.Fatalf("checkout with failing fsync: %d %v", code, out)
	}
	code, h := f.call("GET", "/healthz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(h["reason"]), "sync failed") {
		t.Fatalf("healthz while failing: %d %v", code, h)
	}
	if code, _ := f.call("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"c","lines":[{"sku":"CHAI","qty":1}]}`); code != 503 {
		t.Fatalf("checkout while failing: %d", code)
	}

	failing.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := f.call("GET", "/healthz", ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the till never recovered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b1 := f.must("POST", "/api/checkout", doomed)
	b2 := f.must("POST", "/api/checkout", doomed)
	if b1["id"] != b2["id"] {
		t.Fatalf("retried checkout recorded twice: %v %v", b1["id"], b2["id"])
	}
	sales := f.must("GET", "/api/sales", "")["entries"].([]any)
	keys := map[string]int{}
	for _, e := range sales {
		keys[e.(map[string]any)["idempotency_key"].(string)]++
	}
	if keys["a"] != 1 || keys["b"] != 1 || keys["c"] > 1 {
		t.Fatalf("keys in the ledger: %v", keys)
	}
	if sales[0].(map[string]any)["id"] != ok["id"] {
		t.Fatalf("first sale changed")
	}
}

func TestCartKeyOutlivesAFailedCheckout(t *testing.T) {
	f := newFixture(t, vfs.NewMem())
	f.must("POST", "/api/cart/add", `{"sku":"CHAI","qty":2}`)
	key := f.till.Cart().IdempotencyKey
	// A sale recorded under the cart's key, as if the first attempt's reply
	// was lost: checking out the cart again returns it and empties the cart.
	first := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"`+key+`","lines":[{"sku":"CHAI","qty":2}]}`)
	if f.till.Cart().IdempotencyKey != key {
		t.Fatal("a lines checkout touched the cart")
	}
	again := f.must("POST", "/api/checkout", `{"payment":"cash"}`)
	if again["id"] != first["id"] {
		t.Fatalf("cart sold twice: %v then %v", first["id"], again["id"])
	}
	if v := f.till.Cart(); len(v.Lines) != 0 || v.IdempotencyKey == key {
		t.Fatalf("cart after settling %+v", v)
	}
}

// TestCartCheckoutUnderTheCallersKey: a cart sold under the caller's own
// key leaves the counter, so it cannot be sold again, and a retry with that
// key returns the sale.
func TestCartCheckoutUnderTheCallersKey(t *testing.T) {
	f := newFixture(t, vfs.NewMem())
	f.must("POST", "/api/cart/add", `{"sku":"BUNKEBAB","qty":2}`)
	sale := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"screen-42"}`)
	if v := f.till.Cart(); len(v.Lines) != 0 {
		t.Fatalf("cart still holds %+v after it was sold", v.Lines)
	}
	if code, out := f.call("POST", "/api/checkout", `{"payment":"cash"}`); code != 400 {
		t.Fatalf("the sold cart sold again: %d %v", code, out)
	}
	again := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"screen-42"}`)
	if again["id"] != sale["id"] || f.ledger.Head() != 1 {
		t.Fatalf("retry: %v, head %d", again["id"], f.ledger.Head())
	}
}

func TestCatalogChecks(t *testing.T) {
	good := SimCatalog()
	for _, tc := range []struct {
		name string
		edit func([]Product) []Product
	}{
		{"duplicate sku", func(p []Product) []Product { return append(p, Product{SKU: "CHAI", Name: "x", Price: 1}) }},
		{"duplicate barcode", func(p []Product) []Product {
			return append(p, Product{SKU: "X", Name: "x", Barcode: p[0].Barcode, Price: 1})
		}},
		{"upc-a twin of an ean-13", func(p []Product) []Product {
			return append(p, Product{SKU: "X", Name: "x", Barcode: "036000291452", Price: 1},
				Product{SKU: "Y", Name: "y", Barcode: "0036000291452", Price: 1})
		}},
		{"bad check digit", func(p []Product) []Product { p[0].Barcode = "8964000100012"; return p }},
		{"negative price", func(p []Product) []Product { p[0].Price = -1; return p }},
		{"no name", func(p []Product) []Product { p[0].Name = ""; return p }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := tc.edit(append([]Product(nil), good...))
			if _, err := NewCatalog(ps); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	c, err := NewCatalog(good)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := c.ByCode("8964000100035"); !ok || p.SKU != "SAMOSA" {
		t.Fatalf("ByCode: %+v", p)
	}
}

func BenchmarkCheckoutHTTP(b *testing.B) {
	l, err := ledger.Open(b.TempDir(), ledger.Options{KioskID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	cat, _ := NewCatalog(SimCatalog())
	s := NewServer(ServerOptions{Identity: Identity{KioskID: "bench"}})
	s.SetTill(New(Options{Ledger: l, Catalog: cat}))
	srv := httptest.NewServer(s)
	defer srv.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := fmt.Sprintf(`{"payment":"cash","idempotency_key":"b-%d","lines":[{"sku":"CHAI","qty":1},{"sku":"SAMOSA","qty":2}]}`, i)
		resp, err := http.Post(srv.URL+"/api/checkout", "application/json", bytes.NewBufferString(body))
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
		resp.Body.Close()
	}
}

func TestReceiptJobsAndReprint(t *testing.T) {
	f := newFixture(t, vfs.NewMem())
	cash := f.must("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"k1","tendered":50000,"lines":[{"sku":"CHAI","qty":2}]}`)
	if cash["tendered"] != 50000.0 || cash["change"] != 50000.0-cash["total"].(float64) {
		t.Fatalf("cash sale: %v", cash)
	}
	if code, out := f.call("POST", "/api/checkout", `{"payment":"cash","idempotency_key":"k2","tendered":100,"lines":[{"sku":"CHAI","qty":2}]}`); code != http.StatusBadRequest {
		t.Fatalf("tendered short of the total: %d %v", code, out)
	}
	seq := uint64(cash["seq"].(float64))
	j, ok, err := f.ledger.Job(seq)
	if err != nil || !ok || j.State != ledger.JobQueued || !j.Drawer {
		t.Fatalf("cash sale job: %+v %v %v", j, ok, err)
	}
	// Still queued: a reprint now would print it twice.
	if code, out := f.call("POST", "/api/reprint", fmt.Sprintf(`{"sale_id":%q}`, cash["id"])); code != http.StatusConflict {
		t.Fatalf("reprint of a queued receipt: %d %v", code, out)
	}
	ctx := t.Context()
	if _, err := f.ledger.MoveJob(ctx, seq, ledger.JobQueued, ledger.JobSending); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ledger.MoveJob(ctx, seq, ledger.JobSending, ledger.JobPrinted); err != nil {
		t.Fatal(err)
	}
	out := f.must("POST", "/api/reprint", fmt.Sprintf(`{"sale_id":%q}`, cash["id"]))
	if job := out["job"].(map[string]any); job["copy"] != 1.0 || job["state"] != "queued" || job["drawer"] != false {
		t.Fatalf("reprint: %v", out)
	}
	if code, _ := f.call("POST", "/api/reprint", `{"sale_id":"nonsense"}`); code != http.StatusBadRequest {
		t.Fatalf("reprint of a malformed id: %d", code)
	}
}
