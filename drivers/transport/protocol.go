package transport

import "time"

// Linux USB printer class driver (drivers/usb/class/usblp.c) and the
// parallel-port status layout it reports in (include/uapi/linux/lp.h).
const (
	lpGetStatus = 0x060b // LPGETSTATUS: old-style ioctl; usblp answers with GET_PORT_STATUS in an int
	lpPOutPa    = 0x20   // LP_POUTPA: paper empty, active high
	lpPSelecd   = 0x10   // LP_PSELECD: printer selected (on line), active high
	lpPErrorP   = 0x08   // LP_PERRORP: nError, active low: clear means the printer reports an error
)

// Software flow control characters (VSTART/VSTOP in termios).
const (
	xon  = 0x11 // DC1: the receiver can take more
	xoff = 0x13 // DC3: the receiver's buffer is full, stop sending
)

// TCP network printers (the raw "JetDirect" port) and how a dead peer is
// noticed.
const (
	defaultTCPPort  = "9100"           // raw print port of network receipt printers
	tcpKeepIdle     = 10 * time.Second // idle time before the first keepalive probe
	tcpKeepInterval = 5 * time.Second  // between unanswered probes
	tcpKeepCount    = 3                // unanswered probes before the kernel drops the connection
	tcpUserTimeout  = 15 * time.Second // TCP_USER_TIMEOUT: sent data unacknowledged this long drops the connection (Linux)
)
