package transport

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// countDialer counts dial attempts, failed ones included.
type countDialer struct {
	Dialer
	n atomic.Int32
}

func (d *countDialer) Dial(ctx context.Context) (Conn, error) {
	d.n.Add(1)
	return d.Dialer.Dial(ctx)
}

// The backoff doubles per failed dial from MinBackoff up to MaxBackoff,
// with jitter in [b/2, b]; no dial happens before it has passed, and
// successful I/O resets it.
func TestLinkBackoff(t *testing.T) {
	e := NewEmulator("printer", 64)
	e.Unplug()
	d := &countDialer{Dialer: e}
	clk := newClock()
	l := NewLink(d, &Opts{MinBackoff: time.Second, MaxBackoff: 8 * time.Second, Clock: clk.Now})
	defer l.Close()

	if _, err := l.Write([]byte("x")); !errors.Is(err, ErrDisconnected) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Write = %v, want ErrDisconnected wrapping ENOENT", err)
	}
	for i, b := range []time.Duration{1, 2, 4, 8, 8} {
		b *= time.Second
		t.Run(b.String(), func(t *testing.T) {
			dials := d.n.Load()
			clk.Advance(b/2 - time.Nanosecond)
			if _, err := l.Write([]byte("x")); !errors.Is(err, ErrDisconnected) {
				t.Fatalf("Write = %v", err)
			}
			if got := d.n.Load(); got != dials {
				t.Fatalf("failure %d: dialled %v into a backoff of at least %v", i+1, b/2-time.Nanosecond, b/2)
			}
			clk.Advance(b/2 + time.Nanosecond)
			l.Write([]byte("x"))
			if got := d.n.Load(); got != dials+1 {
				t.Fatalf("failure %d: no dial %v after it, backoff at most %v", i+1, b, b)
			}
		})
	}

	e.Plug()
	clk.Advance(8 * time.Second)
	if _, err := l.Write([]byte("job")); err != nil {
		t.Fatalf("Write after Plug: %v", err)
	}
	e.Unplug()
	l.Write([]byte("x")) // fails: the first failure since the write went through
	dials := d.n.Load()
	clk.Advance(time.Second)
	l.Write([]byte("x"))
	if got := d.n.Load(); got != dials+1 {
		t.Errorf("successful I/O did not reset the backoff to MinBackoff")
	}
}

// The device is unplugged mid-job and plugged back: the link drops with
// the cause, fails fast, reconnects, and the device gets the next job.
func TestLinkReconnect(t *testing.T) {
	noLeaks(t)
	e := NewEmulator("printer", 64)
	clk := newClock()
	l := NewLink(e, &Opts{MinBackoff: time.Second, Clock: clk.Now})
	defer l.Close()

	if _, err := l.Write([]byte("job1")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, e); string(got) != "job1" {
		t.Fatalf("device got %q", got)
	}
	e.Unplug()
	_, err := l.Write([]byte("job2"))
	if !errors.Is(err, ErrDisconnected) || !errors.Is(err, syscall.ENODEV) {
		t.Fatalf("Write after Unplug = %v, want ErrDisconnected wrapping ENODEV", err)
	}
	if want := "transport: disconnected: emulator printer: write: no such device"; err.Error() != want {
		t.Errorf("error reads %q, want %q", err, want)
	}
	e.Plug()
	if _, err := l.Read(make([]byte, 1)); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Read within the backoff = %v, want ErrDisconnected", err)
	}
	if got := e.Opens(); got != 1 {
		t.Fatalf("Opens = %d within the backoff", got)
	}
	clk.Advance(time.Second)
	if _, err := l.Write([]byte("job2")); err != nil {
		t.Fatalf("Write after the backoff: %v", err)
	}
	if got := recv(t, e); string(got) != "job2" || e.Opens() != 2 {
		t.Errorf("device got %q after %d opens", got, e.Opens())
	}
}

// A read timeout leaves the link up; a stalled write drops it.
func TestLinkTimeouts(t *testing.T) {
	noLeaks(t)
	e := NewEmulator("printer", 4)
	l := NewLink(e, &Opts{ReadTimeout: 10 * time.Millisecond, WriteTimeout: 10 * time.Millisecond})
	defer l.Close()
	if _, err := l.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrDisconnected) {
		t.Fatalf("Read = %v, want a bare timeout", err)
	}
	if !l.Connected() {
		t.Fatal("a read timeout dropped the link")
	}
	n, err := l.Write([]byte("too long for the buffer"))
	if n != 4 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Write = %d, %v; want 4 bytes and a timeout that drops the link", n, err)
	}
	if l.Connected() {
		t.Error("a stalled write left the link up")
	}
	if got := e.Buffered(); got != 4 {
		t.Errorf("device holds %d bytes, want the 4 it took", got)
	}
}

// SetReadTimeout holds for the conn after a reconnect too.
func TestLinkTimeoutSurvivesReconnect(t *testing.T) {
	e := NewEmulator("scanner", 4)
	clk := newClock()
	l := NewLink(e, &Opts{ReadTimeout: time.Hour, Clock: clk.Now})
	defer l.Close()
	if err := l.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.SetReadTimeout(5 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.Unplug()
	l.Read(make([]byte, 1))
	e.Plug()
	clk.Advance(time.Hour)
	if _, err := l.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read on the new conn = %v, want the 5ms timeout", err)
	}
	if err := l.SetReadTimeout(-1); err == nil {
		t.Error("negative timeout accepted")
	}
}

func TestLinkClose(t *testing.T) {
	noLeaks(t)
	e := NewEmulator("scanner", 4)
	l := NewLink(e, nil)
	if err := l.SetReadTimeout(0); err != nil { // block
		t.Fatal(err)
	}
	if err := l.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := l.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let Read block; the test passes either way
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("blocked Read = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Read")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := l.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v", err)
	}
	if err := l.Connect(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close = %v", err)
	}
	if _, err := e.Dial(context.Background()); err != nil {
		t.Errorf("the port is still held after Close: %v", err)
	}
}

// Connect waits out the backoff, through Opts.After, until the device is back.
func TestLinkConnect(t *testing.T) {
	e := NewEmulator("printer", 4)
	e.Unplug()
	clk := newClock()
	var waits []time.Duration
	after := func(ctx context.Context, d time.Duration) bool {
		waits = append(waits, d)
		clk.Advance(d)
		if len(waits) == 3 {
			e.Plug()
		}
		return ctx.Err() == nil
	}
	l := NewLink(e, &Opts{MinBackoff: time.Second, MaxBackoff: time.Minute, Clock: clk.Now, After: after})
	defer l.Close()
	if err := l.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !l.Connected() || len(waits) != 3 {
		t.Fatalf("connected %v after waits %v", l.Connected(), waits)
	}
	for i, w := range waits {
		if b := time.Second << i; w < b/2 || w > b {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, w, b/2, b)
		}
	}
}

func TestLinkConnectEnds(t *testing.T) {
	noLeaks(t)
	e := NewEmulator("printer", 4)
	e.Unplug()
	l := NewLink(e, &Opts{MinBackoff: time.Hour}) // real clock: Connect blocks in the wait
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- l.Connect(ctx) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Connect after cancel = %v, want the cancel and the last failure", err)
	}
	go func() { errc <- l.Connect(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	l.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close = %v, want ErrClosed", err)
	}
}

// hangDialer is a device that never answers the dial.
type hangDialer struct{}

func (hangDialer) Dial(ctx context.Context) (Conn, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (hangDialer) String() string { return "hang" }

func TestLinkDialTimeout(t *testing.T) {
	noLeaks(t)
	l := NewLink(hangDialer{}, &Opts{DialTimeout: 10 * time.Millisecond})
	defer l.Close()
	if _, err := l.Write([]byte("x")); !errors.Is(err, ErrDisconnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Write = %v, want ErrDisconnected wrapping the dial timeout", err)
	}
}

// A failure that repeats is logged once; recovery is logged.
func TestLinkLogsChanges(t *testing.T) {
	var buf bytes.Buffer
	e := NewEmulator("printer", 4)
	e.Unplug()
	clk := newClock()
	l := NewLink(e, &Opts{Clock: clk.Now, Logger: zerolog.New(&buf)})
	defer l.Close()
	for range 5 {
		l.Write([]byte("x"))
		clk.Advance(time.Minute)
	}
	e.Plug()
	if _, err := l.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(buf.String(), "link down"); got != 1 {
		t.Errorf("%d link down lines for one repeated failure:\n%s", got, buf.String())
	}
	if got := strings.Count(buf.String(), "link up"); got != 1 {
		t.Errorf("%d link up lines:\n%s", got, buf.String())
	}
}

func TestLinkLPStatus(t *testing.T) {
	l := NewLink(NewEmulator("printer", 4), nil)
	defer l.Close()
	if _, err := LPStatus(l); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("LPStatus = %v, want ErrUnsupported", err)
	}
	if !l.Connected() {
		t.Error("an unsupported ioctl dropped the link")
	}
}

// Writers, a reader, the device and cable pulls all at once, for the race
// detector: every call ends, with data or one of the documented errors.
func TestLinkConcurrent(t *testing.T) {
	noLeaks(t)
	rounds := 300
	if testing.Short() {
		rounds = 30
	}
	e := NewEmulator("printer", 16)
	clk := newClock()
	l := NewLink(e, &Opts{ReadTimeout: time.Millisecond, WriteTimeout: time.Millisecond, MinBackoff: time.Millisecond, Clock: clk.Now})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	check := func(err error) {
		if err != nil && !errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("unexpected error: %v", err)
		}
	}
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := l.Write([]byte("receipt line\n"))
				check(err)
			}
		})
	}
	wg.Go(func() {
		b := make([]byte, 8)
		for ctx.Err() == nil {
			_, err := l.Read(b)
			check(err)
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			e.Recv(ctx)
			e.Send([]byte{0x12})
		}
	})
	for i := range rounds {
		if i%10 == 0 {
			e.Unplug()
			e.Plug()
		}
		clk.Advance(time.Second)
		time.Sleep(100 * time.Microsecond)
	}
	l.Close()
	cancel()
	wg.Wait()
}
