package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// simReceipts reads what the emulated printer printed for a sale.
func (p *proc) simReceipts(t *testing.T, saleID string) (all []map[string]any, cut int) {
	t.Helper()
	code, out, err := p.get("/api/sim/printer")
	if err != nil || code != 200 {
		t.Fatalf("GET /api/sim/printer: %d %v", code, err)
	}
	list, _ := out["receipts"].([]any)
	for _, r := range list {
		r := r.(map[string]any)
		if r["job"] == saleID {
			all = append(all, r)
			if r["cut"] == true {
				cut++
			}
		}
	}
	return all, cut
}

// waitReceipts waits until the sale has n cut receipts.
func (p *proc) waitReceipts(t *testing.T, saleID string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if all, cut := p.simReceipts(t, saleID); cut >= n {
			return all
		}
		time.Sleep(50 * time.Millisecond)
	}
	all, _ := p.simReceipts(t, saleID)
	t.Fatalf("sale %s: %d cut receipts wanted, have %v", saleID, n, all)
	return nil
}

// TestSimReceiptsAndScans: a checkout over the API prints a receipt the
// emulated printer decodes; paper out holds the next one, which prints
// exactly once when the paper is back; a scan travels from the emulated
// scanner's input_event records through the evdev driver into the cart.
func TestSimReceiptsAndScans(t *testing.T) {
	p := startKioskd(t, t.TempDir(), freeAddr(t))
	defer stopKioskd(t, p)
	p.waitReady(t)
	evs := p.events(t)
	p.waitState(t, "the printer is up", func(st state) bool { return st.Devices["printer"] == "ok" })

	// 1. A scanned code lands in the cart, then a cash checkout prints.
	p.mustPost(t, "/api/sim/scan", `{"code":"8964000100011"}`) // CHAI, 80.00
	evs.wait(t, "scan", func(d map[string]any) bool { return d["code"] == "8964000100011" && d["error"] == nil })
	p.mustPost(t, "/api/sim/scan", `{"code":"8964000100012"}`) // a bad check digit never reaches the till
	p.mustPost(t, "/api/sim/scan", `{"code":"8964000100035"}`) // SAMOSA, 50.00
	evs.wait(t, "scan", func(d map[string]any) bool { return d["code"] == "8964000100035" })
	code, sale, err := p.post("/api/checkout", `{"payment":"cash","tendered":20000,"idempotency_key":"sale-1"}`)
	if err != nil || code != 200 {
		t.Fatalf("checkout: %d %v %v", code, sale, err)
	}
	if sale["total"] != 13000.0 {
		t.Fatalf("the scanned cart sold for %v, want 13000 (a bad read got in?)", sale["total"])
	}
	id := sale["id"].(string)
	r := p.waitReceipts(t, id, 1)[0]
	text := r["text"].(string)
	for _, want := range []string{"Doodh patti chai", "Aloo samosa", "Rs 130.00", "Change", "70.00", "[qr " + id + "]"} {
		if !strings.Contains(text, want) {
			t.Errorf("receipt lacks %q:\n%s", want, text)
		}
	}
	if r["drawer"] != 1.0 {
		t.Errorf("the cash drawer pulsed %v times", r["drawer"])
	}

	// 2. Paper out: the next sale's receipt waits, and the till says why.
	p.mustPost(t, "/api/sim/printer", `{"paper":"out"}`)
	p.waitState(t, "the printer sees no paper", func(st state) bool { return st.Printer.Printer == "paper_out" })
	evs.wait(t, "paper_out", nil)
	code, sale2, err := p.post("/api/checkout", `{"payment":"cash","idempotency_key":"sale-2","lines":[{"sku":"CHAI","qty":3}]}`)
	if err != nil || code != 200 {
		t.Fatalf("checkout while out of paper: %d %v %v", code, sale2, err)
	}
	id2 := sale2["id"].(string)
	p.waitState(t, "the receipt waiting for paper", func(st state) bool {
		return len(st.Printer.Queue) == 1 && strings.Contains(st.Printer.Waiting, "paper")
	})
	time.Sleep(500 * time.Millisecond) // a few printer steps
	if all, _ := p.simReceipts(t, id2); len(all) != 0 {
		t.Fatalf("printed with no paper: %v", all)
	}
	// A retried checkout with the same key queues nothing new.
	p.mustPost(t, "/api/checkout", `{"payment":"cash","idempotency_key":"sale-2","lines":[{"sku":"CHAI","qty":3}]}`)

	// 3. Paper back in: it prints, exactly once.
	p.mustPost(t, "/api/sim/printer", `{"paper":"ok"}`)
	r2 := p.waitReceipts(t, id2, 1)
	if !strings.Contains(r2[0]["text"].(string), "Rs 240.00") {
		t.Errorf("receipt:\n%s", r2[0]["text"])
	}
	p.waitState(t, "the queue empty", func(st state) bool { return len(st.Printer.Queue) == 0 && st.Printer.Printer == "ready" })
	time.Sleep(500 * time.Millisecond)
	if all, cut := p.simReceipts(t, id2); cut != 1 || len(all) != 1 {
		t.Fatalf("after the paper came back: %d receipts, %d cut", len(all), cut)
	}
	if _, cut := p.simReceipts(t, id); cut != 1 {
		t.Fatalf("the first sale printed %d times", cut)
	}

	// An explicit reprint is the only second copy.
	p.mustPost(t, "/api/reprint", fmt.Sprintf(`{"sale_id":%q}`, id))
	all := p.waitReceipts(t, id, 2)
	if !strings.Contains(all[1]["text"].(string), "REPRINT, COPY 1") {
		t.Errorf("reprint:\n%s", all[1]["text"])
	}

	// Bad sim input is refused.
	for _, body := range []string{`{"paper":"wet"}`, `{}`, `{"cover":"ajar"}`, `not json`} {
		if code, _, _ := p.post("/api/sim/printer", body); code != 400 {
			t.Errorf("POST /api/sim/printer %s: %d", body, code)
		}
	}
}
