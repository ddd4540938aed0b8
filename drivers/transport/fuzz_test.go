package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

func FuzzTCPAddr(f *testing.F) {
	for _, s := range []string{"printer.local", "10.0.0.5:9100", "10.0.0.5:", "fe80::1", "[fe80::1]", "[fe80::1]:515", "", ":", "[]", "[::1", "a b:1", "x:65536", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := tcpAddr(in)
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(out)
		if err != nil || host == "" {
			t.Fatalf("tcpAddr(%q) = %q, which does not split: %v", in, out, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			t.Fatalf("tcpAddr(%q) = %q: bad port", in, out)
		}
		if again, err := tcpAddr(out); err != nil || again != out {
			t.Fatalf("tcpAddr(%q) = %q, %v; want it unchanged", out, again, err)
		}
	})
}

// FuzzLink drives a Link over an Emulator with a script of host calls,
// device actions, cable pulls and clock steps. Every call returns, with
// data or a documented error, and the device receives, in order, only
// bytes the host's writes reported as written.
func FuzzLink(f *testing.F) {
	f.Add([]byte{0, 5, 1, 2, 0, 3, 4, 0, 6, 1})
	f.Add([]byte{2, 0, 4, 4, 4, 3, 0, 0x40, 5, 1, 7, 0})
	f.Add([]byte{0, 0xf0, 0, 0xf0, 6, 2, 3, 4, 0, 1})
	f.Fuzz(func(t *testing.T, script []byte) {
		e := NewEmulator("printer", 8)
		clk := newClock()
		l := NewLink(e, &Opts{
			ReadTimeout: time.Microsecond, WriteTimeout: time.Microsecond,
			MinBackoff: time.Second, MaxBackoff: 4 * time.Second, Clock: clk.Now,
		})
		defer l.Close()
		var sent, got []byte // reported written by the host; taken by the device
		var next byte
		documented := func(err error) {
			if err != nil && !errors.Is(err, ErrDisconnected) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, ErrClosed) {
				t.Fatalf("undocumented error: %v", err)
			}
		}
		for i := 0; i < len(script); i++ {
			arg := byte(0)
			if i+1 < len(script) {
				arg = script[i+1]
			}
			switch script[i] % 8 {
			case 0: // host writes arg%32 bytes
				p := make([]byte, arg%32)
				for j := range p {
					p[j] = next
					next++
				}
				n, err := l.Write(p)
				documented(err)
				sent = append(sent, p[:n]...)
				i++
			case 1: // host reads
				_, err := l.Read(make([]byte, 4))
				documented(err)
			case 2:
				e.Unplug()
			case 3:
				e.Plug()
			case 4:
				clk.Advance(time.Duration(arg) * 100 * time.Millisecond)
				i++
			case 5: // the device takes what it has
				if e.Buffered() > 0 {
					b, err := e.Recv(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, b...)
				}
			case 6:
				e.Send([]byte{arg})
				i++
			case 7:
				documented(l.Connect(canceled(t)))
			}
		}
		// got must be a subsequence of sent: unplugs lose bytes, never add or reorder.
		j := 0
		for _, b := range got {
			for j < len(sent) && sent[j] != b {
				j++
			}
			if j == len(sent) {
				t.Fatalf("device got % x, not in order within sent % x", got, sent)
			}
			j++
		}
		l.Close()
		if _, err := l.Write([]byte{1}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Write after Close = %v", err)
		}
	})
}

func canceled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}
