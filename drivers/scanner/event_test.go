package scanner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/microretail/kioskd/internal/hexfixture"
	"github.com/microretail/kioskd/internal/testclock"
)

func TestEventSize(t *testing.T) {
	want := map[int]int{32: event32Size, 64: event64Size}[strconv.IntSize]
	if eventSize != want {
		t.Fatalf("eventSize = %d on a %d-bit platform, want %d", eventSize, strconv.IntSize, want)
	}
}

// TestKeyboardEmulatorGolden compares what the emulator writes with the
// records the kernel writes for the same HID reports, for both sizes of
// struct input_event, and decodes them back.
func TestKeyboardEmulatorGolden(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("fixtures are little-endian")
	}
	for _, tt := range []struct {
		file string
		size int
	}{{"type_1A_us_64.hex", event64Size}, {"type_1A_us_32.hex", event32Size}} {
		t.Run(tt.file, func(t *testing.T) {
			clk := testclock.New(epoch)
			var out bytes.Buffer
			k, err := NewKeyboardEmulator(&out, &KeyboardOpts{Clock: clk.Now, Sleep: clk.Sleep})
			if err != nil {
				t.Fatal(err)
			}
			k.size = tt.size
			if err := k.Type("1A"); err != nil {
				t.Fatal(err)
			}
			want := hexfixture.Read(t, tt.file)
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("emulator wrote\n% X\nfixture\n% X", out.Bytes(), want)
			}
			var keys []string
			for b := want; len(b) > 0; b = b[tt.size:] {
				ev, err := decodeEvent(b, tt.size)
				if err != nil {
					t.Fatal(err)
				}
				if ev.typ == evKey {
					keys = append(keys, ev.time.Sub(epoch).String())
				}
			}
			if got := len(keys); got != 8 {
				t.Fatalf("%d EV_KEY events, want 8", got)
			}
			if keys[7] != "10ms" {
				t.Fatalf("last key at %s, want 10ms", keys[7])
			}
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	at := time.Unix(1741944413, 250000_000)
	ev := inputEvent{time: at, typ: evKey, code: keyA, value: keyRepeat}
	for _, size := range []int{event32Size, event64Size} {
		good := appendEvent(nil, ev, size)
		usec := 4 // offset of the usec field
		if size == event64Size {
			usec = 8
		}
		badUsec := bytes.Clone(good)
		binary.NativeEndian.PutUint32(badUsec[usec:], 1_000_000)
		badType := bytes.Clone(good)
		binary.NativeEndian.PutUint16(badType[size-8:], evMax+1)
		for _, tt := range []struct {
			name string
			in   []byte
			err  error
		}{
			{"whole", good, nil},
			{"one short", good[:size-1], errShortEvent},
			{"empty", nil, errShortEvent},
			{"usec out of range", badUsec, errBadEvent},
			{"type beyond EV_MAX", badType, errBadEvent},
		} {
			got, err := decodeEvent(tt.in, size)
			if !errors.Is(err, tt.err) {
				t.Fatalf("%d bytes, %s: err = %v, want %v", size, tt.name, err, tt.err)
			}
			if err == nil && (got != ev || !got.time.Equal(at)) {
				t.Fatalf("%d bytes: decoded %+v, want %+v", size, got, ev)
			}
		}
	}
	if _, err := decodeEvent(make([]byte, 32), 20); !errors.Is(err, errBadEvent) {
		t.Fatalf("size 20: %v", err)
	}
}

func TestEvent32SecondsUnsigned(t *testing.T) {
	at := time.Unix(1<<31+5, 0) // past 2038: the kernel's __kernel_ulong_t seconds
	ev, err := decodeEvent(appendEvent(nil, inputEvent{time: at, typ: evSyn}, event32Size), event32Size)
	if err != nil || !ev.time.Equal(at) {
		t.Fatalf("decoded %v, %v; want %v", ev.time, err, at)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(appendEvent(nil, inputEvent{time: epoch, typ: evKey, code: keyEnter, value: keyDown}, event64Size))
	f.Add(appendEvent(nil, inputEvent{time: epoch, typ: evSyn, code: synDropped}, event32Size))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 600 {
			b = b[:600] // longer inputs add nothing and make minimising slow
		}
		for _, size := range []int{event32Size, event64Size} {
			ev, err := decodeEvent(b, size)
			switch {
			case err == nil:
				if len(b) < size {
					t.Fatalf("decoded %d bytes as a %d-byte event", len(b), size)
				}
				if again := appendEvent(nil, ev, size); !bytes.Equal(again, b[:size]) {
					t.Fatalf("event % X re-encodes as % X", b[:size], again)
				}
			case errors.Is(err, errShortEvent):
				if len(b) >= size {
					t.Fatalf("%d bytes short of a %d-byte event", len(b), size)
				}
			case !errors.Is(err, errBadEvent):
				t.Fatalf("unexpected error %v", err)
			}
		}
		// The keyboard state machine takes any event stream.
		s := &sink{clock: nowZero, emit: func(Scan) {}}
		w := &wedge{km: usLayout, timeout: 50 * time.Millisecond, minLen: 1, sink: s}
		for b := b; len(b) >= event64Size; b = b[event64Size:] {
			if ev, err := decodeEvent(b, event64Size); err == nil {
				w.event(ev)
			}
		}
		w.idle()
	})
}

func TestKeymaps(t *testing.T) {
	for _, name := range Layouts() {
		km, err := layoutByName(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			for r, s := range km.typing {
				if got, ok := km.char(s.key, s.shift, s.altgr, false); !ok || got != r {
					t.Errorf("typing %q with %+v gives %q", r, s, got)
				}
			}
			for _, r := range "0123456789ABCXYZabcxyz-./" {
				if _, ok := km.typing[r]; !ok {
					t.Errorf("cannot type %q", r)
				}
			}
		})
	}
	fr, _ := layoutByName("fr")
	for _, tt := range []struct {
		km                 *keymap
		key                uint16
		shift, altgr, caps bool
		want               rune
	}{
		{usLayout, key1, false, false, false, '1'},
		{usLayout, key1, true, false, false, '!'},
		{usLayout, keyA, false, false, true, 'A'}, // Caps Lock shifts letters
		{usLayout, keyA, true, false, true, 'a'},  // and Shift undoes it
		{usLayout, key1, false, false, true, '1'}, // not digits
		{usLayout, keyKP7 + 1, false, false, false, '8'},
		{fr, key1, false, false, false, '&'}, // AZERTY: digits need Shift
		{fr, key1, true, false, false, '1'},
		{fr, key1 + 9, false, true, false, '@'}, // AltGr+à
		{fr, keyQ, false, false, false, 'a'},
		{fr, keyZ + 6, false, false, false, ','},
		{fr, key1 + 1, false, false, true, 'é'}, // Caps Lock leaves é alone
		{fr, keyKP7 + 11, false, false, false, '0'},
	} {
		if got, ok := tt.km.char(tt.key, tt.shift, tt.altgr, tt.caps); !ok || got != tt.want {
			t.Errorf("%s key %d shift=%t altgr=%t caps=%t: %q, want %q", tt.km.name, tt.key, tt.shift, tt.altgr, tt.caps, got, tt.want)
		}
	}
	if _, ok := fr.char(keyQ+10, false, false, false); ok {
		t.Error("the fr dead circumflex typed a character")
	}
	if _, err := layoutByName("dvorak"); err == nil {
		t.Error("unknown layout accepted")
	}
}

func TestHIDUsage(t *testing.T) {
	for _, tt := range []struct {
		key  uint16
		want uint32
	}{
		{keyA, 0x70004}, {keyZ, 0x7001D}, {keyQ, 0x70014}, {key1, 0x7001E}, {key1 + 9, 0x70027},
		{keyEnter, 0x70028}, {keyLeftShift, 0x700E1}, {keyRightAlt, 0x700E6}, {key102nd, 0x70064},
	} {
		if got, ok := hidUsage(tt.key); !ok || got != tt.want {
			t.Errorf("hidUsage(%d) = %#x, want %#x", tt.key, got, tt.want)
		}
	}
	for _, km := range layouts {
		for _, s := range km.typing {
			if _, ok := hidUsage(s.key); !ok {
				t.Errorf("%s: no HID usage for key %d", km.name, s.key)
			}
		}
	}
}
