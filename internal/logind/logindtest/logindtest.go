// Package logindtest runs a fake systemd-logind on a private D-Bus bus,
// for tests of code that talks to logind. The fake answers Inhibit with a
// real file descriptor and tells when its holder lets go of it, records
// PowerOff and Reboot without acting on them, and sends PrepareForShutdown
// when the test says.
//
// The bus is a real dbus-daemon, found with internal/realtest, so the
// lock's descriptor travels through godbus, the daemon and the kernel as
// it does on a board.
package logindtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/microretail/kioskd/internal/realtest"
)

// The logind object the fake plays.
const (
	busName   = "org.freedesktop.login1"
	objPath   = dbus.ObjectPath("/org/freedesktop/login1")
	ifaceName = "org.freedesktop.login1.Manager"
)

// startPatience bounds the wait for dbus-daemon to say where it listens.
const startPatience = 10 * time.Second

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

// Bus is a private dbus-daemon with a fake logind on it.
type Bus struct {
	// Addr is the bus's D-Bus address: for logind.ConnectAddress, or
	// DBUS_SYSTEM_BUS_ADDRESS for a process that dials the system bus.
	Addr string
	// Manager plays org.freedesktop.login1.Manager on the bus.
	Manager *Manager
}

// Start runs a private dbus-daemon with a fake logind on it, both
// stopped when the test ends. Without dbus-daemon the test skips, or
// fails under KIOSK_REQUIRE_REAL=1.
func Start(t testing.TB) *Bus {
	t.Helper()
	addr := startDaemon(t)
	return &Bus{Addr: addr, Manager: startManager(t, addr)}
}

// startDaemon runs dbus-daemon and returns its address.
func startDaemon(t testing.TB) string {
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
		t.Fatalf("logindtest: start dbus-daemon: %v", err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Cleanup(stop)

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr := <-line:
		if addr == "" {
			stop() // stderr is complete, and ours to read, once Wait returns
			t.Fatalf("logindtest: dbus-daemon printed no address: %s", stderr.String())
		}
		return addr
	case <-time.After(startPatience):
		stop()
		t.Fatalf("logindtest: dbus-daemon printed no address in %v: %s", startPatience, stderr.String())
		return ""
	}
}

// Inhibit is the arguments of one Inhibit call.
type Inhibit struct{ What, Who, Why, Mode string }

// Manager is the fake org.freedesktop.login1.Manager. Its methods are
// safe to call from any goroutine.
type Manager struct {
	conn *dbus.Conn

	mu       sync.Mutex
	fail     *dbus.Error // every D-Bus method answers this while set
	inhibits []Inhibit
	locks    []*Lock
	calls    []string
}

// startManager connects to the bus at addr and plays logind on it.
func startManager(t testing.TB, addr string) *Manager {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("logindtest: fake logind: connect: %v", err)
	}
	m := &Manager{conn: conn}
	t.Cleanup(func() {
		conn.Close()
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, l := range m.locks {
			l.close()
		}
	})
	if err := conn.Export(login1{m}, objPath, ifaceName); err != nil {
		t.Fatalf("logindtest: fake logind: export: %v", err)
	}
	reply, err := conn.RequestName(busName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("logindtest: fake logind: request name %s: %v (reply %v)", busName, err, reply)
	}
	return m
}

// Fail makes every D-Bus method of the fake answer e (Inhibit, PowerOff,
// Reboot), as logind does when polkit refuses; nil makes them succeed.
func (m *Manager) Fail(e *dbus.Error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = e
}

// Inhibits returns the Inhibit calls received so far, failed ones too.
func (m *Manager) Inhibits() []Inhibit {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Inhibit(nil), m.inhibits...)
}

// Locks returns the locks handed out so far, in order.
func (m *Manager) Locks() []*Lock {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Lock(nil), m.locks...)
}

// Calls returns the PowerOff and Reboot calls received so far, in order:
// "PowerOff", "Reboot", with "(interactive)" after the name when the
// caller allowed interactive authentication.
func (m *Manager) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

// EmitPrepareForShutdown sends logind's PrepareForShutdown signal: true
// when a shutdown or reboot begins, false when it was cancelled.
func (m *Manager) EmitPrepareForShutdown(start bool) error {
	if err := m.conn.Emit(objPath, ifaceName+".PrepareForShutdown", start); err != nil {
		return fmt.Errorf("logindtest: emit PrepareForShutdown(%v): %w", start, err)
	}
	return nil
}

// login1 is the object exported on the bus: its exported methods are the
// D-Bus methods, kept off Manager, whose methods are the test's.
type login1 struct{ m *Manager }

// Inhibit hands out the write end of a pipe, as logind does with a FIFO:
// the lock holds until every copy of that end is closed.
func (o login1) Inhibit(what, who, why, mode string) (dbus.UnixFD, *dbus.Error) {
	m := o.m
	m.mu.Lock()
	defer m.mu.Unlock()
	in := Inhibit{What: what, Who: who, Why: why, Mode: mode}
	m.inhibits = append(m.inhibits, in)
	if m.fail != nil {
		return -1, m.fail
	}
	r, w, err := os.Pipe()
	if err != nil {
		return -1, dbus.MakeFailedError(err)
	}
	m.locks = append(m.locks, &Lock{Inhibit: in, r: r, w: w})
	return dbus.UnixFD(w.Fd()), nil
}

func (o login1) PowerOff(interactive bool) *dbus.Error { return o.m.record("PowerOff", interactive) }

func (o login1) Reboot(interactive bool) *dbus.Error { return o.m.record("Reboot", interactive) }

func (m *Manager) record(method string, interactive bool) *dbus.Error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if interactive {
		method += "(interactive)"
	}
	m.calls = append(m.calls, method)
	return m.fail
}

// Lock is the fake's side of an inhibitor lock it handed out: the read
// end of a pipe whose write end went to the client. The lock is held
// while any copy of the write end is open: the client's, one in flight
// through the bus daemon, and the fake's own until the first Held or
// WaitReleased.
//
// Call Held and WaitReleased only once the client has its lock (its
// Inhibit call returned): they close the fake's copy of the write end,
// which godbus still needs until it has sent the reply. Call them from
// one goroutine at a time.
type Lock struct {
	Inhibit

	r *os.File // read end: EOF once every write end is closed

	mu sync.Mutex
	w  *os.File // the fake's copy of the write end, until dropWriter
}

// Held reports, without waiting, whether the lock is still held.
func (l *Lock) Held(t testing.TB) bool {
	t.Helper()
	l.dropWriter()
	rc, err := l.r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), make([]byte, 1))
		return true // one attempt, never wait
	}); err != nil {
		t.Fatalf("logindtest: read the lock: %v", err)
	}
	switch {
	case errors.Is(rerr, syscall.EAGAIN):
		return true
	case rerr == nil && n == 0:
		return false
	default:
		t.Fatalf("logindtest: lock in an unexpected state: read %d bytes, %v", n, rerr)
		return false
	}
}

// WaitReleased waits up to timeout for the lock to be released (every
// copy of its write end closed, the client's and the bus daemon's), and
// fails the test if it is not.
func (l *Lock) WaitReleased(t testing.TB, timeout time.Duration) {
	t.Helper()
	l.dropWriter()
	if err := l.r.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	n, err := l.r.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("logindtest: lock %s/%s not released within %v: read %d bytes, %v", l.What, l.Mode, timeout, n, err)
	}
}

// dropWriter closes the fake's copy of the write end, so that only the
// client's copy holds the lock.
func (l *Lock) dropWriter() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		l.w.Close()
		l.w = nil
	}
}

func (l *Lock) close() {
	l.dropWriter()
	l.r.Close()
}
