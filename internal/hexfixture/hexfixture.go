// Package hexfixture reads the protocol tests' golden frames: files in a
// package's testdata holding hex bytes separated by blanks, with #
// comments to say what each byte is.
package hexfixture

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Read returns the bytes of testdata/name, or fails the test.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var digits strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}
