package main

import (
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
	f := &otaFixture{keys: keys}
	f.sign = func(t *testing.T, bin, version, url string) otaRelease {
		t.Helper()
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		m := map[string]any{"version": version, "boards": []string{"sim"}, "sha256": hex.EncodeToString(sum[:]),
			"size": len(b), "url": url, "kind": "binary"}
		raw, _ := json.Marshal(m)
		env, err := ota.Sign(raw, priv)
		if err != nil {
			t.Fatal(err)
		}
		return otaRelease{envelope: env, version: version}
	}
	return f
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
