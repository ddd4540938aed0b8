package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// These tests run the real kioskd binary, as systemd would, and treat it
// the way a power cut does.

// built holds the binaries the tests build, once per run, by package dir.
var built sync.Map // dir → func() (string, error)

// buildBinary builds the command in dir (relative to this package) once
// per test run and returns its path.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	f, _ := built.LoadOrStore(dir, sync.OnceValues(func() (string, error) {
		tmp, err := os.MkdirTemp("", "kioskd-bin-")
		if err != nil {
			return "", err
		}
		path := filepath.Join(tmp, filepath.Base(filepath.Clean(dir)))
		if dir == "." {
			path = filepath.Join(tmp, "kioskd")
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		var ldflags []string
		if pkg, version, ok := strings.Cut(dir, "@"); ok {
			// "DIR@VERSION": the binary stamped with that version.
			ldflags = []string{"-ldflags", "-X main.Version=" + version}
			dir = pkg
			path = filepath.Join(tmp, "kioskd-"+version)
		}
		args := append(append([]string{"build", "-o", path}, ldflags...), dir)
		if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("building %s: %v\n%s", dir, err, out)
		}
		return path, nil
	}))
	path, err := f.(func() (string, error))()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func kioskdBinary(t *testing.T) string { return buildBinary(t, ".") }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	addr string
	done chan error
	log  *bytes.Buffer
}

var client = &http.Client{Timeout: 5 * time.Second}

func startKioskd(t *testing.T, data, addr string, extra ...string) *proc {
	t.Helper()
	return startKioskdBinary(t, kioskdBinary(t), data, addr, extra...)
}

// startKioskdBinary is startKioskd with a binary of the caller's.
func startKioskdBinary(t *testing.T, bin, data, addr string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"--board", "sim", "--data", data, "--http", addr, "--kiosk-id", "proc-test"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=", "WATCHDOG_USEC=")
	p := &proc{cmd: cmd, addr: addr, done: make(chan error, 1), log: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	return p
}

// waitReady polls /healthz until it answers 200.
func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + p.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("kioskd exited before it was ready: %v\n%s", err, p.log)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("kioskd not ready in time\n%s", p.log)
}

func (p *proc) post(path, body string) (int, map[string]any, error) {
	resp, err := client.Post("http://"+p.addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reply %q: %w", b, err)
	}
	return resp.StatusCode, out, nil
}

// allSales pages through /api/sales.
func (p *proc) allSales(t *testing.T) []map[string]any {
	t.Helper()
	var all []map[string]any
	for from := 1; ; {
		resp, err := client.Get(fmt.Sprintf("http://%s/api/sales?from_seq=%d&limit=1000", p.addr, from))
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Entries []map[string]any `json:"entries"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Entries) == 0 {
			return all
		}
		all = append(all, page.Entries...)
		from += len(page.Entries)
	}
}

type checkouts struct {
	mu      sync.Mutex
	acked   map[string]string // idempotency key → sale id, for every 200
	inDoubt map[string]string // key → body, sent without a 200
}

func checkoutBody(key string, rng *rand.Rand) string {
	skus := []string{"CHAI", "SAMOSA", "PAKORA", "GOLA", "PAKOLA"}
	return fmt.Sprintf(`{"payment":"cash","idempotency_key":%q,"lines":[{"sku":%q,"qty":%d}]}`,
		key, skus[rng.IntN(len(skus))], rng.IntN(4)+1)
}

// send makes one checkout and files the outcome.
func (c *checkouts) send(p *proc, key, body string) {
	code, out, err := p.post("/api/checkout", body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && code == 200 {
		id, _ := out["id"].(string)
		if prev, ok := c.acked[key]; ok && prev != id {
			panic(fmt.Sprintf("key %s acknowledged as %s and %s", key, prev, id))
		}
		c.acked[key] = id
		delete(c.inDoubt, key)
		return
	}
	if _, ok := c.acked[key]; !ok {
		c.inDoubt[key] = body
	}
}

// TestSIGKILLNeverLosesASale drives concurrent checkouts over HTTP at the
// real binary and SIGKILLs it at random moments, restarting it each time.
// Every checkout that got a 200 is in the ledger exactly once; checkouts cut
// off by a kill are retried with their keys and end up there at most once.
func TestSIGKILLNeverLosesASale(t *testing.T) {
	const kills = 20
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	data := t.TempDir()
	addr := freeAddr(t)
	c := &checkouts{acked: map[string]string{}, inDoubt: map[string]string{}}
	var next atomic.Int64
	for kill := range kills {
		p := startKioskd(t, data, addr)
		p.waitReady(t)
		c.mu.Lock()
		retry := make(map[string]string, len(c.inDoubt))
		for k, b := range c.inDoubt {
			retry[k] = b
		}
		c.mu.Unlock()
		for k, b := range retry {
			c.send(p, k, b)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
			go func() {
				defer wg.Done()
				for !stop.Load() {
					key := fmt.Sprintf("k-%d", next.Add(1))
					c.send(p, key, checkoutBody(key, wrng))
				}
			}()
		}
		time.Sleep(time.Duration(20+rng.IntN(300)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		stop.Store(true)
		wg.Wait()
		t.Logf("kill %d: %d acknowledged, %d in doubt", kill+1, len(c.acked), len(c.inDoubt))
	}

	p := startKioskd(t, data, addr)
	p.waitReady(t)
	for k, b := range c.inDoubt {
		c.send(p, k, b)
	}
	sales := p.allSales(t)
	byKey := map[string]string{}
	for i, e := range sales {
		if seq := int(e["seq"].(float64)); seq != i+1 {
			t.Fatalf("entry %d has seq %d: a gap", i+1, seq)
		}
		key := e["idempotency_key"].(string)
		if prev, dup := byKey[key]; dup {
			t.Fatalf("key %s recorded twice: %s and %s", key, prev, e["id"])
		}
		byKey[key] = e["id"].(string)
	}
	for key, id := range c.acked {
		if byKey[key] != id {
			t.Fatalf("acknowledged sale %s (%s) is missing or changed: %q", key, id, byKey[key])
		}
	}
	if len(c.acked) < kills {
		t.Fatalf("only %d sales acknowledged over %d runs: the test did not exercise much", len(c.acked), kills)
	}
	t.Logf("%d sales in the ledger, all %d acknowledged ones present once", len(sales), len(c.acked))
	stopKioskd(t, p)
}

// stopKioskd sends SIGTERM and expects a clean exit within 5 s.
func stopKioskd(t *testing.T, p *proc) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("kioskd exited with %v after SIGTERM\n%s", err, p.log)
		}
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("kioskd still running 5 s after SIGTERM\n%s", p.log)
	}
	t.Logf("clean exit in %s", time.Since(start).Round(time.Millisecond))
}

// TestSIGTERMFinishesInFlightSales: a SIGTERM during a burst of checkouts
// exits 0 in time, and every sale that got a 200 is there after a restart.
func TestSIGTERMFinishesInFlightSales(t *testing.T) {
	data, addr := t.TempDir(), freeAddr(t)
	p := startKioskd(t, data, addr)
	p.waitReady(t)
	c := &checkouts{acked: map[string]string{}, inDoubt: map[string]string{}}
	var wg sync.WaitGroup
	var next atomic.Int64
	var stop atomic.Bool
	for w := range 8 {
		wg.Add(1)
		rng := rand.New(rand.NewPCG(uint64(w), 2))
		go func() {
			defer wg.Done()
			for !stop.Load() {
				key := fmt.Sprintf("t-%d", next.Add(1))
				c.send(p, key, checkoutBody(key, rng))
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	stopKioskd(t, p)
	stop.Store(true)
	wg.Wait()
	if !strings.Contains(p.log.String(), "ledger closed") {
		t.Fatalf("no clean ledger close in the log:\n%s", p.log)
	}

	p = startKioskd(t, data, addr)
	p.waitReady(t)
	byKey := map[string]string{}
	for _, e := range p.allSales(t) {
		byKey[e["idempotency_key"].(string)] = e["id"].(string)
	}
	for key, id := range c.acked {
		if byKey[key] != id {
			t.Fatalf("acknowledged %s lost across SIGTERM", key)
		}
	}
	stopKioskd(t, p)
}

// TestLedgerThatCannotOpen: kioskd stays up and says why on /healthz, and
// still stops cleanly.
func TestLedgerThatCannotOpen(t *testing.T) {
	data, addr := t.TempDir(), freeAddr(t)
	if err := os.WriteFile(filepath.Join(data, "ledger"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startKioskd(t, data, addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			var h map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if resp.StatusCode == 503 && strings.Contains(fmt.Sprint(h["reason"]), "ledger") {
				break
			}
			if resp.StatusCode == 200 {
				t.Fatalf("ready with an unopenable ledger: %v", h)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 503 with a reason\n%s", p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out, err := p.post("/api/checkout", `{"payment":"cash","lines":[{"sku":"CHAI","qty":1}]}`); err != nil || code != 503 {
		t.Fatalf("checkout without a ledger: %d %v %v", code, out, err)
	}
	stopKioskd(t, p)
}

// TestSystemdNotify plays systemd: kioskd reports READY=1 once the till can
// sell, pets the watchdog at the interval WATCHDOG_USEC asks for, and says
// STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	data, addr := t.TempDir(), freeAddr(t)
	cmd := exec.Command(kioskdBinary(t), "--board", "sim", "--data", data, "--http", addr, "--kiosk-id", "notify-test")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=300000")
	p := &proc{cmd: cmd, addr: addr, done: make(chan error, 1), log: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()

	expect := func(what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, what) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s from kioskd\n%s", what, p.log)
			}
		}
	}
	expect("READY=1")
	// The till answers by the time READY=1 is sent.
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after READY=1: %v %v", resp, err)
	}
	resp.Body.Close()
	for range 3 {
		expect("WATCHDOG=1")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING=1")
	if err := <-p.done; err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log)
	}
}
