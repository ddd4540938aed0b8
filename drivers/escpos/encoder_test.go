package escpos

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/microretail/kioskd/drivers/barcode"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name.hex, or rewrites the file with -update.
func golden(t *testing.T, name, comment string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".hex")
	if *update {
		if err := os.WriteFile(path, []byte(dumpHex(comment, got)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readHex(t, path)
	if !bytes.Equal(got, want) {
		t.Errorf("%s: bytes differ from the golden file\n got:\n%s\nwant:\n%s", path, dumpHex("", got), dumpHex("", want))
	}
}

// dumpHex writes b one command per line, long ones 16 bytes a line.
func dumpHex(comment string, b []byte) string {
	var s strings.Builder
	for _, c := range strings.Split(comment, "\n") {
		if c != "" {
			fmt.Fprintf(&s, "# %s\n", c)
		}
	}
	for len(b) > 0 {
		_, n, err := scan(b)
		if err != nil || n > len(b) {
			n = len(b)
		}
		for tok := b[:n]; len(tok) > 0; {
			k := min(16, len(tok))
			fmt.Fprintf(&s, "% X\n", tok[:k])
			tok = tok[k:]
		}
		b = b[n:]
	}
	return s.String()
}

func readHex(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, line := range strings.Split(string(raw), "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, f := range strings.Fields(line) {
			b, err := hex.DecodeString(f)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out = append(out, b...)
		}
	}
	return out
}

// sampleReceipt is a stall's receipt using every kind of command.
func sampleReceipt() *Encoder {
	e := NewEncoder()
	e.Init()
	e.SetCodePage(PC858)
	e.Align(Center)
	e.Bold(true)
	e.Size(2, 2)
	e.Line("Chai Corner")
	e.Size(1, 1)
	e.Bold(false)
	e.Line("Saddar, Karachi")
	e.Align(Left)
	e.Line("2x Chai                   Rs 120")
	e.Line("1x Samosa                  Rs 40")
	e.Underline(1)
	e.Line("Total                     Rs 160")
	e.Underline(0)
	e.Line("Café crème €2")
	e.Pulse(2, 100, 200)
	e.Align(Center)
	e.QRCode("sale-000123", QR{ECC: ECCMedium})
	e.EAN13("896400012345")
	e.Feed(3)
	e.Cut(true)
	return e
}

const sampleText = `Chai Corner
Saddar, Karachi
2x Chai                   Rs 120
1x Samosa                  Rs 40
Total                     Rs 160
Café crème €2
[drawer 2]
[qr sale-000123]
[barcode EAN13 8964000123454]`

// checkered is a w×h image of black and white squares of 4 dots.
func checkered(w, h int) image.Image {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			if (x/4+y/4)%2 == 0 {
				img.SetGray(x, y, color.Gray{})
			} else {
				img.SetGray(x, y, color.Gray{Y: 0xff})
			}
		}
	}
	return img
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name, comment string
		build         func(e *Encoder) error
	}{
		{"receipt", "A whole receipt: ESC @, ESC t 19, alignment, bold, size, underline, text in PC858,\nESC p drawer pulse, QR Code, EAN-13, ESC d 3, GS V 66 0.",
			func(e *Encoder) error { *e = *sampleReceipt(); return e.Err() }},
		{"qr_kioskd", "QR Code \"kioskd\", model 2, module 6, ECC L: GS ( k functions 165, 167, 169, 180, 181.",
			func(e *Encoder) error { return e.QRCode("kioskd", QR{}) }},
		{"ean13", "EAN-13 4006381333931: GS h 80, GS w 3, GS H 2, GS k 67 13 digits.",
			func(e *Encoder) error { return e.EAN13("4006381333931") }},
		{"code128_b", "CODE128 \"Sale{42}\" in code set B: {B, '{' sent as {{.",
			func(e *Encoder) error { return e.Code128("Sale{42}") }},
		{"code128_c", "CODE128 \"20260401\" in code set C: {C, then 20 26 04 01 as bytes.",
			func(e *Encoder) error { return e.Code128("20260401") }},
		{"raster_300", "A 16×300 checkered image: GS v 0 bands of 255 and 45 rows, 2 bytes a row.",
			func(e *Encoder) error { return e.Image(checkered(16, 300)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEncoder()
			if err := tt.build(e); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, tt.comment, e.Bytes())
		})
	}
}

// TestQREpsonSequence checks the QR bytes against the GS ( k sample of the
// Epson reference, written out by hand.
func TestQREpsonSequence(t *testing.T) {
	want := []byte{
		0x1d, 0x28, 0x6b, 0x04, 0x00, 0x31, 0x41, 0x32, 0x00, // fn 165: model 2
		0x1d, 0x28, 0x6b, 0x03, 0x00, 0x31, 0x43, 0x06, // fn 167: module 6 dots
		0x1d, 0x28, 0x6b, 0x03, 0x00, 0x31, 0x45, 0x30, // fn 169: ECC L (48)
		0x1d, 0x28, 0x6b, 0x09, 0x00, 0x31, 0x50, 0x30, 'k', 'i', 'o', 's', 'k', 'd', // fn 180: pL = 6 + 3
		0x1d, 0x28, 0x6b, 0x03, 0x00, 0x31, 0x51, 0x30, // fn 181: print
	}
	e := NewEncoder()
	if err := e.QRCode("kioskd", QR{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.Bytes(), want) {
		t.Errorf("got\n% X\nwant\n% X", e.Bytes(), want)
	}
}

func TestEncoderCommands(t *testing.T) {
	tests := []struct {
		name  string
		build func(e *Encoder)
		want  []byte
	}{
		{"init", func(e *Encoder) { e.Init() }, []byte{0x1b, 0x40}},
		{"code page", func(e *Encoder) { e.SetCodePage(WPC1252) }, []byte{0x1b, 0x74, 16}},
		{"bold", func(e *Encoder) { e.Bold(true); e.Bold(false) }, []byte{0x1b, 0x45, 1, 0x1b, 0x45, 0}},
		{"underline", func(e *Encoder) { e.Underline(2) }, []byte{0x1b, 0x2d, 2}},
		{"size", func(e *Encoder) { e.Size(3, 8) }, []byte{0x1d, 0x21, 0x27}},
		{"align", func(e *Encoder) { e.Align(Right) }, []byte{0x1b, 0x61, 2}},
		{"align ends text", func(e *Encoder) { e.Text("a"); e.Align(Center) }, []byte{'a', 0x0a, 0x1b, 0x61, 1}},
		{"feed", func(e *Encoder) { e.Feed(4) }, []byte{0x1b, 0x64, 4}},
		{"cut full", func(e *Encoder) { e.Cut(false) }, []byte{0x1d, 0x56, 65, 0}},
		{"cut ends text", func(e *Encoder) { e.Text("x"); e.Cut(true) }, []byte{'x', 0x0a, 0x1d, 0x56, 66, 0}},
		{"pulse pin 5", func(e *Encoder) { e.Pulse(5, 50, 250) }, []byte{0x1b, 0x70, 1, 25, 125}},
		{"pulse now", func(e *Encoder) { e.PulseNow(2, 200) }, []byte{0x10, 0x14, 1, 0, 2}},
		{"text controls", func(e *Encoder) { e.Text("a\tb\r\x1b@\nc\u0085") }, []byte{'a', 'b', '@', 0x0a, 'c'}},
		{"text PC437", func(e *Encoder) { e.Text("é€ش") }, []byte{0x82, '?', '?'}},
		{"text WPC1256", func(e *Encoder) { e.SetCodePage(WPC1256); e.Text("é€ک") }, []byte{0x1b, 0x74, 50, 0xe9, 0x80, '?'}},
		{"EAN-8", func(e *Encoder) { e.EAN8("9638507") }, []byte{0x1d, 0x68, 80, 0x1d, 0x77, 3, 0x1d, 0x48, 2, 0x1d, 0x6b, 68, 8, '9', '6', '3', '8', '5', '0', '7', '4'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEncoder()
			tt.build(e)
			if e.Err() != nil {
				t.Fatal(e.Err())
			}
			if !bytes.Equal(e.Bytes(), tt.want) {
				t.Errorf("got % X, want % X", e.Bytes(), tt.want)
			}
		})
	}
}

func TestEncoderInvalid(t *testing.T) {
	long := strings.Repeat("A", 20)
	tests := []struct {
		name  string
		build func(e *Encoder) error
		also  error
	}{
		{"EAN-13 check digit", func(e *Encoder) error { return e.EAN13("8964000123455") }, barcode.ErrCheckDigit},
		{"EAN-13 letters", func(e *Encoder) error { return e.EAN13("89640001234x") }, barcode.ErrMalformed},
		{"EAN-13 length", func(e *Encoder) error { return e.EAN13("12345") }, nil},
		{"EAN-8 check digit", func(e *Encoder) error { return e.EAN8("96385070") }, barcode.ErrCheckDigit},
		{"CODE128 empty", func(e *Encoder) error { return e.Code128("") }, nil},
		{"CODE128 control", func(e *Encoder) error { return e.Code128("a\nb") }, nil},
		{"CODE128 non-ASCII", func(e *Encoder) error { return e.Code128("café") }, nil},
		{"CODE128 too wide", func(e *Encoder) error { return e.Code128(long) }, nil},
		{"QR empty", func(e *Encoder) error { return e.QRCode("", QR{}) }, nil},
		{"QR module", func(e *Encoder) error { return e.QRCode("x", QR{Module: 17}) }, nil},
		{"QR ECC", func(e *Encoder) error { return e.QRCode("x", QR{ECC: 4}) }, nil},
		{"QR too long", func(e *Encoder) error { return e.QRCode(strings.Repeat("a", 1274), QR{ECC: ECCHigh}) }, nil},
		{"image too wide", func(e *Encoder) error { return e.Image(checkered(392, 8)) }, nil},
		{"image empty", func(e *Encoder) error { return e.Image(image.NewGray(image.Rect(0, 0, 0, 5))) }, nil},
		{"underline", func(e *Encoder) error { e.Underline(3); return e.Err() }, nil},
		{"size", func(e *Encoder) error { e.Size(0, 2); return e.Err() }, nil},
		{"align", func(e *Encoder) error { e.Align(3); return e.Err() }, nil},
		{"feed", func(e *Encoder) error { e.Feed(256); return e.Err() }, nil},
		{"pulse pin", func(e *Encoder) error { e.Pulse(3, 100, 100); return e.Err() }, nil},
		{"pulse time", func(e *Encoder) error { e.Pulse(2, 600, 100); return e.Err() }, nil},
		{"pulse now time", func(e *Encoder) error { e.PulseNow(5, 900); return e.Err() }, nil},
		{"code page", func(e *Encoder) error { e.SetCodePage(CodePage{Name: "PC864", Number: 37}); return e.Err() }, nil},
		{"paper", func(e *Encoder) error { e.SetPaper(Paper{Columns: 32, Dots: 380}); return e.Err() }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEncoder()
			e.Line("before")
			n := len(e.Bytes())
			err := tt.build(e)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("err = %v, want it to wrap %v", err, tt.also)
			}
			if len(e.Bytes()) != n {
				t.Errorf("failed call wrote % X", e.Bytes()[n:])
			}
			// Sticky: later calls do nothing and keep the first error.
			e.Line("after")
			if e.Code128("123") != err || e.Err() != err || len(e.Bytes()) != n {
				t.Errorf("error not sticky: err %v, %d bytes", e.Err(), len(e.Bytes()))
			}
		})
	}
}

func TestPaper80(t *testing.T) {
	e := NewEncoder()
	e.SetPaper(Paper80)
	if err := e.Code128(strings.Repeat("A", 20)); err != nil {
		t.Errorf("20 characters on 80 mm: %v", err)
	}
	if err := e.Image(checkered(576, 1)); err != nil {
		t.Errorf("576 dots on 80 mm: %v", err)
	}
}

func TestCodePageByName(t *testing.T) {
	for _, name := range []string{"PC437", "pc850", "WPC1252", "Pc858", "wpc1256"} {
		if cp, err := CodePageByName(name); err != nil || !strings.EqualFold(cp.Name, name) {
			t.Errorf("%s: %v, %v", name, cp.Name, err)
		}
	}
	if _, err := CodePageByName("PC864"); !errors.Is(err, ErrInvalid) {
		t.Errorf("PC864: %v, want ErrInvalid", err)
	}
}

// TestImageBits checks the bit order and threshold of one raster row.
func TestImageBits(t *testing.T) {
	img := image.NewNRGBA(image.Rect(10, 20, 20, 21)) // not at the origin
	shades := []color.NRGBA{
		{0, 0, 0, 0xff}, {0xff, 0xff, 0xff, 0xff}, {0x7f, 0x7f, 0x7f, 0xff}, {0x80, 0x80, 0x80, 0xff},
		{0, 0, 0, 0}, {0, 0, 0, 0xc0}, {0xff, 0, 0, 0xff}, {0, 0xff, 0, 0xff}, {0, 0, 0xff, 0xff}, {0, 0, 0, 0xff},
	}
	for i, c := range shades {
		img.SetNRGBA(10+i, 20, c)
	}
	e := NewEncoder()
	if err := e.Image(img); err != nil {
		t.Fatal(err)
	}
	// black, white, dark grey, light grey, transparent, 75 % black, red, green, blue, black
	want := []byte{0x1d, 0x76, 0x30, 0, 2, 0, 1, 0, 0b1010_0110, 0b1100_0000}
	if !bytes.Equal(e.Bytes(), want) {
		t.Errorf("got % X, want % X", e.Bytes(), want)
	}
}
