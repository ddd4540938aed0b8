package logind_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/microretail/kioskd/internal/logind"
	"github.com/microretail/kioskd/internal/logind/logindtest"
)

// patience bounds every wait for something that must happen.
const patience = 10 * time.Second

// setup starts a bus with a fake logind and connects kioskd's side to it.
func setup(t *testing.T) (*logindtest.Manager, *logind.Conn) {
	t.Helper()
	bus := logindtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	c, err := logind.ConnectAddress(ctx, bus.Addr)
	if err != nil {
		t.Fatalf("ConnectAddress: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return bus.Manager, c
}

func emit(t *testing.T, f *logindtest.Manager, start bool) {
	t.Helper()
	if err := f.EmitPrepareForShutdown(start); err != nil {
		t.Fatal(err)
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
	f, c := setup(t)

	lock, err := c.InhibitDelay("shutdown", "kioskd", "flush the sales ledger")
	if err != nil {
		t.Fatalf("InhibitDelay: %v", err)
	}
	want := logindtest.Inhibit{What: "shutdown", Who: "kioskd", Why: "flush the sales ledger", Mode: "delay"}
	if inhibits := f.Inhibits(); len(inhibits) != 1 || inhibits[0] != want {
		t.Fatalf("Inhibit calls = %+v, want [%+v]", inhibits, want)
	}

	// The subscription is a round trip through the bus daemon, so by the
	// time it returns the daemon has dropped its copy of the lock's fd, and
	// Held drops the fake's: a held lock now means the client holds it.
	shutdown, err := c.PrepareForShutdown()
	if err != nil {
		t.Fatalf("PrepareForShutdown: %v", err)
	}
	locks := f.Locks()
	if len(locks) != 1 {
		t.Fatalf("%d locks handed out, want 1", len(locks))
	}
	handed := locks[0]
	if !handed.Held(t) {
		t.Fatal("after InhibitDelay the lock is released, want held")
	}

	emit(t, f, true)
	if !receive(t, shutdown) {
		t.Fatal("PrepareForShutdown delivered false, want true")
	}
	if !handed.Held(t) {
		t.Fatal("before Release the lock is released, want held")
	}
	if err := lock.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	handed.WaitReleased(t, patience)
	if err := lock.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	var none *logind.Lock
	if err := none.Release(); err != nil {
		t.Fatalf("Release on nil: %v", err)
	}

	emit(t, f, false)
	if receive(t, shutdown) {
		t.Fatal("cancelled shutdown delivered true, want false")
	}
}

func TestPrepareForShutdownKeepsLatest(t *testing.T) {
	f, c := setup(t)
	shutdown, err := c.PrepareForShutdown()
	if err != nil {
		t.Fatalf("PrepareForShutdown: %v", err)
	}
	emit(t, f, true)
	emit(t, f, false)
	emit(t, f, true)
	emit(t, f, false)
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
	f, c := setup(t)
	ctx := context.Background()

	if err := c.PowerOff(ctx); err != nil {
		t.Fatalf("PowerOff: %v", err)
	}
	if err := c.Reboot(ctx); err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	calls := f.Calls()
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
			f.Fail(tc.dbusErr)
			defer f.Fail(nil)
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
	f, c := setup(t)
	f.Fail(dbus.NewError("org.freedesktop.DBus.Error.AccessDenied", []any{"Permission denied"}))
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
		bus := logindtest.Start(t)
		ctx, cancel := context.WithCancel(context.Background())
		c, err := logind.ConnectAddress(ctx, bus.Addr)
		if err != nil {
			t.Fatalf("ConnectAddress: %v", err)
		}
		defer c.Close()
		cancel()
		if err := c.PowerOff(context.Background()); err != nil {
			t.Fatalf("PowerOff after the connect ctx ended: %v", err)
		}
		if calls := bus.Manager.Calls(); len(calls) != 1 {
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
		f, c := setup(t)
		log := fakeSystemctl(t, 0)
		if err := logind.PowerAction(ctx, c, "reboot"); err != nil {
			t.Fatalf("PowerAction: %v", err)
		}
		if calls := f.Calls(); strings.Join(calls, " ") != "Reboot" {
			t.Fatalf("logind calls = %v, want [Reboot]", calls)
		}
		if got := ran(t, log); got != "" {
			t.Fatalf("systemctl ran with %q, want not at all", got)
		}
	})
	t.Run("logind denies, systemctl works", func(t *testing.T) {
		f, c := setup(t)
		f.Fail(denied)
		log := fakeSystemctl(t, 0)
		if err := logind.PowerAction(ctx, c, "poweroff"); err != nil {
			t.Fatalf("PowerAction: %v", err)
		}
		if calls := f.Calls(); strings.Join(calls, " ") != "PowerOff" {
			t.Fatalf("logind calls = %v, want [PowerOff]", calls)
		}
		if got := ran(t, log); got != "poweroff" {
			t.Fatalf("systemctl ran with %q, want poweroff", got)
		}
	})
	t.Run("both fail", func(t *testing.T) {
		f, c := setup(t)
		f.Fail(denied)
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
