package scanner

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/microretail/kioskd/internal/hexfixture"
)

func TestCRC16(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint16
	}{
		{"0701000A01", 0xEE8A}, // GM65 manual §8.2
		{"00013E", 0xE4AC},     // §8.2 reply
		{"0801000A3E", 0x4CCF}, // §8.3
		{"000100", 0x3331},     // §8.3 reply
		{"0901000000", 0xDEC8}, // §8.4
		{"0801000201", 0x02DA}, // Newland command-trigger note: start reading
		{"0701000601", 0xABE7}, // Newland: read 0x0006
		{"00010F", 0xC2DE},     // Newland: its reply
	} {
		b, _ := hex.DecodeString(tt.in)
		if got := crc16(b); got != tt.want {
			t.Errorf("crc16(%s) = %04X, want %04X", tt.in, got, tt.want)
		}
	}
}

func TestFramesGolden(t *testing.T) {
	tests := []struct {
		file string
		cmd  bool
		want frame
	}{
		{"gm65_read_cmd.hex", true, frame{typeRead, 0x000A, []byte{1}}},
		{"gm65_read_reply.hex", false, frame{typeOK, 0, []byte{0x3E}}},
		{"gm65_write_cmd.hex", true, frame{typeWrite, 0x000A, []byte{0x3E}}},
		{"gm65_write_reply.hex", false, frame{typeOK, 0, []byte{0}}},
		{"gm65_save_cmd.hex", true, frame{typeSave, 0, []byte{0}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			want := hexfixture.Read(t, tt.file)
			var got []byte
			if tt.cmd {
				got = encodeCommand(tt.want.typ, tt.want.addr, tt.want.data)
			} else {
				got = encodeReply(tt.want.typ, tt.want.data)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded % X\nfixture % X", got, want)
			}
			decode := decodeReply
			if tt.cmd {
				decode = decodeCommand
			}
			f, n, err := decode(want)
			if err != nil || n != len(want) || f.typ != tt.want.typ || f.addr != tt.want.addr || !bytes.Equal(f.data, tt.want.data) {
				t.Fatalf("decoded %+v, %d, %v", f, n, err)
			}
		})
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	write := hexfixture.Read(t, "gm65_write_cmd.hex")
	reply := hexfixture.Read(t, "gm65_write_reply.hex")
	tests := []struct {
		name   string
		decode func([]byte) (frame, int, error)
		in     []byte
		err    error
	}{
		{"empty", decodeReply, nil, errShortFrame},
		{"head only", decodeReply, reply[:2], errShortFrame},
		{"no CRC yet", decodeReply, reply[:5], errShortFrame},
		{"one CRC byte", decodeReply, reply[:6], errShortFrame},
		{"wrong head", decodeReply, []byte{0x02, 0x01, 0, 1, 0, 0x33, 0x31}, errBadFrame},
		{"noise", decodeReply, []byte{0x41}, errBadFrame},
		{"reply CRC", decodeReply, []byte{0x02, 0, 0, 1, 0, 0x33, 0x32}, errBadFrame},
		{"reply cannot skip CRC", decodeReply, []byte{0x02, 0, 0, 1, 0, 0xAB, 0xCD}, errBadFrame},
		{"command CRC", decodeCommand, hexfixture.Read(t, "gm65_bad_crc_cmd.hex"), errBadFrame},
		{"command AB CD", decodeCommand, hexfixture.Read(t, "gm65_trigger_nocrc.hex"), nil},
		{"command short", decodeCommand, write[:len(write)-1], errShortFrame},
		{"reply is not a command", decodeCommand, reply, errBadFrame},
		{"Lens 0 is 256 bytes", decodeReply, []byte{0x02, 0, 0, 0, 1, 2, 3}, errShortFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.decode(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestFrame256(t *testing.T) {
	data := bytes.Repeat([]byte{0x5A}, 256)
	b := encodeReply(typeOK, data)
	if b[3] != 0 {
		t.Fatalf("Lens = %d, want 0 for 256 bytes", b[3])
	}
	f, n, err := decodeReply(b)
	if err != nil || n != len(b) || !bytes.Equal(f.data, data) {
		t.Fatalf("decodeReply: %d bytes, %d, %v", len(f.data), n, err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, name := range []string{"gm65_read_reply.hex", "gm65_write_reply.hex", "gm65_read_cmd.hex", "gm65_write_cmd.hex", "gm65_trigger_nocrc.hex"} {
		f.Add(hexfixture.Read(f, name))
	}
	f.Add([]byte{0x02, 0x00, 0x00, 0x00})
	f.Add([]byte("8964000123454\r\x02\x00\x00\x01\x00\x33\x31"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 600 {
			b = b[:600] // longer inputs add nothing and make minimising slow
		}
		for _, dec := range []struct {
			decode func([]byte) (frame, int, error)
			cmd    bool
		}{{decodeReply, false}, {decodeCommand, true}} {
			fr, n, err := dec.decode(b)
			switch {
			case err == nil:
				if n < 7 || n > len(b) {
					t.Fatalf("n = %d for %d bytes", n, len(b))
				}
				if !dec.cmd && !bytes.Equal(encodeReply(fr.typ, fr.data), b[:n]) {
					t.Fatalf("reply % X does not re-encode", b[:n])
				}
				if dec.cmd && !bytes.Equal(encodeCommand(fr.typ, fr.addr, fr.data)[:n-2], b[:n-2]) {
					t.Fatalf("command % X does not re-encode", b[:n])
				}
			case errors.Is(err, errShortFrame):
				// more bytes could complete it: a longer input must not be short forever
				if len(b) >= 6+256+2 {
					t.Fatalf("%d bytes still short", len(b))
				}
			case errors.Is(err, errBadFrame):
				if n < 1 || n > len(b) {
					t.Fatalf("drop %d of %d bytes", n, len(b))
				}
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		// The stream splitter never loses sync for good: a valid reply after
		// any garbage is still found.
		l := &lines{g: &GM65{acks: make(chan frame, 1)}, sink: sink{clock: nowZero, emit: func(Scan) {}}}
		rest := l.parse(append(append([]byte{'\r'}, b...), append([]byte{'\r'}, hexfixture.Read(t, "gm65_write_reply.hex")...)...))
		rest = l.idle(rest)
		select {
		case <-l.g.acks:
		default:
			if !bytes.Contains(b, []byte{0x02, 0x00}) {
				t.Fatalf("reply after % X lost", b)
			}
		}
		if len(rest) != 0 {
			t.Fatalf("idle left %d bytes", len(rest))
		}
	})
}
