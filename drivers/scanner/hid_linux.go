//go:build linux && !(mips || mipsle || mips64 || mips64le || ppc64 || ppc64le)

package scanner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl request numbers in the asm-generic encoding that arm, arm64 and
// x86 use (include/uapi/asm-generic/ioctl.h): direction in bits 31-30,
// argument size in bits 29-16, type in bits 15-8, number in bits 7-0.
const (
	iocWrite = 1 // _IOC_WRITE: user space writes the argument
	iocRead  = 2 // _IOC_READ: user space reads the argument

	eviocgid      = iocRead<<30 | 8<<16 | 'E'<<8 | 0x02        // EVIOCGID: _IOR('E', 0x02, struct input_id), 4 × u16
	eviocgrab     = iocWrite<<30 | 4<<16 | 'E'<<8 | 0x90       // EVIOCGRAB: _IOW('E', 0x90, int); 1 grabs, 0 releases
	eviocsclockid = iocWrite<<30 | 4<<16 | 'E'<<8 | 0xa0       // EVIOCSCLOCKID: _IOW('E', 0xa0, int): the clock of the timestamps
	nameSize      = 256                                        // buffer for EVIOCGNAME
	eviocname     = iocRead<<30 | nameSize<<16 | 'E'<<8 | 0x06 // EVIOCGNAME(256): _IOC(_IOC_READ, 'E', 0x06, 256)
)

var errNoMatch = errors.New("not the device")

// openDevice opens the first device, in path order, that m matches and
// grabs it. Devices that exist but cannot be opened or grabbed are
// reported with ErrNotFound.
func openDevice(m Match) (io.ReadCloser, string, error) {
	pattern := m.Path
	if pattern == "" {
		pattern = "/dev/input/event*"
	}
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, "", fmt.Errorf("scanner: device glob %q: %w", pattern, err)
	}
	var errs []error
	for _, p := range paths {
		f, err := openEvdev(p, m)
		if err == nil {
			return f, p, nil
		}
		if !errors.Is(err, errNoMatch) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, "", fmt.Errorf("%w: %s: %w", ErrNotFound, m, errors.Join(errs...))
	}
	return nil, "", fmt.Errorf("%w: %s", ErrNotFound, m)
}

// openEvdev opens path non-blocking, so that the runtime poller serves
// its reads and read deadlines work, checks m's name and id and grabs it.
func openEvdev(path string, m Match) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if m.Name != "" {
		name, err := deviceName(fd)
		if err != nil || !strings.Contains(strings.ToLower(name), strings.ToLower(m.Name)) {
			return nil, errNoMatch
		}
	}
	if m.Vendor != 0 || m.Product != 0 {
		id, err := deviceID(fd)
		if err != nil || (m.Vendor != 0 && id[1] != m.Vendor) || (m.Product != 0 && id[2] != m.Product) {
			return nil, errNoMatch
		}
	}
	// Timestamps on the monotonic clock, so that an NTP step on a board
	// without an RTC cannot split a code; kernels before 3.4 keep
	// CLOCK_REALTIME.
	_ = unix.IoctlSetPointerInt(fd, eviocsclockid, unix.CLOCK_MONOTONIC)
	if err := unix.IoctlSetInt(fd, eviocgrab, 1); err != nil {
		return nil, &os.PathError{Op: "EVIOCGRAB", Path: path, Err: err} // EBUSY: another process holds it
	}
	ok = true
	return os.NewFile(uintptr(fd), path), nil
}

// deviceName returns the device's name (EVIOCGNAME).
func deviceName(fd int) (string, error) {
	var buf [nameSize]byte
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), eviocname, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return "", errno
	}
	name, _, _ := bytes.Cut(buf[:], []byte{0})
	return string(name), nil
}

// deviceID returns struct input_id (EVIOCGID): bus type, vendor, product
// and version.
func deviceID(fd int) ([4]uint16, error) {
	var id [4]uint16
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), eviocgid, uintptr(unsafe.Pointer(&id[0]))); errno != 0 {
		return id, errno
	}
	return id, nil
}
