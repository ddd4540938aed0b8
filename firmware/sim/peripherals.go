package sim

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/drivers/scanner"
	"github.com/microretail/kioskd/firmware/httpjson"
)

// The sim board's receipt printer and barcode scanner. The printer is the
// escpos emulator, which the printer driver talks to in memory. The
// scanner is a USB keyboard-wedge scanner as evdev presents it: the
// emulator writes real input_event records into a pipe, and the scanner
// driver reads them from the other end exactly as from /dev/input/event*.

// newPeripherals adds the printer and the scanner the sim profile wires.
func (w *World) newPeripherals(paper escpos.Paper) error {
	w.Printer = escpos.NewEmulator(paper)
	r, wr, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sim: scanner pipe: %w", err)
	}
	kb, err := scanner.NewKeyboardEmulator(wr, nil)
	if err != nil {
		r.Close()
		wr.Close()
		return err
	}
	w.scanIn, w.scanOut, w.keyboard = r, wr, kb
	return nil
}

// ScannerInput is the device end of the emulated scanner: what the scanner
// driver reads input_event records from.
func (w *World) ScannerInput() io.Reader { return w.scanIn }

// Scan has the emulated scanner read code: it types it, key by key, with
// the Enter suffix, as a USB scanner does.
func (w *World) Scan(code string) error {
	if w.keyboard == nil {
		return errors.New("sim: this board has no emulated scanner")
	}
	// Nothing may be reading (the scanner disabled, or configured to a
	// real device): a full pipe fails the scan instead of hanging it.
	if err := w.scanOut.SetWriteDeadline(time.Now().Add(scanTimeout)); err != nil {
		return err
	}
	if err := w.keyboard.Type(code); err != nil {
		return fmt.Errorf("sim: the scanner driver is not reading: %w", err)
	}
	return nil
}

// scanTimeout bounds typing one code into the scanner pipe.
const scanTimeout = 5 * time.Second

// Close unplugs the emulated scanner, which ends its driver's reads.
func (w *World) Close() error {
	if w.scanOut == nil {
		return nil
	}
	err := w.scanOut.Close()
	_ = w.scanIn.Close()
	return err
}

// PrinterState is what GET /api/sim/printer returns.
type PrinterState struct {
	Receipts []escpos.Receipt `json:"receipts"`
	Paper    string           `json:"paper"`
	Cover    string           `json:"cover"`
	Printed  int              `json:"printed"` // bytes the printer has processed
	Held     int              `json:"held"`    // bytes waiting in its buffer while it cannot print
}

func (w *World) printerState() PrinterState {
	p := w.Printer
	s := PrinterState{Receipts: p.Receipts(), Paper: string(p.Paper()), Cover: "closed", Printed: p.Printed(), Held: p.Held()}
	if s.Receipts == nil {
		s.Receipts = []escpos.Receipt{}
	}
	if p.CoverOpen() {
		s.Cover = "open"
	}
	return s
}

func (w *World) getPrinter(rw http.ResponseWriter, r *http.Request) {
	if w.Printer == nil {
		httpjson.Error(rw, http.StatusNotFound, "sim: this board has no emulated printer")
		return
	}
	httpjson.Write(rw, http.StatusOK, w.printerState())
}

func (w *World) postPrinter(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		Paper *string `json:"paper"`
		Cover *string `json:"cover"`
	}
	if err := httpjson.Decode(rw, r, &req, maxBody); err != nil {
		fail(rw, err)
		return
	}
	if w.Printer == nil {
		httpjson.Error(rw, http.StatusNotFound, "sim: this board has no emulated printer")
		return
	}
	if req.Paper == nil && req.Cover == nil {
		fail(rw, errors.New(`sim: give "paper" (ok, near_end or out) or "cover" (open or closed)`))
		return
	}
	if req.Paper != nil && !escpos.PaperLevel(*req.Paper).Valid() {
		fail(rw, fmt.Errorf("sim: paper %q: want ok, near_end or out", *req.Paper))
		return
	}
	if req.Cover != nil && *req.Cover != "open" && *req.Cover != "closed" {
		fail(rw, fmt.Errorf("sim: cover %q: want open or closed", *req.Cover))
		return
	}
	if req.Paper != nil {
		w.Printer.SetPaper(escpos.PaperLevel(*req.Paper))
	}
	if req.Cover != nil {
		w.Printer.SetCover(*req.Cover == "open")
	}
	httpjson.Write(rw, http.StatusOK, w.printerState())
}

func (w *World) postScan(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		Code string `json:"code"`
	}
	if err := httpjson.Decode(rw, r, &req, maxBody); err != nil {
		fail(rw, err)
		return
	}
	if req.Code == "" || len(req.Code) > 256 {
		fail(rw, errors.New(`sim: "code" is required, at most 256 characters`))
		return
	}
	if err := w.Scan(req.Code); err != nil {
		fail(rw, err)
		return
	}
	httpjson.Write(rw, http.StatusOK, map[string]any{"code": req.Code, "typed": true})
}
