package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/microretail/kioskd/firmware/ledger"
)

func TestLedgerVerifyAndDump(t *testing.T) {
	data := t.TempDir()
	l, err := ledger.Open(filepath.Join(data, "ledger"), ledger.Options{KioskID: "stall-9"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		_, err := l.Append(context.Background(), ledger.Draft{Kind: ledger.KindSale, Payment: ledger.PaymentCash,
			IdempotencyKey: string(rune('a' + i)), Lines: []ledger.Line{{SKU: "CHAI", Name: "Chai", Qty: 1, Price: 8000}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// While kioskd holds the ledger, the tool says so.
	var out, errs bytes.Buffer
	if code := run([]string{"ledger", "verify", "--data", data}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "stop it first") {
		t.Fatalf("verify of a locked ledger: %d %s", code, errs.String())
	}
	l.Close()

	out.Reset()
	if code := run([]string{"ledger", "verify", "--data", data}, &out, &errs); code != 0 {
		t.Fatalf("verify: %d %s %s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "5 entries") || !strings.Contains(out.String(), "stall-9") {
		t.Fatalf("verify said %q", out.String())
	}
	out.Reset()
	if code := run([]string{"ledger", "dump", "--data", data, "--from", "2", "--limit", "3"}, &out, &errs); code != 0 {
		t.Fatalf("dump: %d %s", code, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("dump printed %d lines", len(lines))
	}
	var e ledger.Entry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e.Seq != 2 || e.KioskID != "stall-9" {
		t.Fatalf("first dumped entry %+v %v", e, err)
	}
	if code := run([]string{"ledger", "verify"}, &out, &errs); code != 2 {
		t.Fatalf("verify without --data: %d", code)
	}
	if code := run([]string{"nonsense"}, &out, &errs); code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
}
