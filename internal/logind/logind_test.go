package logind_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/microretail/kioskd/internal/logind"
	"github.com/microretail/kioskd/internal/realtest"
)

// patience bounds every wait for something that must happen.
const patience = 10 * time.Second

const (
	busName   = "org.freedesktop.login1"
	objPath   = dbus.ObjectPath("/org/freedesktop/login1")
	ifaceName = "org.freedesktop.login1.Manager"
)

// busConfig is a private bus that lets every connection do anything.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

// startBus runs a private dbus-daemon for the test and returns its address.
func startBus(t *testing.T) string {
	t.Helper()
	daemon := realtest.Command(t, "dbus-daemon", "apt-get install dbus-daemon", "dbus-daemon")
	// A short directory: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "logind")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "bus.conf")
	cfg := fmt.Sprintf(busConfig, filepath.Join(dir, "bus"))
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--print-address=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr := <-line:
		if addr == "" {
			t.Fatalf("dbus-daemon printed no address: %s", stderr.String())
		}
		return addr
	case <-time.After(patience):
		t.Fatalf("dbus-daemon printed no address in %v", patience)
		return ""
	}
}

// inhibitCall is one Inhibit call the fake received.
type inhibitCall struct{ what, who, why, mode string }

// fakeLogind plays org.freedesktop.login1.Manager on the private bus.
type fakeLogind struct {
	conn *dbus.Conn

	mu       sync.Mutex
	fail     *dbus.Error // returned by every method while set
	inhibits []inhibitCall
	readers  []*os.File // our end of each lock handed out
	writers  []*os.File // our copy of each lock's end, until dropWriters
	calls    []string
}

// Inhibit hands out the write end of a pipe, as logind does with a FIFO:
// the lock holds until every copy of that end is closed.
func (f *fakeLogind) Inhibit(what, who, why, mode string) (dbus.UnixFD, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inhibits = append(f.inhibits, inhibitCall{what, who, why, mode})
	if f.fail != nil {
		return -1, f.fail
	}
	r, w, err := os.Pipe()
	if err != nil {
		return -1, dbus.MakeFailedError(err)
	}
	f.readers = append(f.readers, r)
	f.writers = append(f.writers, w)
	return dbus.UnixFD(w.Fd()), nil
}

func (f *fakeLogind) PowerOff(interactive bool) *dbus.Error {
	return f.record("PowerOff", interactive)
}

func (f *fakeLogind) Reboot(interactive bool) *dbus.Error {
	return f.record("Reboot", interactive)
}

func (f *fakeLogind) record(method string, interactive bool) *dbus.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if interactive {
		method += "(interactive)"
	}
	f.calls = append(f.calls, method)
	return f.fail
}

func (f *fakeLogind) setFail(e *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = e
}

func (f *fakeLogind) recorded() ([]string, []inhibitCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), append([]inhibitCall(nil), f.inhibits...)
}

// dropWriters closes the fake's copies of the handed-out write ends, once
// the client has them, so only the client's copy holds each lock.
func (f *fakeLogind) dropWriters() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.writers {
		w.Close()
	}
	f.writers = nil
}

func (f *fakeLogind) reader(t *testing.T, i int) *os.File {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.readers) {
		t.Fatalf("lock %d was never handed out (%d were)", i, len(f.readers))
	}
	return f.readers[i]
}

func (f *fakeLogind) emit(t *testing.T, start bool) {
	t.Helper()
	if err := f.conn.Emit(objPath, ifaceName+".PrepareForShutdown", start); err != nil {
		t.Fatalf("emit PrepareForShutdown(%v): %v", start, err)
	}
}

// startFake exports a fake logind on the bus at addr.
func startFake(t *testing.T, addr string) *fakeLogind {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("fake logind: connect: %v", err)
	}
	f := &fakeLogind{conn: conn}
	t.Cleanup(func() {
		conn.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, r := range f.readers {
			r.Close()
		}
		for _, w := range f.writers {
			w.Close()
		}
	})
	if err := conn.Export(f, objPath, ifaceName); err != nil {
		t.Fatalf("fake logind: export: %v", err)
	}
	reply, err := conn.RequestName(busName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("fake logind: request name: %v (reply %v)", err, reply)
	}
	return f
}

// setup starts a bus with a fake logind and connects kioskd's side to it.
func setup(t *testing.T) (*fakeLogind, *logind.Conn, string) {
	t.Helper()
	addr := startBus(t)
	f := startFake(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	c, err := logind.ConnectAddress(ctx, addr)
	if err != nil {
		t.Fatalf("ConnectAddress: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return f, c, addr
}

// pipeState reads the pipe without blocking: "held" while a write end is
// open somewhere, "released" (EOF) once every copy is closed.
func pipeState(t *testing.T, r *os.File) string {
	t.Helper()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), make([]byte, 1))
		return true // one attempt, never wait
	}); err != nil {
		t.Fatal(err)
	}
	switch {
	case errors.Is(rerr, syscall.EAGAIN):
		return "held"
	case rerr == nil && n == 0:
		return "released"
	default:
		return fmt.Sprintf("unexpected (read %d bytes, %v)", n, rerr)
	}
}

// waitReleased waits until the pipe reports EOF: every copy of the lock's
// file descriptor is closed, the client's and the bus daemon's.
func waitReleased(t *testing.T, r *os.File) {
	t.Helper()
	if err := r.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	n, err := r.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("lock not released: read %d bytes, %v", n, err)
	}
}

func receive(t *testing.T, ch <-chan bool) bool {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("PrepareForShutdown channel closed")
		}
		return v
	case <-time.After(patience):
		t.Fatalf("no PrepareForShutdown within %v", patience)
		return false
	}
}

func TestInhibitDelayAndPrepareForShutdown(t *testing.T) {
	f, c, _ := setup(t)

	lock, err := c.InhibitDelay("shutdown", "kioskd", "flush the sales ledger")
	if err != nil {
		t.Fatalf("InhibitDelay: %v", err)
	}
	_, inhibits := f.recorded()
	want := inhibitCall{"shutdown", "kioskd", "flush the sales ledger", "delay"}
	if len(inhibits) != 1 || inhibits[0] != want {
		t.Fatalf("Inhibit calls = %+v, want [%+v]", inhibits, want)
	}
	f.dropWriters()

	// The subscription is a round trip through the bus daemon, so by the
	// time it returns the daemon has dropped its copy of the lock's fd: a
	// held pipe now means the client holds it.
	shutdown, err := c.PrepareForShutdown()
	if err != nil {
		t.Fatalf("PrepareForShutdown: %v", err)
	}
	r := f.reader(t, 0)
	if got := pipeState(t, r); got != "held" {
		t.Fatalf("after InhibitDelay the lock is %s, want held", got)
	}

	f.emit(t, true)
	if !receive(t, shutdown) {
		t.Fatal("PrepareForShutdown delivered false, want true")
	}
	if got := pipeState(t, r); got != "held" {
		t.Fatalf("before Release the lock is %s, want held", got)
	}
	if err := lock.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	waitReleased(t, r)
	if err := lock.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	var none *logind.Lock
	if err := none.Release(); err != nil {
		t.Fatalf("Release on nil: %v", err)
	}

	f.emit(t, false)
	if receive(t, shutdown) {
		t.Fatal("cancelled shutdown delivered true, want false")
	}
}

func TestPrepareForShutdownKeepsLatest(t *testing.T) {
	f, c, _ := setup(t)
	shutdown, err := c.PrepareForShutdown()
	if err != nil {
		t.Fatalf("PrepareForShutdown: %v", err)
	}
	f.emit(t, true)
	f.emit(t, false)
	f.emit(t, true)
	f.emit(t, false)
	// The fake's reply follows its signals on the same connection, so when
	// Reboot returns the client has dispatched all four.
	if err := c.Reboot(context.Background()); err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	select {
	case v := <-shutdown:
		if v {
			t.Fatal("got true, want the latest value, false")
		}
	default:
		t.Fatal("no value waiting after four signals")
	}
	select {
	case v := <-shutdown:
		t.Fatalf("a second value %v was kept; want only the latest", v)
	default:
	}

	// Close ends the subscription.
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case v, ok := <-shutdown:
		if ok {
			t.Fatalf("after Close got %v, want the channel closed", v)
		}
	case <-time.After(patience):
		t.Fatal("channel not closed after Close")
	}
	if _, err := c.PrepareForShutdown(); err == nil {
		t.Fatal("PrepareForShutdown on a closed Conn succeeded")
	}
}

func TestPowerOffAndReboot(t *testing.T) {
	f, c, _ := setup(t)
	ctx := context.Background()

	if err := c.PowerOff(ctx); err != nil {
		t.Fatalf("PowerOff: %v", err)
	}
	if err := c.Reboot(ctx); err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	calls, _ := f.recorded()
	if got, want := strings.Join(calls, " "), "PowerOff Reboot"; got != want {
		t.Fatalf("calls = %q, want %q (interactive=false)", got, want)
	}

	for _, tc := range []struct {
		name    string
		dbusErr *dbus.Error
		denied  bool
	}{
		{"access denied", dbus.NewError("org.freedesktop.DBus.Error.AccessDenied", []any{"Access denied"}), true},
		{"interactive authorization required", dbus.NewError("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", []any{"Interactive authentication required."}), true},
		{"other failure", dbus.NewError("org.freedesktop.DBus.Error.Failed", []any{"Operation already in progress"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.setFail(tc.dbusErr)
			defer f.setFail(nil)
			for _, op := range []struct {
				prefix string
				do     func(context.Context) error
			}{{"logind: power off: ", c.PowerOff}, {"logind: reboot: ", c.Reboot}} {
				err := op.do(ctx)
				if err == nil {
					t.Fatalf("%s succeeded, want %s", op.prefix, tc.dbusErr.Name)
				}
				if errors.Is(err, logind.ErrDenied) != tc.denied {
					t.Errorf("%v: errors.Is(ErrDenied) = %v, want %v", err, !tc.denied, tc.denied)
				}
				var de dbus.Error
				if !errors.As(err, &de) || de.Name != tc.dbusErr.Name {
					t.Errorf("%v: errors.As dbus.Error gives %q, want %q", err, de.Name, tc.dbusErr.Name)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, op.prefix) || !strings.Contains(msg, tc.dbusErr.Name) ||
					!strings.Contains(msg, tc.dbusErr.Body[0].(string)) {
					t.Errorf("error %q: want prefix %q, the D-Bus name and message", msg, op.prefix)
				}
			}
		})
	}
}

func TestInhibitDelayDenied(t *testing.T) {
	f, c, _ := setup(t)
	f.setFail(dbus.NewError("org.freedesktop.DBus.Error.AccessDenied", []any{"Permission denied"}))
	lock, err := c.InhibitDelay("shutdown", "kioskd", "flush")
	if err == nil {
		lock.Release()
		t.Fatal("InhibitDelay succeeded, want denied")
	}
	if !errors.Is(err, logind.ErrDenied) || !strings.HasPrefix(err.Error(), "logind: inhibit delay lock: ") {
		t.Fatalf("error %q: want ErrDenied with prefix %q", err, "logind: inhibit delay lock: ")
	}
	if lock != nil {
		t.Fatalf("got a Lock with the error")
	}
}

func TestConnectAddress(t *testing.T) {
	t.Run("handshake honours ctx", func(t *testing.T) {
		// A socket that accepts and never speaks: the handshake hangs
		// until ctx ends.
		dir, err := os.MkdirTemp("", "logind")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		sock := filepath.Join(dir, "mute")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := logind.ConnectAddress(ctx, "unix:path="+sock)
			done <- err
		}()
		conn, err := ln.Accept() // the client is now in its handshake
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "logind: connect to ") {
				t.Fatalf("err = %v, want logind: connect ... context canceled", err)
			}
		case <-time.After(patience):
			t.Fatal("ConnectAddress ignored the cancelled ctx")
		}
	})

	t.Run("no bus", func(t *testing.T) {
		_, err := logind.ConnectAddress(context.Background(), "unix:path=/nonexistent/bus")
		if err == nil || !strings.HasPrefix(err.Error(), "logind: connect to unix:path=/nonexistent/bus: ") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("connection outlives ctx", func(t *testing.T) {
		addr := startBus(t)
		f := startFake(t, addr)
		ctx, cancel := context.WithCancel(context.Background())
		c, err := logind.ConnectAddress(ctx, addr)
		if err != nil {
			t.Fatalf("ConnectAddress: %v", err)
		}
		defer c.Close()
		cancel()
		if err := c.PowerOff(context.Background()); err != nil {
			t.Fatalf("PowerOff after the connect ctx ended: %v", err)
		}
		if calls, _ := f.recorded(); len(calls) != 1 {
			t.Fatalf("calls = %v, want one PowerOff", calls)
		}
	})
}

// fakeSystemctl puts a systemctl on PATH (and nothing else, so the real one
// can never run) that logs its arguments and exits with code, and returns
// the log's path.
func fakeSystemctl(t *testing.T, code int) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := "#!/bin/sh\necho \"$@\" >>'" + log + "'\n"
	if code != 0 {
		script += "echo 'Failed to power off system via logind: Access denied' >&2\n"
	}
	script += fmt.Sprintf("exit %d\n", code)
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	return log
}

// ran reads what the fake systemctl was run with, one line per run.
func ran(t *testing.T, log string) string {
	t.Helper()
	b, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestSystemctl(t *testing.T) {
	ctx := context.Background()
	t.Run("runs the verb", func(t *testing.T) {
		log := fakeSystemctl(t, 0)
		for _, verb := range []string{"poweroff", "reboot"} {
			if err := logind.Systemctl(ctx, verb); err != nil {
				t.Fatalf("Systemctl(%s): %v", verb, err)
			}
		}
		if got := ran(t, log); got != "poweroff\nreboot" {
			t.Fatalf("systemctl ran with %q", got)
		}
	})
	t.Run("failure carries the output", func(t *testing.T) {
		fakeSystemctl(t, 1)
		err := logind.Systemctl(ctx, "reboot")
		if err == nil || !strings.HasPrefix(err.Error(), "logind: systemctl reboot: exit status 1: ") ||
			!strings.Contains(err.Error(), "Access denied") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("other verbs refused", func(t *testing.T) {
		log := fakeSystemctl(t, 0)
		for _, verb := range []string{"halt", "suspend", "", "poweroff --force"} {
			if err := logind.Systemctl(ctx, verb); err == nil {
				t.Errorf("Systemctl(%q) succeeded", verb)
			}
		}
		if got := ran(t, log); got != "" {
			t.Fatalf("systemctl ran with %q", got)
		}
	})
}

func TestPowerAction(t *testing.T) {
	ctx := context.Background()
	denied := dbus.NewError("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", []any{"Interactive authentication required."})

	t.Run("logind accepts", func(t *testing.T) {
		f, c, _ := setup(t)
		log := fakeSystemctl(t, 0)
		if err := logind.PowerAction(ctx, c, "reboot"); err != nil {
			t.Fatalf("PowerAction: %v", err)
		}
		if calls, _ := f.recorded(); strings.Join(calls, " ") != "Reboot" {
			t.Fatalf("logind calls = %v, want [Reboot]", calls)
		}
		if got := ran(t, log); got != "" {
			t.Fatalf("systemctl ran with %q, want not at all", got)
		}
	})
	t.Run("logind denies, systemctl works", func(t *testing.T) {
		f, c, _ := setup(t)
		f.setFail(denied)
		log := fakeSystemctl(t, 0)
		if err := logind.PowerAction(ctx, c, "poweroff"); err != nil {
			t.Fatalf("PowerAction: %v", err)
		}
		if calls, _ := f.recorded(); strings.Join(calls, " ") != "PowerOff" {
			t.Fatalf("logind calls = %v, want [PowerOff]", calls)
		}
		if got := ran(t, log); got != "poweroff" {
			t.Fatalf("systemctl ran with %q, want poweroff", got)
		}
	})
	t.Run("both fail", func(t *testing.T) {
		f, c, _ := setup(t)
		f.setFail(denied)
		fakeSystemctl(t, 1)
		err := logind.PowerAction(ctx, c, "poweroff")
		if err == nil {
			t.Fatal("PowerAction succeeded")
		}
		msg := err.Error()
		for _, want := range []string{"logind: poweroff: ", "InteractiveAuthorizationRequired", "systemctl poweroff: exit status 1", "Access denied"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		if !errors.Is(err, logind.ErrDenied) {
			t.Errorf("error %q: errors.Is(ErrDenied) = false", msg)
		}
	})
	t.Run("no Conn", func(t *testing.T) {
		log := fakeSystemctl(t, 0)
		if err := logind.PowerAction(ctx, nil, "reboot"); err != nil {
			t.Fatalf("PowerAction: %v", err)
		}
		if got := ran(t, log); got != "reboot" {
			t.Fatalf("systemctl ran with %q, want reboot", got)
		}
		fakeSystemctl(t, 1)
		err := logind.PowerAction(ctx, nil, "reboot")
		if err == nil || !strings.Contains(err.Error(), "no logind connection") ||
			!strings.Contains(err.Error(), "systemctl reboot: exit status 1") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown verb", func(t *testing.T) {
		log := fakeSystemctl(t, 0)
		if err := logind.PowerAction(ctx, nil, "halt"); err == nil {
			t.Fatal("PowerAction(halt) succeeded")
		}
		if got := ran(t, log); got != "" {
			t.Fatalf("systemctl ran with %q", got)
		}
	})
}
