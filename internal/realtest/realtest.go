// Package realtest holds the rule for tests that need a real component the
// machine may lack (Chromium, Mosquitto): on a laptop without it they skip
// and say what to install; with KIOSK_REQUIRE_REAL=1, as CI sets it, they
// fail, so they can never skip silently there.
package realtest

import (
	"os"
	"os/exec"
	"testing"
)

// Required reports whether KIOSK_REQUIRE_REAL=1 is set.
func Required() bool { return os.Getenv("KIOSK_REQUIRE_REAL") == "1" }

// Missing ends the test for want of a component: a skip, or a failure
// when real components are required.
func Missing(t testing.TB, what, install string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s not found and KIOSK_REQUIRE_REAL=1 (%s)", what, install)
	}
	t.Skipf("%s not found, skipping (%s; KIOSK_REQUIRE_REAL=1 makes this a failure)", what, install)
}

// Command finds the first of names on PATH, or ends the test.
func Command(t testing.TB, what, install string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Missing(t, what, install)
	return ""
}
