package scanner_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/microretail/kioskd/drivers/scanner"
)

// A keyboard-wedge scanner as the sim board runs it: the emulator types
// into a pipe, the HID source reads the input_event records from it.
func Example() {
	r, w, err := os.Pipe()
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	src := scanner.NewHIDReader(r, "sim", nil)
	scans := make(chan scanner.Scan, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(s scanner.Scan) { scans <- s }) }()

	kb, err := scanner.NewKeyboardEmulator(w, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := kb.Type("036000291452"); err != nil {
		log.Fatal(err)
	}
	s := <-scans
	fmt.Println(s.Code, s.Symbology, s.Source)
	cancel()
	fmt.Println(<-done)
	// Output:
	// 0036000291452 UPC-A hid sim
	// <nil>
}

func ExampleValidate() {
	for _, code := range []string{"8964000123454", "8964000123455", "036000291452", "KIOSK-42", "ABC\x1d42"} {
		norm, sym, err := scanner.Validate(code)
		fmt.Printf("%q: %q %s %t\n", code, norm, sym, errors.Is(err, scanner.ErrInvalid))
	}
	// Output:
	// "8964000123454": "8964000123454" EAN-13 false
	// "8964000123455": "" EAN-13 true
	// "036000291452": "0036000291452" UPC-A false
	// "KIOSK-42": "KIOSK-42" text false
	// "ABC\x1d42": "" text true
}

func ExampleDedup() {
	now := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	d := &scanner.Dedup{Window: time.Second, Clock: func() time.Time { return now }}
	fmt.Println(d.Admit("8964000123454"))
	now = now.Add(300 * time.Millisecond) // the scanner sends it again
	fmt.Println(d.Admit("8964000123454"))
	now = now.Add(2 * time.Second) // a second tin of the same
	fmt.Println(d.Admit("8964000123454"))
	// Output:
	// true
	// false
	// true
}
