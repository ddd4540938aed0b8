package receipt

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/firmware/ledger"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var karachi = time.FixedZone("PKT", 5*3600)

func layout(p escpos.Paper) Layout {
	return Layout{Paper: p, CodePage: escpos.PC858, Location: karachi, Shop: Shop{
		Name: "Burns Road Chai Stall", Address: "Shop 7, Burns Road, Karachi", Phone: "0300 1234567",
		Footer: []string{"Shukriya! Come again.", "Refunds within 7 days with this receipt."},
		Offer:  "Chai every morning: weekly plan Rs 500, sign up at the counter.",
	}}
}

func entries() map[string]ledger.Entry {
	at := time.Date(2026, 11, 23, 14, 5, 0, 0, time.UTC)
	id := ledger.ID{Ledger: 0x9f3a2c7e01b4d855, Seq: 42}
	sale := ledger.Entry{Seq: 42, ID: id, Kind: ledger.KindSale, KioskID: "burns-road-07", Time: at,
		Payment: ledger.PaymentCash, Currency: "PKR", Tendered: 500000, Lines: []ledger.Line{
			{SKU: "CHAI", Name: "Doodh patti chai", Qty: 2, Price: 8000},
			{SKU: "SAMOSA", Name: "Aloo samosa", Qty: 1, Price: 5000},
			{SKU: "PARATHA", Name: "Aloo paratha with extra achaar and raita on the side", Qty: 3, Price: 123456},
		}}
	wallet := sale
	wallet.ID.Seq, wallet.Seq, wallet.Payment, wallet.Tendered, wallet.Card = 43, 43, ledger.PaymentWallet, 0, []byte{0x04, 0xa2, 0x2b, 0x91}
	refund := sale
	refund.ID.Seq, refund.Seq, refund.Kind, refund.RefundOf, refund.Tendered = 44, 44, ledger.KindRefund, 42, 0
	topUp := ledger.Entry{Seq: 45, ID: ledger.ID{Ledger: id.Ledger, Seq: 45}, Kind: ledger.KindTopUp, KioskID: "burns-road-07",
		Time: at, Payment: ledger.PaymentCash, Currency: "PKR", Card: []byte{0x04, 0xa2, 0x2b, 0x91},
		Lines: []ledger.Line{{SKU: "WALLET-TOPUP", Name: "Wallet top-up", Qty: 1, Price: 200000}}}
	sub := ledger.Entry{Seq: 46, ID: ledger.ID{Ledger: id.Ledger, Seq: 46}, Kind: ledger.KindSubscription, KioskID: "burns-road-07",
		Time: at, Payment: ledger.PaymentCash, Currency: "PKR", Phone: "03001234567", Plan: "weekly",
		Lines: []ledger.Line{{SKU: "SUB-W", Name: "Weekly chai", Qty: 1, Price: 50000}}}
	return map[string]ledger.Entry{"sale": sale, "wallet": wallet, "refund": refund, "topup": topUp, "subscription": sub}
}

// TestRoundTrip prints every kind of entry on both paper widths through
// the emulated printer and reads back what it printed.
// printOn feeds b to an emulated printer with paper p and returns what it
// printed.
func printOn(t *testing.T, p escpos.Paper, b []byte) []escpos.Receipt {
	t.Helper()
	em := escpos.NewEmulator(p)
	if _, err := em.Write(b); err != nil {
		t.Fatal(err)
	}
	return em.Receipts()
}

func TestRoundTrip(t *testing.T) {
	for _, p := range []escpos.Paper{escpos.Paper58, escpos.Paper80} {
		for name, e := range entries() {
			t.Run(fmt.Sprintf("%s/%dcol", name, p.Columns), func(t *testing.T) {
				b, err := layout(p).Entry(e, 0)
				if err != nil {
					t.Fatal(err)
				}
				got := printOn(t, p, b)
				if len(got) != 1 || !got[0].Cut || got[0].Job != e.ID.String() {
					t.Fatalf("receipts %+v", got)
				}
				text := got[0].Text
				want := []string{"Burns Road", "Shukriya!", e.ID.String(), "[qr " + e.ID.String() + "]", Money("PKR", e.Total())}
				switch name {
				case "sale":
					want = append(want, "SALE", "Doodh patti chai", "2 x 80.00", "160.00", "Cash", "5,000.00", "Change",
						Amount(e.Change()), "weekly plan", "3 x 1,234.56", "3,703.68", "23 Nov 2026 19:05")
				case "wallet":
					want = append(want, "wallet card ...2B91")
				case "refund":
					want = append(want, "REFUND", "Refund of 9f3a2c7e01b4d855-42", "REFUNDED")
				case "topup":
					want = append(want, "WALLET TOP-UP", "Credited to", "...2B91")
				case "subscription":
					want = append(want, "SUBSCRIPTION", "weekly", "********567")
				}
				for _, w := range want {
					if !strings.Contains(text, w) {
						t.Errorf("receipt lacks %q:\n%s", w, text)
					}
				}
				if e.Kind != ledger.KindSale && strings.Contains(text, "weekly plan") {
					t.Errorf("the offer is on a %s receipt", name)
				}
				for _, line := range strings.Split(text, "\n") {
					if n := utf8.RuneCountInString(line); n > p.Columns && !strings.HasPrefix(line, "[") {
						t.Errorf("line of %d columns on %d-column paper: %q", n, p.Columns, line)
					}
				}
			})
		}
	}
}

// TestGolden compares the bytes of a sale receipt on both papers with the
// files in testdata, byte for byte, and keeps the decoded text beside them
// for people to read.
func TestGolden(t *testing.T) {
	for _, p := range []escpos.Paper{escpos.Paper58, escpos.Paper80} {
		name := "sale58"
		if p == escpos.Paper80 {
			name = "sale80"
		}
		b, err := layout(p).Entry(entries()["sale"], 0)
		if err != nil {
			t.Fatal(err)
		}
		em := escpos.NewEmulator(p)
		if _, err := em.Write(b); err != nil {
			t.Fatal(err)
		}
		text := []byte(em.Receipts()[0].Text)
		for file, got := range map[string][]byte{name + ".bin": b, name + ".txt": text} {
			path := filepath.Join("testdata", file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden file (run go test -update and review the diff)", path)
			}
		}
	}
}

func TestReprintSaysSo(t *testing.T) {
	b, err := layout(escpos.Paper58).Entry(entries()["sale"], 2)
	if err != nil {
		t.Fatal(err)
	}
	em := escpos.NewEmulator(escpos.Paper58)
	_, _ = em.Write(b)
	if r := em.Receipts(); len(r) != 1 || !strings.Contains(r[0].Text, "REPRINT, COPY 2") {
		t.Fatalf("%+v", r)
	}
}

func TestAmount(t *testing.T) {
	for in, want := range map[int64]string{0: "0.00", 5: "0.05", 100: "1.00", 123456: "1,234.56", 100000000: "1,000,000.00", -2550: "-25.50"} {
		if got := Amount(in); got != want {
			t.Errorf("Amount(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestWrap(t *testing.T) {
	got := wrap("Aloo paratha with extraordinarilylongword", 10)
	want := []string{"Aloo", "paratha", "with", "extraordin", "arilylongw", "ord"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("wrap = %q", got)
	}
	if got := wrap("", 10); len(got) != 0 {
		t.Fatalf("wrap of nothing = %q", got)
	}
}

// BenchmarkSaleReceipt lays out a three-line cash sale on 58 mm paper: the
// work on the checkout path before a receipt is sent.
func BenchmarkSaleReceipt(b *testing.B) {
	l, e := layout(escpos.Paper58), entries()["sale"]
	var n int
	for b.Loop() {
		out, err := l.Entry(e, 0)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.ReportMetric(float64(n), "bytes/receipt")
	// At 19200 baud a byte takes 11 bit times on the wire.
	b.ReportMetric(float64(n)*11/19200*1000, "wire-ms@19200")
}

func TestZReport(t *testing.T) {
	r := ledger.Report{
		Day:           ledger.Day(20415),
		Sales:         ledger.Sum{Count: 42, Amount: 1234500},
		Subscriptions: ledger.Sum{Count: 2, Amount: 300000},
		TopUps:        ledger.Sum{Count: 3, Amount: 150000},
		Refunds:       ledger.Sum{Count: 1, Amount: 8000},
		NetRevenue:    1526500,
		ByPayment: map[string]ledger.PaymentTotals{
			"cash":   {In: ledger.Sum{Count: 40, Amount: 1384500}, Out: ledger.Sum{Count: 1, Amount: 8000}, Net: 1376500},
			"wallet": {In: ledger.Sum{Count: 7, Amount: 300000}, Net: 300000},
		},
	}
	for _, p := range []escpos.Paper{escpos.Paper58, escpos.Paper80} {
		b, err := layout(p).ZReport(r, "karachi-07", "PKR", time.Date(2026, 11, 24, 2, 30, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		got := printOn(t, p, b)
		if len(got) != 1 || !got[0].Cut {
			t.Fatalf("%d columns: printed %+v", p.Columns, got)
		}
		for _, w := range []string{"Burns Road", "Z-REPORT " + r.Day.String(), "karachi-07", "Sales (42)", "12,345.00",
			"Subscriptions (2)", "Refunds (1)", "80.00", "Wallet top-ups (3)", "Rs 15,265.00", "CASH", "In (40)",
			"13,765.00", "WALLET CARDS", "3,000.00"} {
			if !strings.Contains(got[0].Text, w) {
				t.Errorf("%d columns: the Z-report lacks %q:\n%s", p.Columns, w, got[0].Text)
			}
		}
	}
}
