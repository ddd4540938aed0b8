package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
)

type tcpDialer struct {
	addr string // host:port
	err  error  // why addr is unusable
}

// TCP dials a network printer at addr, "host" or "host:port", on port
// 9100 if none is given. The connection has keepalive on and, on Linux,
// TCP_USER_TIMEOUT, so a printer that vanished (a power cut, a pulled
// cable) fails the conn within seconds even while data is unacknowledged;
// a printer that rebooted resets it at the next write.
func TCP(addr string) Dialer {
	a, err := tcpAddr(addr)
	if err != nil {
		return &tcpDialer{addr: addr, err: err}
	}
	return &tcpDialer{addr: a}
}

func (d *tcpDialer) String() string { return "tcp " + d.addr }

func (d *tcpDialer) Dial(ctx context.Context) (Conn, error) {
	if d.err != nil {
		return nil, fmt.Errorf("transport: %s: %w", d, d.err)
	}
	nd := net.Dialer{
		Timeout: DefaultOpts.DialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: tcpKeepIdle, Interval: tcpKeepInterval, Count: tcpKeepCount,
		},
		Control: tcpControl,
	}
	nc, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, fmt.Errorf("transport: %s: %w", d, err)
	}
	c := &tcpConn{c: nc, name: d.String()}
	c.wto.Store(int64(DefaultOpts.WriteTimeout))
	return c, nil
}

// tcpAddr returns addr as host:port, with the default port if it has none.
func tcpAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// No port: a name, an IPv4 address or an IPv6 one, bracketed or not.
		host, port = addr, defaultTCPPort
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
	}
	if port == "" {
		port = defaultTCPPort
	}
	if host == "" || strings.ContainsFunc(host, func(r rune) bool {
		return r == '[' || r == ']' || r == '/' || r == '@' || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) {
		return "", fmt.Errorf("invalid host in address %q", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("invalid port in address %q", addr)
	}
	return net.JoinHostPort(host, port), nil
}

type tcpConn struct {
	c        net.Conn
	name     string
	rto, wto atomic.Int64
	once     sync.Once
}

func (c *tcpConn) Read(p []byte) (int, error) {
	if err := c.c.SetReadDeadline(deadline(c.rto.Load())); err != nil {
		return 0, c.wrap(err)
	}
	n, err := c.c.Read(p)
	return n, c.wrap(err)
}

func (c *tcpConn) Write(p []byte) (int, error) {
	n, err := writeAll(c.c, p, time.Duration(c.wto.Load()))
	return n, c.wrap(err)
}

func (c *tcpConn) SetReadTimeout(d time.Duration) error  { return setTimeout(&c.rto, d) }
func (c *tcpConn) SetWriteTimeout(d time.Duration) error { return setTimeout(&c.wto, d) }

// Close closes the connection and wakes its pending reads and writes; a
// second Close does nothing.
func (c *tcpConn) Close() error {
	var err error
	c.once.Do(func() { err = c.wrap(c.c.Close()) })
	return err
}

func (c *tcpConn) wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %s", ErrClosed, c.name)
	}
	return fmt.Errorf("transport: %s: %w", c.name, err)
}
