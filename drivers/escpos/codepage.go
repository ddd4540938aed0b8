package escpos

import (
	"fmt"
	"strings"

	"golang.org/x/text/encoding/charmap"
)

// CodePage is a character code table the printer selects with ESC t n,
// with the mapping of the characters it can print. Number is the n of
// ESC t and differs between makers; the values here are Epson's (TM-T20,
// TM-T88). For a clone, copy the page and set its own Number:
//
//	cp := escpos.WPC1256
//	cp.Number = 92 // Zjiang POS-5890
type CodePage struct {
	Name   string
	Number byte
	cm     *charmap.Charmap
}

// Code pages, with their ESC t numbers on Epson TM printers.
var (
	PC437   = CodePage{Name: "PC437", Number: 0, cm: charmap.CodePage437}    // USA, standard Europe; the power-on page
	PC850   = CodePage{Name: "PC850", Number: 2, cm: charmap.CodePage850}    // Multilingual Latin-1
	WPC1252 = CodePage{Name: "WPC1252", Number: 16, cm: charmap.Windows1252} // Windows Latin-1, with €
	PC858   = CodePage{Name: "PC858", Number: 19, cm: charmap.CodePage858}   // PC850 with € at 0xD5
	WPC1256 = CodePage{Name: "WPC1256", Number: 50, cm: charmap.Windows1256} // Windows Arabic; see the package doc on Urdu
)

var codePages = []CodePage{PC437, PC850, WPC1252, PC858, WPC1256}

// CodePageByName returns the code page called name (PC437, PC850,
// WPC1252, PC858 or WPC1256), ignoring case.
func CodePageByName(name string) (CodePage, error) {
	for _, cp := range codePages {
		if strings.EqualFold(cp.Name, name) {
			return cp, nil
		}
	}
	return CodePage{}, fmt.Errorf("%w: code page %q (have PC437, PC850, WPC1252, PC858, WPC1256)", ErrInvalid, name)
}

// pageByNumber is the page an Epson printer selects with ESC t n.
func pageByNumber(n byte) (CodePage, bool) {
	for _, cp := range codePages {
		if cp.Number == n {
			return cp, true
		}
	}
	return CodePage{}, false
}

// encode maps r to the byte that prints it, or '?' when the page has no
// such character, r is in a script the printer cannot shape, or it would
// land on a control code.
func (cp CodePage) encode(r rune) byte {
	if needsShaping(r) {
		return '?'
	}
	b, ok := cp.cm.EncodeRune(r)
	if !ok || b < 0x20 || b == 0x7f {
		return '?'
	}
	return b
}

// decode is the character the printer prints for b.
func (cp CodePage) decode(b byte) rune {
	if cp.cm == nil {
		return rune(b)
	}
	return cp.cm.DecodeByte(b)
}

// needsShaping reports whether r belongs to the Arabic script (Urdu,
// Arabic, Persian): its letters join and run right to left, and a receipt
// printer prints code page characters unjoined, left to right.
func needsShaping(r rune) bool {
	return (r >= 0x0600 && r <= 0x06ff) || (r >= 0x0750 && r <= 0x077f) ||
		(r >= 0x08a0 && r <= 0x08ff) || (r >= 0xfb50 && r <= 0xfdff) || (r >= 0xfe70 && r <= 0xfeff)
}
