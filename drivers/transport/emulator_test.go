package transport

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

func dialEmu(t *testing.T, e *Emulator) Conn {
	t.Helper()
	c, err := e.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, e *Emulator) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := e.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEmulatorOpen(t *testing.T) {
	e := NewEmulator("printer", 8)
	c := dialEmu(t, e)
	if _, err := e.Dial(context.Background()); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("second open = %v, want EBUSY", err)
	}
	c.Close()
	dialEmu(t, e)
	e.Unplug()
	if _, err := e.Dial(context.Background()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("open while unplugged = %v, want ENOENT", err)
	}
	e.Plug()
	dialEmu(t, e)
	if got := e.Opens(); got != 3 {
		t.Errorf("Opens = %d, want 3", got)
	}
}

// The device's buffer fills and holds the host back until the device takes
// bytes, as flow control would.
func TestEmulatorFlowControl(t *testing.T) {
	noLeaks(t)
	e := NewEmulator("printer", 4)
	c := dialEmu(t, e)
	c.SetWriteTimeout(20 * time.Millisecond)
	n, err := c.Write([]byte("receipt"))
	if n != 4 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write into a full buffer = %d, %v; want 4 and a timeout", n, err)
	}
	if got := e.Buffered(); got != 4 {
		t.Errorf("Buffered = %d, want 4", got)
	}
	if got := recv(t, e); string(got) != "rece" {
		t.Errorf("device took %q", got)
	}
	// A writer waiting on a full buffer goes on as the device takes bytes.
	c.SetWriteTimeout(5 * time.Second)
	done := make(chan error)
	go func() {
		_, err := c.Write([]byte("ipt, total 120"))
		done <- err
	}()
	var got []byte
	for len(got) < 14 {
		got = append(got, recv(t, e)...)
	}
	if err := <-done; err != nil || string(got) != "ipt, total 120" {
		t.Errorf("device took %q, writer got %v", got, err)
	}
}

func TestEmulatorSendAndUnplug(t *testing.T) {
	noLeaks(t)
	e := NewEmulator("scanner", 8)
	if e.Send([]byte("lost")) {
		t.Error("Send with the port closed reported delivery")
	}
	c := dialEmu(t, e)
	c.SetReadTimeout(5 * time.Second)
	if !e.Send([]byte("4006381333931\r")) {
		t.Fatal("Send failed with the port open")
	}
	b := make([]byte, 32)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "4006381333931\r" {
		t.Fatalf("Read = %q, %v", b[:n], err)
	}
	c.SetReadTimeout(10 * time.Millisecond)
	if _, err := c.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read with nothing sent = %v, want a timeout", err)
	}
	e.Unplug()
	if _, err := c.Read(b); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("Read after Unplug = %v, want ENODEV", err)
	}
	if _, err := c.Write(b); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("Write after Unplug = %v, want ENODEV", err)
	}
	e.Plug()
	if _, err := c.Read(b); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("old conn after Plug = %v, want ENODEV", err)
	}
	c.Close()
	if _, err := c.Read(b); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Recv(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Recv with a cancelled ctx = %v", err)
	}
}
