package mosquitto

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/microretail/kioskd/internal/realtest"
)

// shippedDir is where the fleet's broker files live in the module:
// mosquitto.conf, acl and mkcerts.sh.
const shippedDir = "deploy/mosquitto"

// shippedCertDir is the directory the shipped mosquitto.conf names for its
// certificates and ACL; Shipped points it at a test's PKI directory.
const shippedCertDir = "/etc/mosquitto/kioskd/"

// ShippedFile returns the path of a file in deploy/mosquitto, found by
// walking up from the working directory (a package's test directory) to
// the module root.
func ShippedFile(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, shippedDir, name)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("mosquitto: no go.mod above the working directory, so no %s/%s", shippedDir, name)
		}
		dir = parent
	}
}

// MkCerts runs the shipped deploy/mosquitto/mkcerts.sh with args, as an
// operator would. It needs sh and openssl; without them the test skips, or
// fails under KIOSK_REQUIRE_REAL=1.
func MkCerts(t testing.TB, args ...string) {
	t.Helper()
	sh := realtest.Command(t, "sh", "a POSIX shell", "sh")
	realtest.Command(t, "openssl", "apt-get install openssl", "openssl")
	out, err := exec.Command(sh, append([]string{ShippedFile(t, "mkcerts.sh")}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mkcerts.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// PKI mints, with mkcerts.sh, a fleet CA and the certificates a test
// broker and its clients need: server (for localhost, 127.0.0.1 and ::1),
// operator, ingest and one per kiosk id. It returns the directory, which
// also holds the shipped acl once Shipped has rendered the config. (A
// broker Start runs as root stays root, so it can read them.)
func PKI(t testing.TB, kiosks ...string) string {
	t.Helper()
	dir := t.TempDir()
	MkCerts(t, "ca", dir)
	MkCerts(t, "server", dir, "localhost", "127.0.0.1", "::1")
	MkCerts(t, "operator", dir, "operator")
	MkCerts(t, "ingest", dir)
	for _, id := range kiosks {
		MkCerts(t, "kiosk", dir, id)
	}
	return dir
}

// Shipped renders the shipped deploy/mosquitto/mosquitto.conf, with the
// shipped acl, for Start: every path under /etc/mosquitto/kioskd/ points
// into pki (made by PKI; the acl is copied there), and the listener line
// is dropped, since Start opens its own listener on a free loopback port
// just before the config (so the shipped TLS settings apply to that one).
// Nothing else changes. Persist is on because the shipped config persists:
// Start then keeps the database in the broker's own directory.
func Shipped(t testing.TB, pki string) Options {
	t.Helper()
	conf, err := os.ReadFile(ShippedFile(t, "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	acl, err := os.ReadFile(ShippedFile(t, "acl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pki, "acl"), acl, 0o644); err != nil {
		t.Fatal(err)
	}
	rendered, err := renderShipped(string(conf), pki)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Config: rendered, Persist: true}
}

// renderShipped is Shipped's pure part.
func renderShipped(conf, pki string) (string, error) {
	var out strings.Builder
	listeners := 0
	for line := range strings.Lines(conf) {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || trimmed == "" {
			out.WriteString(line)
			continue
		}
		if strings.HasPrefix(trimmed, "listener ") {
			listeners++
			out.WriteString("# (test: " + trimmed + " dropped; the harness's listener precedes this config)\n")
			continue
		}
		line = strings.ReplaceAll(line, shippedCertDir, strings.TrimSuffix(pki, "/")+"/")
		if strings.Contains(line, "/etc/") {
			return "", errors.New("mosquitto: shipped config names a path outside " + shippedCertDir + ": " + trimmed)
		}
		out.WriteString(line)
	}
	if listeners != 1 {
		return "", errors.New("mosquitto: the shipped config should open exactly one listener")
	}
	return out.String(), nil
}
