package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microretail/kioskd/internal/logind/logindtest"
)

// These tests run the kioskd binary with logind = "on" against a fake
// logind on a private bus, which it finds, as on a board, through
// DBUS_SYSTEM_BUS_ADDRESS.

// logindConfig turns logind on for the sim board; the rest is defaults.
const logindConfig = "[power]\nlogind = \"on\"\n"

// startKioskdLoggingTo is startKioskd with kioskd's output written
// straight to the file at logPath, not through a pipe the test copies
// into p.log (which stays empty): a line is in the file as soon as
// kioskd's write of it returns, and the test may read the file while
// kioskd runs. The file is logged if the test fails, and kioskd is
// killed if it is still running when the test ends.
func startKioskdLoggingTo(t *testing.T, logPath, data, addr string, extra ...string) *proc {
	t.Helper()
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // kioskd has its own copy
	args := append([]string{"--board", "sim", "--data", data, "--http", addr, "--kiosk-id", "proc-test"}, extra...)
	cmd := exec.Command(kioskdBinary(t), args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=", "WATCHDOG_USEC=")
	cmd.Stdout, cmd.Stderr = out, out
	p := &proc{cmd: cmd, addr: addr, done: make(chan error, 1), log: &bytes.Buffer{}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // os.ErrProcessDone once it exited
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("kioskd log:\n%s", b)
		}
	})
	return p
}

// TestOutsideShutdownWaitsForTheLedger: something other than kioskd shuts
// the board down (the power button, an operator, a UPS daemon). kioskd
// holds logind's delay lock while it sells; on PrepareForShutdown it
// closes the till and the ledger, only then lets go of the lock, and
// exits 0, asking logind for neither a power-off nor a reboot. The sales
// are all there on the next boot.
func TestOutsideShutdownWaitsForTheLedger(t *testing.T) {
	bus := logindtest.Start(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Addr)
	data, addr := t.TempDir(), freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "kioskd.log")
	p := startKioskdLoggingTo(t, logPath, data, addr, "--config", writeConfig(t, logindConfig))
	p.waitReady(t)

	// kioskd takes the lock before it starts the till, so it has it now.
	inhibits := bus.Manager.Inhibits()
	if len(inhibits) != 1 {
		t.Fatalf("Inhibit calls = %+v, want one", inhibits)
	}
	if in := inhibits[0]; in.What != "shutdown" || in.Mode != "delay" || in.Who != "kioskd" {
		t.Fatalf("Inhibit(%q, %q, %q, %q), want what shutdown, who kioskd, mode delay", in.What, in.Who, in.Why, in.Mode)
	}
	lock := bus.Manager.Locks()[0]
	if !lock.Held(t) {
		t.Fatal("the delay lock is released while kioskd sells, want held")
	}

	ids := map[string]string{} // idempotency key → sale id
	for i := range 2 {
		key := fmt.Sprintf("before-shutdown-%d", i+1)
		code, out, err := p.post("/api/checkout",
			fmt.Sprintf(`{"payment":"cash","idempotency_key":%q,"lines":[{"sku":"CHAI","qty":%d}]}`, key, i+1))
		id, _ := out["id"].(string)
		if err != nil || code != 200 || id == "" {
			t.Fatalf("checkout %s: %d %v %v", key, code, out, err)
		}
		ids[key] = id
	}
	if !lock.Held(t) {
		t.Fatal("the delay lock is released after two sales, want held")
	}

	if err := bus.Manager.EmitPrepareForShutdown(true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)

	// The release must come after the ledger closed. kioskd logs "ledger
	// closed" once l.Close returned, with a write(2) straight to the log
	// file, and releases the lock by closing its descriptor. If the write
	// came first, the line is in the file before the release can be seen
	// here: reading the file just after seeing the release never fails a
	// correct kioskd. A kioskd that lets go first still has the ledger to
	// close (a sync and the store's close, milliseconds) before it logs
	// the line, so the file read at once lacks it. Reading the file, not
	// p.log, keeps clear of the goroutine that would write p.log.
	lock.WaitReleased(t, time.Until(deadline))
	atRelease, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(atRelease, []byte("ledger closed")) {
		t.Fatalf("the delay lock was released before kioskd logged \"ledger closed\"; the log then:\n%s", atRelease)
	}

	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("kioskd exited with %v after PrepareForShutdown, want 0", err)
		}
	case <-time.After(time.Until(deadline)):
		t.Fatal("kioskd still running 15 s after PrepareForShutdown(true)")
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if !strings.Contains(text, "system shutdown") && !strings.Contains(text, "the system is shutting down") {
		t.Error("the log does not say the system is shutting down")
	}
	if !strings.Contains(text, "ledger closed") {
		t.Error("the log does not say the ledger closed")
	}
	if calls := bus.Manager.Calls(); len(calls) != 0 {
		t.Errorf("kioskd asked logind for %v on the sim board, want nothing", calls)
	}

	// Both sales are in the ledger, as they were acknowledged.
	p = startKioskd(t, data, addr)
	p.waitReady(t)
	sales := p.allSales(t)
	stopKioskd(t, p)
	got := map[string]string{}
	for _, e := range sales {
		key, _ := e["idempotency_key"].(string)
		got[key], _ = e["id"].(string)
	}
	if len(sales) != len(ids) {
		t.Errorf("%d sales after the shutdown, want %d", len(sales), len(ids))
	}
	for key, id := range ids {
		if got[key] != id {
			t.Errorf("sale %s (%s) after the shutdown: %q", key, id, got[key])
		}
	}
}

// TestNoLogindStillSells: with logind = "on" and no system bus to reach,
// kioskd says there is no logind and sells anyway.
func TestNoLogindStillSells(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus-here"))
	data, addr := t.TempDir(), freeAddr(t)
	p := startKioskd(t, data, addr, "--config", writeConfig(t, logindConfig))
	t.Cleanup(func() { _ = p.cmd.Process.Kill() }) // os.ErrProcessDone once it exited
	p.waitReady(t)
	p.mustPost(t, "/api/checkout", `{"payment":"cash","idempotency_key":"no-logind","lines":[{"sku":"CHAI","qty":1}]}`)
	if sales := p.allSales(t); len(sales) != 1 {
		t.Errorf("%d sales, want 1", len(sales))
	}
	stopKioskd(t, p)
	// p.log is complete, and safe to read, once kioskd has exited.
	if !strings.Contains(p.log.String(), "no logind") {
		t.Fatalf("the log does not say there is no logind:\n%s", p.log)
	}
}
