//go:build linux && !(mips || mipsle || mips64 || mips64le || ppc64 || ppc64le)

package scanner

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uinput ioctls (include/uapi/linux/uinput.h).
const (
	uiDevCreate  = 'U'<<8 | 1                          // UI_DEV_CREATE: _IO('U', 1)
	uiDevDestroy = 'U'<<8 | 2                          // UI_DEV_DESTROY: _IO('U', 2)
	uiDevSetup   = iocWrite<<30 | 92<<16 | 'U'<<8 | 3  // UI_DEV_SETUP: _IOW('U', 3, struct uinput_setup)
	uiSetEvBit   = iocWrite<<30 | 4<<16 | 'U'<<8 | 100 // UI_SET_EVBIT: _IOW('U', 100, int)
	uiSetKeyBit  = iocWrite<<30 | 4<<16 | 'U'<<8 | 101 // UI_SET_KEYBIT: _IOW('U', 101, int)
	uiSetMscBit  = iocWrite<<30 | 4<<16 | 'U'<<8 | 104 // UI_SET_MSCBIT: _IOW('U', 104, int)
	busUSB       = 0x03                                // BUS_USB
	testVendor   = 0x1209                              // pid.codes, for test devices
	testProduct  = 0x0001
)

// uinputSetup is struct uinput_setup: struct input_id, char name[80],
// __u32 ff_effects_max; 92 bytes.
type uinputSetup struct {
	id           [4]uint16
	name         [80]byte
	ffEffectsMax uint32
}

func TestIoctlNumbers(t *testing.T) {
	for _, tt := range []struct {
		name      string
		got, want uint
	}{
		{"EVIOCGRAB", eviocgrab, 0x40044590},
		{"EVIOCGID", eviocgid, 0x80084502},
		{"EVIOCGNAME(256)", eviocname, 0x81004506},
		{"EVIOCSCLOCKID", eviocsclockid, 0x400445A0},
		{"UI_DEV_SETUP", uiDevSetup, 0x405C5503},
		{"UI_SET_EVBIT", uiSetEvBit, 0x40045564},
		{"_IOW('T', 0x31, int) is TIOCSPTLCK", iocWrite<<30 | 4<<16 | 'T'<<8 | 0x31, unix.TIOCSPTLCK}, // the encoding, checked against x/sys
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
	if s := unsafe.Sizeof(uinputSetup{}); s != 92 {
		t.Errorf("struct uinput_setup is %d bytes, want 92", s)
	}
}

// uinputKeyboard creates a USB keyboard named name through /dev/uinput.
func uinputKeyboard(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.OpenFile("/dev/uinput", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("end-to-end test needs a writable /dev/uinput (the uinput module): %v", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ierr error
	ioctl := func(req uint, arg uintptr) {
		if ierr == nil {
			ierr = rc.Control(func(fd uintptr) {
				if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), arg); errno != 0 {
					ierr = fmt.Errorf("ioctl %#x: %w", req, errno)
				}
			})
		}
	}
	ioctl(uiSetEvBit, evKey)
	ioctl(uiSetEvBit, evMsc)
	ioctl(uiSetMscBit, mscScan)
	for _, k := range []uint16{keyLeftShift, keyRightAlt, keyEnter, keyKPEnter} {
		ioctl(uiSetKeyBit, uintptr(k))
	}
	for _, s := range usLayout.typing {
		ioctl(uiSetKeyBit, uintptr(s.key))
	}
	setup := new(uinputSetup)
	setup.id = [4]uint16{busUSB, testVendor, testProduct, 1}
	copy(setup.name[:], name)
	if ierr == nil {
		ierr = rc.Control(func(fd uintptr) {
			if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uiDevSetup, uintptr(unsafe.Pointer(setup))); errno != 0 {
				ierr = fmt.Errorf("UI_DEV_SETUP: %w", errno)
			}
		})
	}
	ioctl(uiDevCreate, 0)
	if ierr != nil {
		f.Close()
		t.Fatalf("creating the uinput keyboard: %v", ierr)
	}
	return f
}

func destroy(t *testing.T, f *os.File) {
	t.Helper()
	rc, _ := f.SyscallConn()
	rc.Control(func(fd uintptr) { unix.Syscall(unix.SYS_IOCTL, fd, uiDevDestroy, 0) })
	f.Close()
}

func waitDevice(t *testing.T, h *HID, connected bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if d := h.Device(); (d != "") == connected {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("Device() = %q, want connected=%t", h.Device(), connected)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUinputEndToEnd types into a real kernel input device and reads it
// through NewHID: the device is found by name, grabbed, read, unplugged
// (UI_DEV_DESTROY: reads fail with ENODEV) and found again when it comes back.
func TestUinputEndToEnd(t *testing.T) {
	name := fmt.Sprintf("kioskd test scanner %d", os.Getpid())
	dev := uinputKeyboard(t, name)
	h := NewHID(Match{Name: name, Vendor: testVendor, Product: testProduct}, &HIDOpts{MaxBackoff: 100 * time.Millisecond})
	got := newScans()
	stop := startRun(t, h, got.emit)

	path := waitDevice(t, h, true)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetInt(fd, eviocgrab, 1); !errors.Is(err, unix.EBUSY) {
		t.Errorf("second EVIOCGRAB = %v, want EBUSY: the driver does not hold the grab", err)
	}
	unix.Close(fd)

	k, err := NewKeyboardEmulator(dev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Type("8964000123454"); err != nil {
		t.Fatal(err)
	}
	got.waitFor(t, "8964000123454", 1)

	destroy(t, dev) // unplugged
	waitDevice(t, h, false)
	dev = uinputKeyboard(t, name) // plugged in again
	defer destroy(t, dev)
	waitDevice(t, h, true)
	k, _ = NewKeyboardEmulator(dev, nil)
	if err := k.Type("KIOSK-42"); err != nil {
		t.Fatal(err)
	}
	got.waitFor(t, "KIOSK-42", 1)
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
}
