package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/microretail/kioskd/internal/mosquitto"
	"github.com/microretail/kioskd/ota"
	"github.com/microretail/kioskd/telemetry"
)

// otaRelease is a signed release of bin, served by an HTTP server.
type otaRelease struct {
	envelope json.RawMessage
	version  string
}

// otaFixture is a trust store directory and the key that signs into it.
type otaFixture struct {
	keys string
	priv ed25519.PrivateKey // the trusted key
	sign func(t *testing.T, bin, version string, url string) otaRelease
}

func newOTAFixture(t *testing.T) *otaFixture {
	t.Helper()
	pub, priv, err := ota.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	if err := ota.WritePublicKey(filepath.Join(keys, "fleet.pub"), pub); err != nil {
		t.Fatal(err)
	}
	f := &otaFixture{keys: keys, priv: priv}
	f.sign = func(t *testing.T, bin, version, url string) otaRelease {
		t.Helper()
		return f.signWith(t, priv, manifestFor(t, bin, version, url))
	}
	return f
}

// manifestFor is the manifest of bin for the sim board.
func manifestFor(t *testing.T, bin, version, url string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return map[string]any{"version": version, "boards": []string{"sim"}, "sha256": hex.EncodeToString(sum[:]),
		"size": len(b), "url": url, "kind": "binary"}
}

// signWith signs m with priv.
func (f *otaFixture) signWith(t *testing.T, priv ed25519.PrivateKey, m map[string]any) otaRelease {
	t.Helper()
	raw, _ := json.Marshal(m)
	env, err := ota.Sign(raw, priv)
	if err != nil {
		t.Fatal(err)
	}
	return otaRelease{envelope: env, version: m["version"].(string)}
}

// serveFile serves path's bytes at /artifact, with Range support.
func serveFile(t *testing.T, path string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestOTAUpdateAndCommit: the happy path end to end. kioskd 1.0.0 on the
// sim board with a real Mosquitto gets ota_install with a release signed
// by a key it trusts; it downloads over HTTP, installs into the inactive
// slot, switches, restarts through the launcher into 1.1.0 on trial, which
// passes its health check and commits; the fleet sees each state on
// kiosk/<id>/ota and the new version in the birth.
func TestOTAUpdateAndCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two kioskd binaries and updates one to the other")
	}
	oldBin := buildBinary(t, ".@1.0.0")
	newBin := buildBinary(t, ".@1.1.0")
	fx := newOTAFixture(t)
	srv := serveFile(t, newBin)
	rel := fx.sign(t, newBin, "1.1.0", srv.URL+"/artifact")

	b := mosquitto.Start(t, mosquitto.Options{})
	data, addr := t.TempDir(), freeAddr(t)
	conf := filepath.Join(t.TempDir(), "kioskd.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[ota]\nkeys = %q\ntrial_uptime = \"2s\"\nhealth_timeout = \"60s\"\noffline_grace = \"30s\"\n", fx.keys)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startKioskdBinary(t, oldBin, data, addr, "--mqtt", b.URL(), "--config", conf)
	defer func() {
		select {
		case <-p.done:
		default:
			stopKioskd(t, p)
		}
	}()
	p.waitReady(t)
	w := watchFleet(t, b.URL(), "kiosk/proc-test/#")
	w.status(t, p, "online, 1.0.0", func(s telemetry.Status, _ bool) bool { return s.State == "online" && s.Version == "1.0.0" })
	p.mustPost(t, "/api/checkout", `{"payment":"cash","idempotency_key":"before-ota","lines":[{"sku":"CHAI","qty":1}]}`)

	w.send(t, "kiosk/proc-test/cmd", telemetry.Command{ID: "ota-1", Cmd: "ota_install",
		Args: json.RawMessage(fmt.Sprintf(`{"envelope":%s,"job":"j-1"}`, rel.envelope))})
	if r := w.result(t, "ota-1"); !r.OK {
		t.Fatalf("ota_install: %+v\n%s", r, p.log)
	}
	// The fleet follows the job on kiosk/<id>/ota, to committed, and the
	// kiosk comes back as 1.1.0 (the same process id: exec in place).
	var seen []string
	st := wait(t, w, "/ota", "ota committed", 90*time.Second, func(s telemetry.OTAStatus, _ paho.Message) bool {
		if len(seen) == 0 || seen[len(seen)-1] != s.State {
			seen = append(seen, s.State)
		}
		if s.State == "failed" || s.State == "rolled_back" {
			t.Fatalf("ota %s: %s\nstates %v\n%s", s.State, s.Error, seen, p.log)
		}
		return s.State == "committed"
	})
	if st.Version != "1.1.0" || st.Running != "1.1.0" || st.Job != "j-1" {
		t.Fatalf("committed status %+v", st)
	}
	if !inOrder(seen, "downloading", "trial", "committed") {
		t.Fatalf("ota states %v, want downloading, trial, committed in order", seen)
	}
	code, hz, err := p.get("/healthz")
	if err != nil || code != 200 || hz["version"] != "1.1.0" {
		t.Fatalf("healthz after the update: %d %v %v", code, hz, err)
	}
	// The sale made before the update is there; the new release sells.
	p.mustPost(t, "/api/checkout", `{"payment":"cash","idempotency_key":"after-ota","lines":[{"sku":"CHAI","qty":1}]}`)
	if n := len(p.allSales(t)); n != 2 {
		t.Fatalf("%d sales after the update, want 2", n)
	}
	stopKioskd(t, p)

	// A restart runs the committed release through the launcher.
	p = startKioskdBinary(t, oldBin, data, addr, "--mqtt", b.URL(), "--config", conf)
	p.waitReady(t)
	if _, hz, _ := p.get("/healthz"); hz["version"] != "1.1.0" {
		t.Fatalf("after a restart the launcher ran %v, want 1.1.0\n%s", hz["version"], p.log)
	}
	if !strings.Contains(p.log.String(), "ota: starting the installed release") {
		t.Errorf("the launcher did not say what it started")
	}
}

// otaSetup runs kioskd 1.0.0 online on a real Mosquitto with a trust
// store, and sends it rel. conf's [ota] gets extra settings.
func otaSetup(t *testing.T, fx *otaFixture, extra string) (b *mosquitto.Broker, data, addr, conf, oldBin string, p *proc, w *fleetWatch) {
	t.Helper()
	oldBin = buildBinary(t, ".@1.0.0")
	b = mosquitto.Start(t, mosquitto.Options{})
	data, addr = t.TempDir(), freeAddr(t)
	conf = filepath.Join(t.TempDir(), "kioskd.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[ota]\nkeys = %q\n%s", fx.keys, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	p = startKioskdBinary(t, oldBin, data, addr, "--mqtt", b.URL(), "--config", conf)
	p.waitReady(t)
	w = watchFleet(t, b.URL(), "kiosk/proc-test/#")
	w.status(t, p, "online, 1.0.0", func(s telemetry.Status, _ bool) bool { return s.State == "online" && s.Version == "1.0.0" })
	return
}

func (w *fleetWatch) install(t *testing.T, p *proc, rel otaRelease) {
	t.Helper()
	w.send(t, "kiosk/proc-test/cmd", telemetry.Command{ID: "ota-" + rel.version, Cmd: "ota_install",
		Args: json.RawMessage(fmt.Sprintf(`{"envelope":%s,"job":"j-%s"}`, rel.envelope, rel.version))})
	if r := w.result(t, "ota-"+rel.version); !r.OK {
		t.Fatalf("ota_install: %+v\n%s", r, p.log)
	}
}

// waitOTA waits for the job's status in state.
func (w *fleetWatch) waitOTA(t *testing.T, state string, d time.Duration) telemetry.OTAStatus {
	t.Helper()
	return wait(t, w, "/ota", "ota "+state, d, func(s telemetry.OTAStatus, _ paho.Message) bool { return s.State == state })
}

// TestOTACrashingReleaseRollsBack: a release that dies at start is
// restarted (as systemd does) until the launcher has counted its trial
// boots; then 1.0.0 runs again and the fleet hears why.
func TestOTACrashingReleaseRollsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kioskd and updates it to a release that crashes")
	}
	fx := newOTAFixture(t)
	crash := filepath.Join(t.TempDir(), "kioskd-crash")
	if err := os.WriteFile(crash, []byte("#!/bin/sh\necho 'panic: the new release is broken' >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rel := fx.sign(t, crash, "1.1.0", serveFile(t, crash).URL+"/artifact")
	b, data, addr, conf, oldBin, p, w := otaSetup(t, fx, "")
	w.install(t, p, rel)
	w.waitOTA(t, "trial", 60*time.Second)

	// systemd's Restart=always: start the packaged binary again each time
	// the release dies, until kioskd answers.
	for start := 1; ; start++ {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("start %d still running without answering\n%s", start, p.log)
		}
		if start > 6 {
			t.Fatalf("still crashing after %d starts", start)
		}
		p = startKioskdBinary(t, oldBin, data, addr, "--mqtt", b.URL(), "--config", conf)
		if p.answers(10 * time.Second) {
			break
		}
	}
	defer stopKioskd(t, p)
	st := w.waitOTA(t, "rolled_back", 30*time.Second)
	if !strings.Contains(st.Error, "crashed 3 times in trial") || st.Running != "1.0.0" {
		t.Fatalf("rolled back %+v", st)
	}
	if _, hz, _ := p.get("/healthz"); hz["version"] != "1.0.0" {
		t.Fatalf("running %v after the rollback", hz["version"])
	}
}

// TestOTAUnhealthyReleaseRollsBack: a release that runs but never becomes
// healthy (here it cannot reach the fleet, and the offline grace is
// longer than the health timeout) fails its own trial and restarts into
// 1.0.0, which reports the reason.
func TestOTAUnhealthyReleaseRollsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two kioskd binaries and updates one to the other")
	}
	fx := newOTAFixture(t)
	newBin := buildBinary(t, ".@1.1.0")
	rel := fx.sign(t, newBin, "1.1.0", serveFile(t, newBin).URL+"/artifact")
	b, _, _, _, _, p, w := otaSetup(t, fx, "trial_uptime = \"2s\"\nhealth_timeout = \"8s\"\noffline_grace = \"10m\"\n")
	defer stopKioskd(t, p)
	w.install(t, p, rel)
	w.waitOTA(t, "trial", 60*time.Second)
	b.Stop() // the fleet is gone while 1.1.0 is on trial
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.log.String(), "ota: trial failed; back to the previous release") {
		if time.Now().After(deadline) {
			t.Fatalf("the trial did not fail\n%s", p.log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Restart(0)
	st := w.waitOTA(t, "rolled_back", 60*time.Second)
	if !strings.Contains(st.Error, "not healthy 8s after start") || st.Running != "1.0.0" {
		t.Fatalf("rolled back %+v", st)
	}
}

// answers waits up to d for /healthz to answer 200; false if kioskd
// exited first or did not answer in time (the exit stays on p.done).
func (p *proc) answers(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err // for the caller, who waits on it
			return false
		default:
		}
		if code, _, err := p.get("/healthz"); err == nil && code == 200 {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// TestOTARefusals: releases the kiosk must refuse before anything is
// switched: a key it does not trust, a broken signature, another board, a
// downgrade, an artifact that does not match its signed manifest, and one
// the server holds only part of.
// Each is answered with the reason; the kiosk stays on 1.0.0 and sells.
func TestOTARefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kioskd and refuses releases to it")
	}
	fx := newOTAFixture(t)
	art := filepath.Join(t.TempDir(), "kioskd-1.1.0")
	if err := os.WriteFile(art, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := serveFile(t, art)
	_, data, _, _, _, p, w := otaSetup(t, fx, "")
	defer stopKioskd(t, p)

	_, stranger, _ := ota.GenerateKey(rand.Reader)
	bad := fx.sign(t, art, "1.1.0", srv.URL+"/artifact")
	var env map[string]any
	_ = json.Unmarshal(bad.envelope, &env)
	sig := env["signatures"].([]any)[0].(map[string]any)
	s := []byte(sig["sig"].(string))
	s[3] ^= 'A' ^ 'B'
	sig["sig"] = string(s)
	bad.envelope, _ = json.Marshal(env)
	board := manifestFor(t, art, "1.1.0", srv.URL+"/artifact")
	board["boards"] = []string{"rpi4b"}
	down := manifestFor(t, art, "0.9.0", srv.URL+"/artifact")
	for i, c := range []struct {
		rel  otaRelease
		want string
	}{
		{fx.signWith(t, stranger, manifestFor(t, art, "1.1.0", srv.URL+"/artifact")), "not signed by a trusted key"},
		{bad, "signature"},
		{fx.signWith(t, fx.priv, board), "another board"},
		{fx.signWith(t, fx.priv, down), "not newer"},
	} {
		id := fmt.Sprint("refuse-", i)
		w.send(t, "kiosk/proc-test/cmd", telemetry.Command{ID: id, Cmd: "ota_install",
			Args: json.RawMessage(fmt.Sprintf(`{"envelope":%s}`, c.rel.envelope))})
		if r := w.result(t, id); r.OK || !strings.Contains(r.Error, c.want) {
			t.Errorf("case %d: %+v, want refused with %q", i, r, c.want)
		}
	}

	// Signed and checked, but the server's bytes are not the manifest's:
	// the job fails after the download and nothing is switched.
	good := fx.sign(t, art, "1.1.0", srv.URL+"/artifact")
	if err := os.WriteFile(art, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil { // same size, other bytes
		t.Fatal(err)
	}
	w.install(t, p, good)
	st := w.waitOTA(t, "failed", 60*time.Second)
	if !strings.Contains(st.Error, "does not match") || st.Running != "1.0.0" {
		t.Fatalf("a corrupt artifact: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(data, "ota", "boot.json")); err == nil {
		t.Fatal("a boot state was written for a release that failed its download")
	}
	// Truncated: the server holds only part of the artifact. The sizes
	// disagree, the job fails, and nothing is switched.
	full := []byte("#!/bin/sh\n# release 1.2.0, padded to be cut in half\nexit 0\n")
	long := filepath.Join(t.TempDir(), "kioskd-1.2.0")
	short := filepath.Join(t.TempDir(), "kioskd-1.2.0-truncated")
	if err := os.WriteFile(long, full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, full[:len(full)/2], 0o755); err != nil {
		t.Fatal(err)
	}
	w.install(t, p, fx.sign(t, long, "1.2.0", serveFile(t, short).URL+"/artifact"))
	st = w.waitOTA(t, "failed", 60*time.Second)
	if st.Version != "1.2.0" || st.Running != "1.0.0" || st.Error == "" {
		t.Fatalf("a truncated artifact: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(data, "ota", "boot.json")); err == nil {
		t.Fatal("a boot state was written for a truncated artifact")
	}
	t.Logf("truncated: %s", st.Error)
	if _, hz, _ := p.get("/healthz"); hz["version"] != "1.0.0" {
		t.Fatalf("running %v", hz["version"])
	}
	p.mustPost(t, "/api/checkout", `{"payment":"cash","idempotency_key":"after-refusals","lines":[{"sku":"CHAI","qty":1}]}`)
}

// TestOTADownloadResumesAfterSIGKILL: a download cut off by a SIGKILL of
// kioskd (a power cut) resumes from the offset it persisted, not from
// zero, after the restart, and the update completes.
func TestOTADownloadResumesAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two kioskd binaries and updates one to the other")
	}
	fx := newOTAFixture(t)
	newBin := buildBinary(t, ".@1.1.0")
	var (
		mu     sync.Mutex
		ranges []string
		served int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		cw := &countingWriter{ResponseWriter: w}
		http.ServeFile(cw, r, newBin)
		mu.Lock()
		served += cw.n
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	rel := fx.sign(t, newBin, "1.1.0", srv.URL+"/artifact")
	size := rel.size(t)
	// The kiosk caps its own download so the SIGKILL lands in the middle.
	b, data, addr, conf, oldBin, p, w := otaSetup(t, fx, fmt.Sprintf("rate = %d\ntrial_uptime = \"2s\"\n", size/8))
	w.install(t, p, rel)
	wait(t, w, "/ota", "download past a fifth", 30*time.Second, func(s telemetry.OTAStatus, _ paho.Message) bool {
		return s.State == "downloading" && s.Progress > 20
	})
	_ = p.cmd.Process.Kill()
	<-p.done

	p = startKioskdBinary(t, oldBin, data, addr, "--mqtt", b.URL(), "--config", conf)
	defer func() {
		select {
		case <-p.done:
		default:
			stopKioskd(t, p)
		}
	}()
	w.waitOTA(t, "committed", 90*time.Second)
	mu.Lock()
	defer mu.Unlock()
	resumed := false
	for _, r := range ranges {
		resumed = resumed || strings.HasPrefix(r, "bytes=") && r != "bytes=0-"
	}
	if !resumed || served >= 2*size {
		t.Fatalf("requests %q, %d bytes served for %d: the download started over", ranges, served, size)
	}
	t.Logf("requests %q: %d bytes served for an artifact of %d", ranges, served, size)
}

// size is the release's artifact size, from its manifest.
func (r otaRelease) size(t *testing.T) int64 {
	t.Helper()
	var env struct{ Manifest []byte }
	if err := json.Unmarshal(r.envelope, &env); err != nil {
		t.Fatal(err)
	}
	var m struct{ Size int64 }
	if err := json.Unmarshal(env.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	return m.Size
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// TestOTAPowerCuts: SIGKILL at 50 random points of updates going back and
// forth between two releases (OSTree's interrupt loop is the model). After
// each cut kioskd is started again, as systemd does, and must come up on
// some release with every sale it acknowledged in its ledger.
func TestOTAPowerCuts(t *testing.T) {
	if testing.Short() {
		t.Skip("50 SIGKILLs through updates; not in -short")
	}
	const cuts = 50
	fx := newOTAFixture(t)
	newBin := buildBinary(t, ".@1.1.0")
	srvOld, srvNew := "", serveFile(t, newBin).URL+"/artifact"
	b, data, addr, conf, oldBin, p, w := otaSetup(t, fx, "trial_uptime = \"1s\"\nhealth_timeout = \"20s\"\noffline_grace = \"1s\"\n")
	srvOld = serveFile(t, oldBin).URL + "/artifact"
	// Releases both ways; force lets 1.0.0 replace 1.1.0.
	up := fx.sign(t, newBin, "1.1.0", srvNew)
	downM := manifestFor(t, oldBin, "1.0.0", srvOld)
	downM["force"] = true
	down := fx.signWith(t, fx.priv, downM)

	rng := rand.Reader
	randDelay := func() time.Duration {
		var buf [2]byte
		_, _ = rng.Read(buf[:])
		return time.Duration(int(buf[0])<<8|int(buf[1])) % 2500 * time.Millisecond
	}
	sales := 0
	var versions []string // the release running after each cut, as it changed
	jobIdle := func() bool {
		raw, err := os.ReadFile(filepath.Join(data, "ota", "job.json"))
		if err != nil {
			return true
		}
		var j struct{ State string }
		return json.Unmarshal(raw, &j) != nil || j.State == "committed" || j.State == "rolled_back" || j.State == "failed" || j.State == "idle"
	}
	for cut := 0; cut < cuts; cut++ {
		// A sale, acknowledged: it must survive every cut that follows.
		p.mustPost(t, "/api/checkout", fmt.Sprintf(`{"payment":"cash","idempotency_key":"cut-%d","lines":[{"sku":"CHAI","qty":1}]}`, cut))
		sales++
		if jobIdle() {
			_, hz, _ := p.get("/healthz")
			rel := up
			if hz["version"] == "1.1.0" {
				rel = down
			}
			id := fmt.Sprint("cut-cmd-", cut)
			w.send(t, "kiosk/proc-test/cmd", telemetry.Command{ID: id, Cmd: "ota_install",
				Args: json.RawMessage(fmt.Sprintf(`{"envelope":%s,"job":"j-%d"}`, rel.envelope, cut))})
		}
		time.Sleep(randDelay())
		_ = p.cmd.Process.Kill()
		<-p.done
		// systemd restarts it; a release in trial that keeps being cut
		// is rolled back by the launcher after its third boot.
		for start := 0; ; start++ {
			p = startKioskdBinary(t, oldBin, data, addr, "--mqtt", b.URL(), "--config", conf)
			if p.answers(30 * time.Second) {
				break
			}
			select {
			case <-p.done:
			default:
				_ = p.cmd.Process.Kill()
				<-p.done
			}
			if start == 5 {
				t.Fatalf("cut %d: kioskd does not come up after %d starts\n%s", cut, start+1, p.log)
			}
		}
		if n := len(p.allSales(t)); n != sales {
			t.Fatalf("cut %d: %d sales in the ledger, want %d", cut, n, sales)
		}
		_, hz, _ := p.get("/healthz")
		if v := fmt.Sprint(hz["version"]); len(versions) == 0 || versions[len(versions)-1] != v {
			versions = append(versions, v)
		}
	}
	// The cuts fell through real updates, not an idle kiosk.
	if len(versions) < 3 {
		t.Fatalf("the release changed only %d times in %d cuts: %v", len(versions)-1, cuts, versions)
	}
	t.Logf("after %d cuts the kiosk ran, in turn: %v", cuts, versions)
	stopKioskd(t, p)
}

// TestOTADelta: a kiosk running the delta's base rebuilds the release from
// the patch and never fetches the full artifact; a patch that does not
// rebuild it falls back to the full artifact. Both commit.
func TestOTADelta(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two kioskd binaries and a delta between them")
	}
	oldBin, newBin := buildBinary(t, ".@1.0.0"), buildBinary(t, ".@1.1.0")
	dir := t.TempDir()
	patch := filepath.Join(dir, "1.0.0-1.1.0.zst")
	start := time.Now()
	info, err := ota.MakeDelta(oldBin, newBin, patch)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := os.Stat(newBin)
	t.Logf("delta %d bytes for an artifact of %d (%.2f%%), made in %s", info.Size, full.Size(),
		100*float64(info.Size)/float64(full.Size()), time.Since(start).Round(time.Millisecond))
	baseSum, _ := ota.FileSHA256(oldBin)

	for _, c := range []struct {
		name    string
		corrupt bool
	}{{"the patch rebuilds the release", false}, {"a patch that does not falls back to the full artifact", true}} {
		t.Run(c.name, func(t *testing.T) {
			p := patch
			sum, size := info.SHA256, info.Size
			if c.corrupt {
				b, _ := os.ReadFile(patch)
				b[len(b)/2] ^= 0x40
				p = filepath.Join(t.TempDir(), "bad.zst")
				_ = os.WriteFile(p, b, 0o644)
				sum, _ = ota.FileSHA256(p) // the download verifies; the rebuild must not
			}
			var fullHits, patchHits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/artifact":
					fullHits.Add(1)
					http.ServeFile(w, r, newBin)
				case "/patch":
					patchHits.Add(1)
					http.ServeFile(w, r, p)
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			fx := newOTAFixture(t)
			m := manifestFor(t, newBin, "1.1.0", srv.URL+"/artifact")
			m["delta"] = map[string]any{"base_version": "1.0.0", "base_sha256": baseSum, "sha256": sum, "size": size, "url": srv.URL + "/patch"}
			rel := fx.signWith(t, fx.priv, m)
			_, _, _, _, _, kp, w := otaSetup(t, fx, "trial_uptime = \"1s\"\n")
			defer func() {
				select {
				case <-kp.done:
				default:
					stopKioskd(t, kp)
				}
			}()
			w.install(t, kp, rel)
			w.waitOTA(t, "committed", 120*time.Second)
			if patchHits.Load() == 0 {
				t.Fatal("the patch was never fetched")
			}
			if c.corrupt != (fullHits.Load() > 0) {
				t.Fatalf("full artifact fetched %d times (corrupt patch: %t)\n%s", fullHits.Load(), c.corrupt, kp.log)
			}
		})
	}
}
