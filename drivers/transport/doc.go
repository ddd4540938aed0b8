// Package transport carries bytes between the kiosk and its UART, USB and
// network peripherals (the ESC/POS receipt printer, the GM65 barcode
// module): Serial, USBLP and TCP dial them, and a Link keeps one connected
// across unplugs, power cycles and network drops, with timeouts on every
// read and write so that no caller hangs on a dead device. Emulator is a
// device at the end of a cable, for tests and the sim board.
//
// References:
//   - go.bug.st/serial v1.8.0, serial_unix.go: nativeOpen sets raw mode,
//     clears CRTSCTS and IXON/IXOFF/IXANY, takes TIOCEXCL; Mode has no flow
//     control; Read select()s and returns (0, nil) on a timeout; Write is a
//     plain blocking write(2).
//   - TIOCEXCL(2const), Linux man-pages 6.9.1: later opens fail with EBUSY
//     (except with CAP_SYS_ADMIN).
//   - Linux drivers/usb/class/usblp.c (torvalds/linux at 02fce139):
//     one open at a time (EBUSY); open starts a bulk IN read on
//     bidirectional printers; usblp_poll reports EPOLLIN when that read
//     completes and EPOLLOUT when the last write's URB completes (or paper
//     ran out); O_NONBLOCK reads and writes return EAGAIN instead of
//     waiting; read fails with EINVAL on a unidirectional printer and
//     returns 0 bytes for a zero-length transfer; after an unplug I/O
//     fails with ENODEV; LPGETSTATUS copies the 1-byte GET_PORT_STATUS
//     answer into an int.
//   - Linux include/uapi/linux/lp.h: LPGETSTATUS 0x060b, LP_POUTPA 0x20,
//     LP_PSELECD 0x10, LP_PERRORP 0x08 (active low).
//   - USB Device Class Definition for Printing Devices, Version 1.1,
//     January 2000, GET_PORT_STATUS: bit 5 Paper Empty, bit 4 Select, bit 3
//     Not Error (0 = error).
//   - tcp(7), TCP_USER_TIMEOUT (Linux 2.6.37): milliseconds that sent data
//     may stay unacknowledged before the connection fails with ETIMEDOUT;
//     it also bounds keepalive failure.
//   - Linux drivers/tty/tty_ioctl.c, tty_mode_ioctl: termios ioctls on a
//     pty master act on its slave (the tests read the slave's settings so).
//
// Serial ports: go.bug.st/serial opens and configures the port (baud rate,
// including non-standard ones through BOTHER, 8N1, raw, exclusive) but has
// no flow control and no write timeout, and its Read select()s, which
// cannot take descriptors above 1023. So Dial first opens the tty itself, non-blocking, does all I/O on
// that descriptor through the runtime poller (deadlines, and Close wakes
// blocked calls, with no goroutine), and sets CRTSCTS or IXON|IXOFF with
// VSTART/VSTOP on it, reading termios back to check the driver kept them.
//
// Timeouts: a read times out after the read timeout; a write times out
// when the device has taken no byte for the write timeout, so a printer
// holding CTS low, a paper-out USB printer or a full TCP window fails the
// write, while a slow link that keeps moving does not.
//
// Known limits:
//   - LPStatus and TCP_USER_TIMEOUT are Linux only; elsewhere LPStatus
//     fails with errors.ErrUnsupported and TCP relies on keepalive.
//   - Data a network printer took into its socket just before a power
//     cycle is lost; only the printer's own status (DLE EOT) confirms a
//     job.
package transport
