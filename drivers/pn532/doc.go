// Package pn532 drives the NXP PN532 NFC controller in I2C mode, as on the
// Elechouse and Adafruit PN532 boards: the kiosk's reader for loyalty
// cards and NTAG stickers. It finds one ISO/IEC 14443 Type A card at a
// time, reads NTAG/Ultralight pages and releases the card. Emulator is the
// chip, for tests and the sim board.
//
// References:
//   - NXP PN532/C1 Near Field Communication (NFC) controller, product short
//     data sheet, Rev. 3.2, 20 September 2012 (I2C address 0x48/0x49,
//     8-bit form: 0x24 here).
//   - NXP UM0701-02 PN532 User Manual, Rev. 02, 5 November 2007, firmware
//     V1.6 (PN532/C106): frames (§6.2), commands (chapter 7), error codes
//     (Table 6).
//   - NXP AN10609_3 PN532 C106 application note, Rev. 1.2, 5 January 2010.
//   - NXP NTAG213/215/216 data sheet, Rev. 3.2, June 2015 (the emulated card).
//
// Protocol: every command is a frame (see EncodeFrame) that the chip
// acknowledges with an ACK frame before it runs it and answers with a
// response frame. Over I2C every read starts with a status byte whose bit 0
// says a frame is waiting; the driver polls it every Opts.Poll, or waits
// for the P70_IRQ line to fall when Opts.IRQ is set (falling back to
// watching its level when the line cannot raise edges). Anything but an
// ACK makes the driver send the command again; a corrupt response is asked
// for again with a NACK frame; when Opts.Timeout runs out, or Poll's
// context ends, the driver sends an ACK frame, which aborts the command
// (UM0701 §6.2.1.3), and returns ErrTimeout or the context's error.
//
// Known issues:
//   - The C106 starts in its LowVbat mode; SAMConfiguration takes it out
//     (AN10609_3 §"Low battery mode"). Init sends it right after the
//     identity check.
//   - A power-on reset also restores MxRtyPassiveActivation to 0xFF, with
//     which InListPassiveTarget waits for ever: after a brownout, Poll on
//     an empty field ends in ErrTimeout and ReadPages in ErrTargetLost
//     until Init runs again.
//   - The IRQ line is P70_IRQ; P32_INT0 is the H_REQ input, not an output.
//   - The PN532 stretches SCL. The I2C controller of the BCM2835 to BCM2837
//     (Raspberry Pi up to 3) mishandles clock stretching, which shows as
//     corrupt bytes; the driver detects them by the frame checksums and
//     asks again, but a slower bus clock avoids them.
//   - UM0701 does not say what the chip does with a host frame whose
//     checksum is wrong, nor which status a card's NAK gives; see Emulator
//     for what is modelled.
//
// Not used: github.com/ZaparooProject/go-pn532 (v0.26.1, evaluated in a
// scratch module). Its I2C transport opens the bus itself by name through
// periph.io/x/host/v3 and a process-wide host.Init, so it cannot run on an
// i2c.Bus such as emu.Bus; it does not use the IRQ line; and it brings in
// periph.io/x/host/v3, go-deadlock, go.bug.st/serial and testify, which
// kioskd does not take on for six commands.
package pn532
