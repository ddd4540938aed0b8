package escpos

import (
	"slices"
	"testing"
)

// FuzzStatusReader: the splitter never panics, loses or invents nothing,
// and is back in step after any garbage: an ASB packet and a reply fed
// next come out as such.
func FuzzStatusReader(f *testing.F) {
	f.Add([]byte{0x12, 0x1a, 0x7e})
	f.Add([]byte{0x10, xoff, 0x00, 0x03, xon, 0x00})
	f.Add([]byte{0x10, 0x00, 0x12, 0xff, 0x80})
	f.Add([]byte{0x10, 0x10, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		var r StatusReader
		r.Feed(in)
		got := drainReplies(&r)
		n := 0
		for _, rep := range got {
			switch rep.Kind {
			case RealTime:
				if rep.Data[0]&rtMask != rtFixed {
					t.Fatalf("reply 0x%02x", rep.Data[0])
				}
				n++
			case AutoStatus:
				if _, err := DecodeASB(rep.Data); err != nil {
					t.Fatal(err)
				}
				n += 4
			case Garbage:
				n++
			default:
				t.Fatalf("kind %v", rep.Kind)
			}
		}
		flow := 0
		for _, b := range in {
			if b == xon || b == xoff {
				flow++
			}
		}
		if n+r.n != len(in)-flow {
			t.Fatalf("%d bytes out, %d pending, %d in (%d XON/XOFF)", n, r.n, len(in), flow)
		}
		r.Feed([]byte{0x18, 0x00, 0x0f, 0x00, 0x1a})
		tail := drainReplies(&r)
		want := []Reply{{Kind: AutoStatus, Data: [4]byte{0x18, 0x00, 0x0f, 0x00}}, {Kind: RealTime, Data: [4]byte{0x1a}}}
		if len(tail) < 2 || !slices.Equal(tail[len(tail)-2:], want) {
			t.Fatalf("not back in step: %v", tail)
		}
	})
}

// FuzzEmulator: the printer takes any byte stream, in pieces, online or
// not, without panicking, and accounts for every byte.
func FuzzEmulator(f *testing.F) {
	f.Add(sampleReceipt().Bytes(), uint8(7), false)
	f.Add([]byte("\x1d(k\x05\x001P0ab\x1d(k\x03\x001Q0"), uint8(3), true)
	f.Add([]byte("\x1dv0\x00\x01\x00\x02\x00\xff\x10\x04\x01"), uint8(1), false)
	f.Add([]byte("\x1b&\x03\x41\x42\x01abc\x02abcdef\x1bD\x08\x10\x00\x1dk\x02123\x00"), uint8(5), false)
	f.Add([]byte("\x1dkI\x06{C\x14\x1a{{\x10\x14\x01\x00\x03"), uint8(2), true)
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8, offline bool) {
		e := NewEmulator(Paper58)
		e.rxSize = 64 // overflows and oversized headers within reach of short inputs
		if offline {
			e.SetCover(true)
		}
		step := int(chunk)%64 + 1
		for i := 0; i < len(in); i += step {
			e.Write(in[i:min(i+step, len(in))])
		}
		e.SetCover(false)
		if e.Printed()+e.Held() > len(in) {
			t.Fatalf("printed %d + held %d > %d bytes", e.Printed(), e.Held(), len(in))
		}
		if !offline && e.Printed()+e.Held() != len(in) {
			t.Fatalf("online: printed %d + held %d != %d bytes", e.Printed(), e.Held(), len(in))
		}
		if e.Held() > 0 {
			if _, _, err := scan(e.rx); err != errShort {
				t.Fatalf("held % X that scans", e.rx)
			}
		}
		e.Receipts()
	})
}

// FuzzScan: the tokenizer never panics and never returns a zero length.
func FuzzScan(f *testing.F) {
	f.Add(sampleReceipt().Bytes())
	f.Add([]byte("\x1dv0\x00\xff\xff\xff\xff"))
	f.Add([]byte("\x1b&\x03\x20\x7e"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for len(in) > 0 {
			o, n, err := scan(in)
			if err == errShort {
				return
			}
			if err != nil || n <= 0 || (o == opText && n > len(in)) {
				t.Fatalf("scan(% X) = %x, %d, %v", in, o, n, err)
			}
			in = in[min(n, len(in)):]
		}
	})
}
