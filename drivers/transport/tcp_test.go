package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

func TestTCPAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"printer.local", "printer.local:9100"},
		{"10.0.0.5", "10.0.0.5:9100"},
		{"10.0.0.5:9101", "10.0.0.5:9101"},
		{"10.0.0.5:", "10.0.0.5:9100"},
		{"fe80::1", "[fe80::1]:9100"},
		{"[fe80::1]", "[fe80::1]:9100"},
		{"[fe80::1]:515", "[fe80::1]:515"},
		{"", ""},
		{":9100", ""},
		{"printer:0", ""},
		{"printer:65536", ""},
		{"printer:raw", ""},
		{"[::1", ""},
		{"a b", ""},
		{"host/x", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := tcpAddr(tc.in)
			if (err != nil) != (tc.want == "") || got != tc.want {
				t.Errorf("tcpAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// printerServer accepts connections on loopback, as a network printer;
// the test takes them from conns. It stops when the test ends.
func printerServer(t *testing.T) (addr string, conns <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 8)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			ch <- c
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), ch
}

func accept(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
		return nil
	}
}

// The printer closes the connection (it was power cycled): the link sees
// the end on its next read, waits out the backoff, and reconnects.
func TestTCPReconnect(t *testing.T) {
	noLeaks(t)
	addr, conns := printerServer(t)
	clk := newClock()
	l := NewLink(TCP(addr), &Opts{MinBackoff: time.Second, MaxBackoff: 8 * time.Second, ReadTimeout: 5 * time.Second, Clock: clk.Now})
	defer l.Close()

	if _, err := l.Write([]byte("job1")); err != nil {
		t.Fatal(err)
	}
	srv := accept(t, conns)
	if got := readN(t, srv, 4); string(got) != "job1" {
		t.Fatalf("printer got %q", got)
	}
	srv.Close()
	if _, err := l.Read(make([]byte, 4)); !errors.Is(err, ErrDisconnected) || !errors.Is(err, io.EOF) {
		t.Fatalf("Read after the printer closed = %v, want ErrDisconnected wrapping EOF", err)
	}

	clk.Advance(499 * time.Millisecond) // the first backoff is 0.5 to 1 s
	if _, err := l.Write([]byte("job2")); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Write within the backoff = %v, want ErrDisconnected", err)
	}
	if l.Connected() {
		t.Fatal("redialled within the backoff")
	}
	clk.Advance(501 * time.Millisecond)
	if _, err := l.Write([]byte("job2")); err != nil {
		t.Fatalf("Write after the backoff: %v", err)
	}
	if got := readN(t, accept(t, conns), 4); string(got) != "job2" {
		t.Errorf("printer got %q after the reconnect", got)
	}
}

// A read timeout is no failure: the link keeps its connection.
func TestTCPReadTimeout(t *testing.T) {
	noLeaks(t)
	addr, conns := printerServer(t)
	l := NewLink(TCP(addr), &Opts{ReadTimeout: 20 * time.Millisecond})
	defer l.Close()
	if _, err := l.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrDisconnected) {
		t.Fatalf("Read = %v, want a bare timeout", err)
	}
	srv := accept(t, conns)
	if !l.Connected() {
		t.Fatal("a read timeout dropped the link")
	}
	if _, err := srv.Write([]byte{0x12}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetReadTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := l.Read(b); err != nil || b[0] != 0x12 {
		t.Errorf("Read after the timeout = % x, %v", b, err)
	}
}

// A printer that takes no more data (its buffer and the socket buffers are
// full) fails the write after WriteTimeout and drops the link.
func TestTCPWriteTimeout(t *testing.T) {
	noLeaks(t)
	addr, conns := printerServer(t)
	l := NewLink(TCP(addr), &Opts{WriteTimeout: 100 * time.Millisecond})
	defer l.Close()
	if _, err := l.Write([]byte{0x1b, 0x40}); err != nil {
		t.Fatal(err)
	}
	srv := accept(t, conns).(*net.TCPConn)
	srv.SetReadBuffer(4096) // and never reads
	big := make([]byte, 32<<20)
	n, err := l.Write(big)
	if n == len(big) || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Write = %d of %d, %v; want a timeout that drops the link", n, len(big), err)
	}
	if l.Connected() {
		t.Error("still connected after the write stalled")
	}
}
