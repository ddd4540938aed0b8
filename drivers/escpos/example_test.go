package escpos_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/microretail/kioskd/drivers/escpos"
)

// A sale's receipt, printed on the emulator: what the sim board shows.
func Example() {
	printer := escpos.NewEmulator(escpos.Paper58)
	d, err := escpos.New(printer, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Halt()

	e := escpos.NewEncoder()
	e.Init()
	e.SetCodePage(escpos.PC858)
	e.Align(escpos.Center)
	e.Bold(true)
	e.Line("Chai Corner")
	e.Bold(false)
	e.Align(escpos.Left)
	e.Line("2x Chai                   Rs 120")
	e.Line("Total                     Rs 120")
	e.QRCode("sale-42", escpos.QR{ECC: escpos.ECCMedium})
	e.Pulse(2, 100, 200) // open the cash drawer
	e.Cut(true)
	if err := e.Err(); err != nil {
		log.Fatal(err)
	}
	if err := d.Print(e.Bytes()); err != nil {
		log.Fatal(err)
	}
	for _, r := range printer.Receipts() {
		fmt.Printf("job %s, cut %v, drawer %d\n%s\n", r.Job, r.Cut, r.Drawer, r.Text)
	}
	// Output:
	// job sale-42, cut true, drawer 1
	// Chai Corner
	// 2x Chai                   Rs 120
	// Total                     Rs 120
	// [qr sale-42]
	// [drawer 2]
}

// The printer ran out of paper in the middle of a receipt: it keeps the
// rest and prints it when a new roll goes in.
func ExampleDev_Print() {
	printer := escpos.NewEmulator(escpos.Paper58)
	d, err := escpos.New(printer, nil)
	if err != nil {
		log.Fatal(err)
	}
	printer.SetPaper(escpos.PaperOut)
	err = d.Print([]byte("receipt 7\n"))
	fmt.Println(errors.Is(err, escpos.ErrPaperOut), err)

	st, _ := d.Status()
	fmt.Println(st)
	printer.SetPaper(escpos.PaperOK)
	fmt.Println(d.Status())
	// Output:
	// true escpos: job not sent: escpos: paper out
	// offline, paper out
	// ok <nil>
}

// Each printer reply is told apart by its fixed bits.
func ExampleStatusReader() {
	var r escpos.StatusReader
	r.Feed([]byte{0x11, 0x1a, 0x18, 0x13, 0x00, 0x0f, 0x00, 0x55})
	for {
		rep, ok := r.Next()
		if !ok {
			break
		}
		switch rep.Kind {
		case escpos.RealTime:
			fmt.Printf("DLE EOT reply %02X\n", rep.Data[0])
		case escpos.AutoStatus:
			st, _ := escpos.DecodeASB(rep.Data)
			fmt.Printf("ASB % X: %v\n", rep.Data, st)
		default:
			fmt.Printf("%v %02X\n", rep.Kind, rep.Data[0])
		}
	}
	// Output:
	// DLE EOT reply 1A
	// ASB 18 00 0F 00: offline, paper out
	// garbage 55
}

// Text goes through the selected code page; what it cannot print, and
// Urdu, which the printer cannot join or set right to left, comes out as '?'.
func ExampleEncoder_SetCodePage() {
	printer := escpos.NewEmulator(escpos.Paper58)
	e := escpos.NewEncoder()
	e.Line("Café €2")
	e.SetCodePage(escpos.PC858)
	e.Line("Café €2")
	e.Line("شکریہ")
	printer.Write(e.Bytes())
	fmt.Println(printer.Receipts()[0].Text)
	// Output:
	// Café ?2
	// Café €2
	// ?????
}
