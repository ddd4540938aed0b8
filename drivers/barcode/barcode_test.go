package barcode

import (
	"errors"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		code string
		want Symbology
		err  error
	}{
		{"8964000123454", EAN13, nil}, // 896: GS1 Pakistan
		{"4006381333931", EAN13, nil},
		{"4006381333932", EAN13, ErrCheckDigit},
		{"96385074", EAN8, nil},
		{"96385075", EAN8, ErrCheckDigit},
		{"036000291452", UPCA, nil},
		{"036000291453", UPCA, ErrCheckDigit},
		{"12345", Text, nil},
		{"9f3a2c7e01b4d855-42", Text, nil},
		{"", Text, ErrMalformed},
		{"abc\x00", Text, ErrMalformed},
		{"caf\xc3\xa9", Text, ErrMalformed},
	} {
		got, err := Classify(tc.code)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Classify(%q) = %s, %v; want %s, %v", tc.code, got, err, tc.want, tc.err)
		}
	}
}

func TestNormalize(t *testing.T) {
	if got := Normalize("036000291452"); got != "0036000291452" {
		t.Fatalf("UPC-A: %s", got)
	}
	if _, err := Classify(Normalize("036000291452")); err != nil {
		t.Fatalf("normalised UPC-A is not a valid EAN-13: %v", err)
	}
	for _, c := range []string{"8964000123454", "96385074", "036000291453", "TEXT"} {
		if got := Normalize(c); got != c {
			t.Errorf("Normalize(%s) = %s", c, got)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("8964000123454")
	f.Add("036000291452")
	f.Fuzz(func(t *testing.T, code string) {
		s, err := Classify(code)
		if err == nil && s != Text {
			d, _ := CheckDigit(code[:len(code)-1])
			if d != code[len(code)-1] {
				t.Fatalf("accepted %s with a bad check digit", code)
			}
		}
	})
}
