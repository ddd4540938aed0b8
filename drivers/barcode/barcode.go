// Package barcode knows the symbologies a kiosk scans and prints: the GS1
// retail codes EAN-13, EAN-8 and UPC-A with their mod-10 check digits, and
// plain text codes (CODE128, QR payloads). The scanner driver validates what
// it reads with it, the printer driver what it encodes, the till what it
// looks up.
//
// Reference: GS1 General Specifications, section 7.9 (check digit
// calculation for GTIN-8, GTIN-12 and GTIN-13).
package barcode

import (
	"errors"
	"fmt"
)

// Symbology is the kind of code a string is.
type Symbology int

// The symbologies told apart by Classify.
const (
	Text  Symbology = iota // anything else: CODE128 text, a QR payload
	EAN13                  // 13 digits, GTIN-13
	EAN8                   // 8 digits, GTIN-8
	UPCA                   // 12 digits, GTIN-12
)

func (s Symbology) String() string {
	switch s {
	case EAN13:
		return "EAN-13"
	case EAN8:
		return "EAN-8"
	case UPCA:
		return "UPC-A"
	}
	return "text"
}

// Errors Classify returns.
var (
	ErrCheckDigit = errors.New("barcode: bad check digit")
	ErrMalformed  = errors.New("barcode: malformed")
)

// MaxLen bounds a code; scanners and QR receipts stay far below it.
const MaxLen = 256

// CheckDigit computes the GS1 mod-10 check digit for the digits of a GTIN
// without its check digit: from the right, digits are weighted 3, 1, 3, …
// and the check digit brings the sum up to a multiple of ten.
func CheckDigit(body string) (byte, error) {
	sum := 0
	for i := 0; i < len(body); i++ {
		c := body[len(body)-1-i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q is not all digits", ErrMalformed, body)
		}
		w := 1
		if i%2 == 0 {
			w = 3
		}
		sum += int(c-'0') * w
	}
	return byte('0' + (10-sum%10)%10), nil
}

// Classify tells which symbology code is and checks it: an all-digit code of
// 8, 12 or 13 digits must carry a correct check digit. Other codes are text,
// which must be printable ASCII.
func Classify(code string) (Symbology, error) {
	if code == "" || len(code) > MaxLen {
		return Text, fmt.Errorf("%w: code of %d bytes", ErrMalformed, len(code))
	}
	digits := true
	for i := 0; i < len(code); i++ {
		c := code[i]
		if c < 0x20 || c > 0x7e {
			return Text, fmt.Errorf("%w: byte 0x%02x at %d", ErrMalformed, c, i)
		}
		if c < '0' || c > '9' {
			digits = false
		}
	}
	var s Symbology
	switch {
	case !digits:
		return Text, nil
	case len(code) == 13:
		s = EAN13
	case len(code) == 8:
		s = EAN8
	case len(code) == 12:
		s = UPCA
	default:
		return Text, nil
	}
	want, _ := CheckDigit(code[:len(code)-1])
	if code[len(code)-1] != want {
		return s, fmt.Errorf("%w: %s %s should end in %c", ErrCheckDigit, s, code, want)
	}
	return s, nil
}

// Normalize maps a code to the form a catalog is keyed by: a UPC-A code is
// the EAN-13 code with a leading zero (scanners are often set to send one
// or the other), everything else is itself.
func Normalize(code string) string {
	if s, err := Classify(code); err == nil && s == UPCA {
		return "0" + code
	}
	return code
}
