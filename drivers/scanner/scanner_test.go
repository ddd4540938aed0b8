package scanner

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/microretail/kioskd/drivers/barcode"
	"github.com/microretail/kioskd/internal/testclock"
)

func nowZero() time.Time { return time.Time{} }

var epoch = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name, in, code string
		sym            barcode.Symbology
		err            error
	}{
		{"EAN-13", "8964000123454", "8964000123454", barcode.EAN13, nil},
		{"EAN-13 bad check digit", "8964000123455", "", barcode.EAN13, barcode.ErrCheckDigit},
		{"EAN-8", "96385074", "96385074", barcode.EAN8, nil},
		{"UPC-A normalised", "036000291452", "0036000291452", barcode.UPCA, nil},
		{"UPC-A bad check digit", "036000291453", "", barcode.UPCA, barcode.ErrCheckDigit},
		{"CODE128 text", "KIOSK-42/A", "KIOSK-42/A", barcode.Text, nil},
		{"QR UTF-8", "https://microretail.pk/w?n=café", "https://microretail.pk/w?n=café", barcode.Text, nil},
		{"control character", "ABC\x1d123", "", barcode.Text, barcode.ErrMalformed},
		{"C1 control", "ABC\u0085", "", barcode.Text, barcode.ErrMalformed},
		{"invalid UTF-8", "caf\xe9", "", barcode.Text, barcode.ErrMalformed},
		{"empty", "", "", barcode.Text, barcode.ErrMalformed},
		{"too long", strings.Repeat("A", barcode.MaxLen+1), "", barcode.Text, ErrInvalid},
		{"longest", strings.Repeat("A", barcode.MaxLen), strings.Repeat("A", barcode.MaxLen), barcode.Text, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, sym, err := Validate(tt.in)
			if tt.err != nil {
				if !errors.Is(err, ErrInvalid) || !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want ErrInvalid and %v", err, tt.err)
				}
				return
			}
			if err != nil || code != tt.code || sym != tt.sym {
				t.Fatalf("Validate = %q, %s, %v; want %q, %s", code, sym, err, tt.code, tt.sym)
			}
		})
	}
}

func TestDedup(t *testing.T) {
	type step struct {
		after time.Duration // clock advance before the scan
		code  string
		want  bool
	}
	for _, tt := range []struct {
		name   string
		window time.Duration
		steps  []step
	}{
		{"repeat inside the window", time.Second, []step{{0, "A", true}, {900 * time.Millisecond, "A", false}}},
		{"repeat after the window", time.Second, []step{{0, "A", true}, {time.Second, "A", true}}},
		{"each sighting restarts the window", time.Second, []step{
			{0, "A", true}, {800 * time.Millisecond, "A", false}, {800 * time.Millisecond, "A", false}, {1001 * time.Millisecond, "A", true}}},
		{"another code in between", time.Second, []step{{0, "A", true}, {10 * time.Millisecond, "B", true}, {10 * time.Millisecond, "A", true}}},
		{"zero window is the default", 0, []step{{0, "A", true}, {DefaultDedupWindow - time.Millisecond, "A", false}}},
		{"short window", 100 * time.Millisecond, []step{{0, "A", true}, {150 * time.Millisecond, "A", true}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := testclock.New(epoch)
			d := &Dedup{Window: tt.window, Clock: clk.Now}
			for i, s := range tt.steps {
				clk.Advance(s.after)
				if got := d.Admit(s.code); got != s.want {
					t.Fatalf("step %d: Admit(%s) = %t, want %t", i, s.code, got, s.want)
				}
			}
		})
	}
}
