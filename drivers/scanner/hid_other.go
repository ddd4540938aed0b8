//go:build !linux || mips || mipsle || mips64 || mips64le || ppc64 || ppc64le

package scanner

import (
	"errors"
	"io"
)

// openDevice needs evdev and the asm-generic ioctl encoding; use
// NewHIDReader elsewhere.
func openDevice(Match) (io.ReadCloser, string, error) {
	return nil, "", errors.New("scanner: evdev devices need Linux on arm, arm64 or x86")
}
