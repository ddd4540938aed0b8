// Package escpos drives ESC/POS thermal receipt printers: the Epson
// TM-T20 and TM-T88 class, and the 58 and 80 mm clones sold to stalls
// (Cashino CSN-A2, Xprinter, GOOJPRT). Encoder builds a receipt's
// commands; Dev sends them over a Port and reads the printer's status;
// StatusReader splits the reply stream; Emulator is the printer, for tests
// and the sim board.
//
// References:
//   - Epson ESC/POS Command Reference for TM printers, Ver. 10.01, with the
//     TM-L60II technical information Ver. 4.0 for GS a: command formats and
//     lengths; DLE EOT n replies (n=1 printer, 2 offline cause, 3 error
//     cause, 4 roll paper sensor); GS a and its four ASB bytes; GS ( k QR
//     functions 165, 167, 169, 180 and 181; GS k (EAN-13 as m=67 with all
//     13 digits, EAN-8 m=68, CODE128 m=73 with {A/{B/{C and "{{"); GS v 0;
//     GS V 65/66 n; ESC p (t×2 ms); DLE DC4 1 m t (t×100 ms).
//   - Citizen CT-S310 and CBM-1000 manuals, "Identification of send
//     status", which follow Epson: a DLE EOT reply is 0xx1xx10, the first
//     ASB byte 0xx1xx00 and the other three 0xx0xxxx; XON (0x11) and XOFF
//     (0x13) fit neither, and XOFF may come inside an ASB packet.
//   - escpos-printer-db (receipt-print-hq), ESC t numbers: Epson TM-T20II
//     PC437 0, PC850 2, WPC1252 16, PC858 19, PC864 37, WPC1256 50;
//     Zjiang POS-5890 PC864 28 and 63, WPC1256 92.
//   - Adafruit Thermal Printer Library, Adafruit_Thermal.cpp: the pacing
//     model and its constants (see Timing), and ESC 7 n1 n2 n3, the CSN-A2
//     heating command.
//
// Code pages. ESC t numbers are the maker's: the CodePage values are
// Epson's, and a clone may number the same table differently (set
// CodePage.Number). PC864, the Arabic page with joined letter forms, is
// not offered: golang.org/x/text has no mapping for it. Urdu and Arabic
// need their letters joined (shaping) and set right to left, which ESC/POS
// printers do not do: printed from WPC1256 they would come out as separate
// letters in the wrong order. So Text prints '?' for Arabic-script
// characters on every page; print Urdu as an Image the host renders.
//
// Known issues:
//   - A printer watches every byte it receives for real-time commands,
//     even inside image, bar code and QR data: bytes 10 04 0n there make it
//     send a status byte, 10 14 01 0m 0t kick the drawer. The Emulator does
//     the same; Dev discards stale replies before each status request.
//   - Without flow control a clone loses bytes once its buffer is full:
//     set Opts.Pace. With DTR/DSR or XON/XOFF set up on the UART, or on
//     USB, leave it nil. Pacing cannot see the paper run out: a job that
//     stops then loses what does not fit the buffer, and Print's error
//     means "print it again".
//   - Status requests while the printer is offline take 3 bytes each of
//     its receive buffer until it prints again.
//   - DLE EOT 3 bit 2 (a "mechanical" or "recoverable" error) depends on
//     the model; it counts as a recoverable error here.
package escpos
