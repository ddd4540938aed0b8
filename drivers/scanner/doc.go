// Package scanner reads barcode scanners as stall operators connect them:
// USB keyboard-wedge scanners through the kernel's evdev interface (HID),
// and Grow GM65-class scanner modules on a UART (GM65). Both are a Source
// that delivers Scans; every read goes through Validate, so a bad check
// digit or a garbled read is logged once and never becomes a Scan, and
// through a Dedup, so a repeated read counts once. KeyboardEmulator and
// GM65Emulator are the two scanners on the wire, for tests and the sim
// board.
//
// References:
//   - Linux include/uapi/linux/input.h (struct input_event, struct
//     input_id, EVIOCGID, EVIOCGNAME, EVIOCGRAB, EVIOCSCLOCKID) and
//     include/uapi/linux/input-event-codes.h (EV_*, SYN_*, MSC_SCAN,
//     KEY_*), mainline; drivers/input/input-compat.h for the 16-byte
//     input_event of 32-bit processes on 64-bit kernels;
//     include/uapi/linux/uinput.h (UI_*, struct uinput_setup) for the
//     end-to-end test; include/uapi/asm-generic/ioctl.h for the request
//     encoding.
//   - USB HID Usage Tables 1.12, §10 Keyboard/Keypad page (0x07): the
//     MSC_SCAN values.
//   - xkeyboard-config symbols/us and symbols/fr, "basic": the layouts.
//   - Hangzhou Grow Technology, GM65 Bar Code Reader Module User Manual
//     V1.3 (Sept. 2016), §8 Serial Port Instruction: frames, CRC and the
//     zone bits 0x0000 (LED, sound, aimer, light, read mode); worked
//     examples in testdata/. The GM65/GM66 Chinese manual adds "no reply
//     to a bad CRC or an unknown command". Not found in a retrievable
//     copy of the manual, and taken from secondary sources: the trigger
//     command 7E 00 08 01 00 02 01 and its read (Hamlet HBCS2D100W
//     manual §8.4, a GM65-class engine), the read time in zone 0x0006
//     (same, and Newland's command-trigger note), and the tail in zone
//     0x0060 bits 6-5 (00 CR, 01 CRLF, 10 TAB, 11 none). The driver
//     changes only those two bits (read, modify, write) and also ends a
//     code at 50 ms of silence, so a module that sends no CR still works.
//
// HID: input_event records are decoded as the kernel writes them, 24 bytes
// on 64-bit processes and 16 on 32-bit ones (armhf: Pi Zero, Pi 3
// builds), the size following unsafe.Sizeof of a mirror of the struct. A
// code is the characters of the key presses up to KEY_ENTER or
// KEY_KPENTER; releases, autorepeat and EV_MSC are ignored; SYN_DROPPED
// drops the code in progress and everything up to the next SYN_REPORT.
// Without Enter, a code ends when no key follows within KeyTimeout (50
// ms), measured between the kernel's event timestamps (switched to the
// monotonic clock with EVIOCSCLOCKID) and, after the last key, by a timer. People type slower than that, so someone typing on a
// keyboard makes one-key codes, and codes shorter than MinLen (4) are
// dropped unlogged. Caps Lock pressed on the scanner toggles letters;
// the host's Caps Lock LED is not read, so a scanner set to follow it
// inverts letter case while it is on: set scanners not to.
//
// Known issues:
//   - The layout must be the one the scanner is set to. A scanner set to
//     French (AZERTY) types digits with Shift; read as "us" an EAN-8
//     96385074 arrives as the valid text code "(^#*%)&$", so configure
//     HIDOpts.Layout, or set the scanner to US.
//   - EVIOCGRAB makes the scanner invisible to the console and the
//     browser; a Match that also selects the till's keyboard grabs that
//     too. Match by name or vendor:product where possible.
//   - A replugged scanner is found by polling, at most MaxBackoff (2 s)
//     late.
//   - The GM65 sends non-ASCII QR payloads in its output encoding (GBK by
//     default per secondary sources); they are not valid UTF-8 and are
//     dropped as invalid.
//   - GM65 settings are not saved to its EEPROM; NewGM65 sets them at
//     every start.
package scanner
