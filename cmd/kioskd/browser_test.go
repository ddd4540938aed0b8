package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/microretail/kioskd/internal/browser"
	"github.com/microretail/kioskd/internal/realtest"
)

// The till in a real Chromium, touched as a stall operator touches it,
// with kioskd on the sim board behind it. Needs Debian's chromium; without
// it the test skips, unless KIOSK_REQUIRE_REAL=1.

// browserConfig is a stall with a drop of two Kashmiri chai on sale now,
// and a scanner that counts every read.
func browserConfig(t *testing.T) string {
	t.Helper()
	now := time.Now()
	cfg := fmt.Sprintf(`[shop]
name = "Burns Road Chai"

[scanner]
repeat = "0s" # the test scans one receipt twice in a row

[[catalog]]
sku = "CHAI"
name = "Doodh patti chai"
barcode = "8964000100011"
price = 8000

[[catalog]]
sku = "SAMOSA"
name = "Aloo samosa"
barcode = "8964000100035"
price = 5000

[[catalog]]
sku = "KASHMIRI"
name = "Kashmiri chai"
barcode = "8964000100028"
price = 15000

[[drops]]
id = "test-drop"
sku = "KASHMIRI"
starts = %s
ends = %s
stock = 2

[[plans]]
id = "chai-month"
name = "Chai every evening"
price = 200000
period = "month"
`, now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	path := filepath.Join(t.TempDir(), "kioskd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// page is the till page in a browser tab.
type page struct {
	t       *testing.T
	ctx     context.Context
	p       *proc
	lastTap time.Time
}

// tapCard holds a wallet card to the emulated reader for a moment. A card
// taps again only once it has left the field, so a second tap waits for
// the first card to be lifted and seen gone.
func (pg *page) tapCard(uid string) {
	pg.t.Helper()
	time.Sleep(time.Until(pg.lastTap.Add(1500 * time.Millisecond)))
	pg.p.mustPost(pg.t, "/api/sim/tap", fmt.Sprintf(`{"uid":%q,"hold_ms":200}`, uid))
	pg.lastTap = time.Now()
}

// do runs steps, and on failure saves what the screen showed.
func (pg *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		pg.fail("%s: %v", what, err)
	}
}

func (pg *page) fail(format string, args ...any) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 5*time.Second)
	defer cancel()
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		_ = os.WriteFile(filepath.Join(pg.t.ArtifactDir(), "failure.png"), png, 0o644)
	}
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	pg.t.Fatalf(format+"\nthe screen said:\n%s\nkioskd log:\n%s", append(args, body, pg.p.log)...)
}

func (pg *page) tap(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Tap(chromedp.CSS(sel), chromedp.NodeVisible)
}

// shows waits until the element's text holds want.
func (pg *page) shows(sel, want string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.querySelector(%q); return !!e && e.checkVisibility() && e.textContent.includes(%q) })()`,
		sel, want), chromedp.WithPollingTimeout(15*time.Second))
}

// holds waits until a JavaScript condition is true.
func (pg *page) holds(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(15*time.Second))
}

// keys types digits on the dialog's keypad.
func (pg *page) keys(dialog, digits string) []chromedp.Action[chromedp.Void] {
	var out []chromedp.Action[chromedp.Void]
	for _, d := range digits {
		out = append(out, pg.tap(fmt.Sprintf(`%s button.key[data-k="%c"]`, dialog, d)))
	}
	return out
}

// printed waits for the emulated printer to have printed a cut receipt
// holding every one of want, and returns it.
func (pg *page) printed(want ...string) map[string]any {
	pg.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_, out, err := pg.p.get("/api/sim/printer")
		if err == nil {
			rs, _ := out["receipts"].([]any)
		receipts:
			for _, r := range rs {
				r := r.(map[string]any)
				if r["cut"] != true {
					continue
				}
				for _, w := range want {
					if !strings.Contains(r["text"].(string), w) {
						continue receipts
					}
				}
				return r
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	pg.fail("the printer printed no receipt with %q", want)
	return nil
}

func TestTillInBrowser(t *testing.T) {
	exe, err := browser.Find()
	if err != nil {
		realtest.Missing(t, "Chromium", browser.Install)
	}
	if testing.Short() {
		t.Skip("starts kioskd and a browser")
	}
	p := startKioskd(t, t.TempDir(), freeAddr(t), "--config", browserConfig(t))
	exited := false // the last step ends kioskd by a battery shutdown
	defer func() {
		if !exited {
			stopKioskd(t, p)
		}
	}()
	p.waitReady(t)

	ctx, cancel := browser.Start(context.Background(), browser.Options{Exec: exe})
	defer cancel()
	reqs, err := browser.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pg := &page{t: t, ctx: ctx, p: p}
	// Each step builds on the screen the one before left: stop at the
	// first that fails.
	failed := false
	step := func(name string, fn func(t *testing.T)) {
		if !failed && !t.Run(name, fn) {
			failed = true
		}
	}
	pg.do("open the till",
		chromedp.EmulateViewport(1024, 600, chromedp.EmulateTouch),
		chromedp.Navigate("http://"+p.addr+"/"),
		chromedp.WaitVisible(chromedp.CSS(`.tile[data-sku="CHAI"]`)),
	)

	step("touch sale, cash, change, receipt and drawer", func(t *testing.T) {
		pg.t = t
		pg.do("fill the cart",
			pg.tap(`.tile[data-sku="CHAI"]`), pg.tap(`.tile[data-sku="CHAI"]`), pg.tap(`.tile[data-sku="SAMOSA"]`),
			pg.shows(`#cart .line[data-sku="CHAI"] .qty`, "2"),
			pg.shows("#cart-total", "210"),
			// One samosa too many, taken off again.
			pg.tap(`.tile[data-sku="SAMOSA"]`), pg.shows(`#cart .line[data-sku="SAMOSA"] .qty`, "2"),
			pg.tap(`#cart .line[data-sku="SAMOSA"] button.minus`), pg.shows("#cart-total", "210"),
		)
		pg.do("pay cash", append(append([]chromedp.Action[chromedp.Void]{pg.tap("#pay-cash"), pg.shows("#cash", "210")},
			pg.keys("#cash", "500")...),
			pg.shows("#change", "290"),
			pg.tap("#cash-confirm"),
			pg.shows("#done-change", "290"),
			pg.shows("#receipt-status", "rinted"),
		)...)
		r := pg.printed("Doodh patti chai", "Aloo samosa", "Rs 210.00", "Change", "290.00")
		if r["drawer"] != 1.0 {
			t.Fatalf("the cash drawer pulsed %v times with the receipt", r["drawer"])
		}
		pg.do("next customer", pg.tap("#done-close"), pg.shows("#cart", "scan"))
	})

	step("scan sale", func(t *testing.T) {
		pg.t = t
		p.mustPost(t, "/api/sim/scan", `{"code":"8964000100011"}`)
		pg.do("see the scan", pg.holds(`document.querySelector('#flash').dataset.code === '8964000100011'`),
			pg.shows("#flash", "Doodh patti chai"), pg.shows(`#cart .line[data-sku="CHAI"] .qty`, "1"))
		p.mustPost(t, "/api/sim/scan", `{"code":"2000000000008"}`)
		pg.do("an unknown code is refused clearly",
			pg.holds(`document.querySelector('#flash').dataset.code === '2000000000008'`),
			pg.shows("#flash", "nknown"), pg.shows("#cart-total", "80"))
		pg.do("pay exact cash", pg.tap("#pay-cash"), pg.tap(`#cash button.quick[data-amount="8000"]`),
			pg.tap("#cash-confirm"), pg.shows("#done", "80"), pg.tap("#done-close"))
	})

	step("wallet top-up, then pay by card tap", func(t *testing.T) {
		pg.t = t
		pg.do("top up", pg.tap("#menu-btn"), pg.tap("#btn-topup"))
		pg.tapCard("04a1b2c3")
		pg.do("credit Rs 1,000", append(append([]chromedp.Action[chromedp.Void]{pg.shows("#topup-card", "B2C3")},
			pg.keys("#topup", "1000")...),
			pg.tap("#topup-confirm"), pg.shows("#done-balance", "1,000"), pg.tap("#done-close"))...)
		pg.printed("WALLET TOP-UP", "1,000.00")

		pg.do("a chai by card", pg.tap(`.tile[data-sku="CHAI"]`), pg.tap("#pay-wallet"), pg.shows("#wallet", "ap"))
		pg.tapCard("04a1b2c3")
		pg.do("paid", pg.shows("#done-balance", "920"), pg.tap("#done-close"))

		// Twelve chai are more than the card holds.
		pg.do("too much", pg.tap(`.tile[data-sku="CHAI"]`))
		for n := 2; n <= 12; n++ {
			pg.do("one more", pg.tap(`#cart .line[data-sku="CHAI"] button.plus`),
				pg.holds(fmt.Sprintf(`document.querySelector('#cart .line[data-sku="CHAI"] .qty')?.textContent.trim() === '%d'`, n)))
		}
		pg.do("pay by card", pg.shows("#cart-total", "960"), pg.tap("#pay-wallet"), pg.shows("#wallet", "ap"))
		pg.tapCard("04a1b2c3")
		pg.do("refused", pg.shows("#wallet-error", "Rs 920"), pg.tap("#wallet-cancel"), pg.tap("#cart-clear"))
		if _, w, _ := p.get("/api/wallet/04a1b2c3"); w["balance"] != 92000.0 {
			t.Fatalf("balance after a refused payment: %v", w)
		}
	})

	step("refund by scanning the receipt QR", func(t *testing.T) {
		pg.t = t
		sales := p.allSales(t)
		first := sales[0]["id"].(string)
		p.mustPost(t, "/api/sim/scan", fmt.Sprintf(`{"code":%q}`, first))
		pg.do("refund it", pg.shows("#refund", "210"), pg.tap("#refund-confirm"), pg.shows("#done", "210"),
			pg.tap("#done-close"))
		if _, rec, _ := p.get("/api/sales/" + first); rec["refunded_by"] == nil {
			t.Fatalf("the sale was not refunded: %v", rec)
		}
		pg.printed("REFUND", first)
		p.mustPost(t, "/api/sim/scan", fmt.Sprintf(`{"code":%q}`, first))
		pg.do("a second refund is refused", pg.shows("#refund", "refunded"),
			pg.holds(`document.querySelector('#refund-confirm').disabled`), pg.tap("#refund-cancel"))
	})

	step("a drop sells out", func(t *testing.T) {
		pg.t = t
		pg.do("two left", pg.shows(`.tile[data-sku="KASHMIRI"] .left`, "2"),
			pg.tap(`.tile[data-sku="KASHMIRI"]`), pg.tap(`.tile[data-sku="KASHMIRI"]`),
			pg.shows("#cart-total", "300"),
			pg.tap("#pay-cash"), pg.tap(`#cash button.quick[data-amount="30000"]`), pg.tap("#cash-confirm"),
			pg.shows("#done", "300"), pg.tap("#done-close"),
			pg.holds(`document.querySelector('.tile[data-sku="KASHMIRI"]').classList.contains('soldout')`),
			pg.shows(`.tile[data-sku="KASHMIRI"]`, "Sold out"),
			pg.holds(`document.querySelector('.tile[data-sku="KASHMIRI"]').disabled`),
		)
		if code, out, _ := p.post("/api/checkout", `{"payment":"cash","idempotency_key":"late","lines":[{"sku":"KASHMIRI","qty":1}]}`); code != 409 {
			t.Fatalf("checkout of a sold-out drop: %d %v", code, out)
		}
	})

	step("subscription sign-up at checkout", func(t *testing.T) {
		pg.t = t
		pg.do("sign up", append(append([]chromedp.Action[chromedp.Void]{
			pg.tap(`.tile[data-sku="CHAI"]`), pg.tap("#pay-cash"), pg.tap(`#cash button.quick[data-amount="8000"]`),
			pg.tap("#cash-confirm"), pg.tap("#btn-subscribe"),
		}, pg.keys("#subscribe", "03001234567")...),
			pg.tap(`#subscribe button.plan[data-plan="chai-month"]`), pg.tap("#sub-cash"),
			pg.shows("#done", "2,000"), pg.tap("#done-close"))...)
		sales := p.allSales(t)
		last := sales[len(sales)-1]
		if last["kind"] != "subscription" || last["phone"] != "+923001234567" || last["plan"] != "chai-month" {
			t.Fatalf("last entry %v", last)
		}
	})

	step("z-report", func(t *testing.T) {
		pg.t = t
		pg.do("open it", pg.tap("#menu-btn"), pg.tap("#btn-z"), pg.shows("#zreport", "Refunds"),
			pg.tap("#z-print"), pg.shows("#zreport", "printer"))
		pg.printed("Z-REPORT", "Subscriptions (1)", "Refunds (1)")
		pg.do("close it", pg.tap("#z-close"))
	})

	step("no request leaves the kiosk", func(t *testing.T) {
		all := reqs.All()
		if len(all) == 0 {
			t.Fatal("no request seen: the network watch is broken")
		}
		if foreign := reqs.Foreign(); len(foreign) > 0 {
			t.Fatalf("the page asked beyond loopback: %v", foreign)
		}
	})

	if failed {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "till.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	step("battery critical: the closing banner, the sale on the counter finished", func(t *testing.T) {
		pg.t = t
		pg.do("a sale on the counter", pg.tap(`.tile[data-sku="CHAI"]`), pg.shows("#cart-total", "80"))
		p.mustPost(t, "/api/sim/battery", `{"soc":14}`)
		p.mustPost(t, "/api/sim/mains", `{"on":false}`)
		pg.do("the closing banner over the products",
			pg.shows("#closing", "battery critical"), pg.shows("#closing", "Finish the sale on the counter"),
			pg.shows("#st-power", "closing"),
			// The banner covers the tiles: a tap lands on it, not on a product.
			pg.holds(`(() => { const r = document.querySelector('.tile[data-sku="SAMOSA"]').getBoundingClientRect();
				return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2).closest('#closing') !== null })()`))
		if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
			_ = os.WriteFile(filepath.Join(t.ArtifactDir(), "closing.png"), png, 0o644)
		}
		pg.do("pay for it", append(append([]chromedp.Action[chromedp.Void]{pg.tap("#pay-cash"), pg.shows("#cash", "80")},
			pg.keys("#cash", "100")...),
			pg.tap("#cash-confirm"),
			pg.shows("#done-change", "20"),
		)...)
		select {
		case err := <-p.done:
			exited = true
			if err != nil {
				t.Fatalf("kioskd exited with %v\n%s", err, p.log)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("kioskd still running 30 s after the counter cleared\n%s", p.log)
		}
	})
}
