package pn532

import (
	"bytes"
	"errors"
	"testing"

	"github.com/microretail/kioskd/internal/hexfixture"
)

func TestEncodeFrameGolden(t *testing.T) {
	tests := []struct {
		file string
		tfi  byte
		data []byte
	}{
		{"get_firmware_version.hex", TFIHost, []byte{0x02}},
		{"firmware_response.hex", TFIChip, []byte{0x03, 0x32, 0x01, 0x06, 0x07}},
		{"sam_configuration.hex", TFIHost, []byte{0x14, samNormal, samTimeout, samUseIRQ}},
		{"rf_configuration.hex", TFIHost, []byte{0x32, cfgMaxRetries, 0xFF, 0x01, byte(DefaultOpts.Retries)}},
		{"in_list_passive_target.hex", TFIHost, []byte{0x4A, maxTg, brTy106A}},
		{"in_data_exchange_read.hex", TFIHost, []byte{0x40, 0x01, ntagRead, 0x04}},
		{"in_release_all.hex", TFIHost, []byte{0x52, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			want := hexfixture.Read(t, tt.file)
			got, err := EncodeFrame(tt.tfi, tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("EncodeFrame = % X\nfixture     % X", got, want)
			}
			f, n, err := DecodeFrame(want)
			if err != nil || n != len(want) || f.Kind != FrameInfo || f.TFI != tt.tfi || !bytes.Equal(f.Data, tt.data) {
				t.Fatalf("DecodeFrame = %+v, %d, %v", f, n, err)
			}
		})
	}
}

func TestFixedFramesGolden(t *testing.T) {
	tests := []struct {
		file string
		kind FrameKind
		ours []byte
	}{
		{"ack.hex", FrameAck, ackFrame},
		{"nack.hex", FrameNack, nackFrame},
		{"syntax_error.hex", FrameError, errorFrame},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			want := hexfixture.Read(t, tt.file)
			if !bytes.Equal(tt.ours, want) {
				t.Fatalf("driver's %s frame % X, fixture % X", tt.kind, tt.ours, want)
			}
			f, n, err := DecodeFrame(want)
			if err != nil || n != len(want) || f.Kind != tt.kind {
				t.Fatalf("DecodeFrame = %+v, %d, %v", f, n, err)
			}
		})
	}
}

func TestDecodeFrame(t *testing.T) {
	fw := []byte{0x00, 0x00, 0xFF, 0x06, 0xFA, 0xD5, 0x03, 0x32, 0x01, 0x06, 0x07, 0xE8, 0x00}
	ext, err := appendFrame(nil, TFIChip, []byte{0x41, 0x00, 0xAA}, true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []byte
		kind    FrameKind
		data    []byte
		n       int
		wantErr error
	}{
		{"info", fw, FrameInfo, fw[6:11], len(fw), nil},
		{"garbage before", append([]byte{0xAA, 0x00, 0xFF, 0x13}, fw...), FrameInfo, fw[6:11], 4 + len(fw), nil},
		{"long preamble", append([]byte{0x00, 0x00}, fw...), FrameInfo, fw[6:11], 2 + len(fw), nil},
		{"bytes after", append(bytes.Clone(fw), 0x00, 0x00, 0x00), FrameInfo, fw[6:11], len(fw), nil},
		{"ACK then info", append(bytes.Clone(ackFrame), fw...), FrameAck, nil, 6, nil},
		{"extended", ext, FrameInfo, []byte{0x41, 0x00, 0xAA}, len(ext), nil},
		{"empty", nil, 0, nil, 0, ErrShortFrame},
		{"no start code", []byte{0x12, 0x34, 0x00, 0x00}, 0, nil, 2, ErrShortFrame},
		{"start code only", []byte{0x55, 0x00, 0x00, 0xFF}, 0, nil, 1, ErrShortFrame},
		{"no data yet", fw[:8], 0, nil, 0, ErrShortFrame},
		{"no postamble", fw[:12], 0, nil, 0, ErrShortFrame},
		{"ACK without postamble", ackFrame[:5], 0, nil, 0, ErrShortFrame},
		{"extended length cut", ext[:6], 0, nil, 0, ErrShortFrame},
		{"bad LCS", []byte{0x00, 0x00, 0xFF, 0x06, 0xFB, 0xD5, 0x03}, 0, nil, 1, ErrChecksum},
		{"bad DCS", append(append([]byte(nil), fw[:11]...), 0xE9, 0x00), 0, nil, 1, ErrChecksum},
		{"bad extended LCS", []byte{0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x00, 0x04, 0xFB}, 0, nil, 1, ErrChecksum},
		{"bad postamble", append(append([]byte(nil), fw[:12]...), 0x55), 0, nil, 1, ErrFrame},
		{"bad ACK postamble", []byte{0x00, 0x00, 0xFF, 0x00, 0xFF, 0x01}, 0, nil, 1, ErrFrame},
		{"zero length", []byte{0x00, 0x00, 0xFF, 0x00, 0x00, 0x00, 0x00}, 0, nil, 1, ErrFrame},
		{"unknown TFI", []byte{0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD6, 0x02, 0x28, 0x00}, 0, nil, 1, ErrFrame},
		{"no command code", []byte{0x00, 0x00, 0xFF, 0x01, 0xFF, 0xD5, 0x2B, 0x00}, 0, nil, 1, ErrFrame},
		{"extended past 265", []byte{0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x01, 0x0A, 0xF5}, 0, nil, 1, ErrFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := DecodeFrame(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || n != tt.n {
					t.Fatalf("DecodeFrame = %d, %v; want %d, %v", n, err, tt.n, tt.wantErr)
				}
				return
			}
			if err != nil || n != tt.n || f.Kind != tt.kind || !bytes.Equal(f.Data, tt.data) {
				t.Fatalf("DecodeFrame = %+v, %d, %v; want %s % X, %d", f, n, err, tt.kind, tt.data, tt.n)
			}
		})
	}
}

func TestEncodeFrame(t *testing.T) {
	long := bytes.Repeat([]byte{0x5A}, 300)
	tests := []struct {
		name     string
		tfi      byte
		data     []byte
		size     int
		extended bool
		wantErr  bool
	}{
		{"normal, 255 with TFI", TFIHost, long[:254], 254 + 1 + frameOverhead, false, false},
		{"extended, 256 with TFI", TFIHost, long[:255], 255 + 1 + frameOverhead + 3, true, false},
		{"extended, firmware limit", TFIChip, long[:MaxFrameLen-1], MaxFrameLen + frameOverhead + 3, true, false},
		{"past the firmware limit", TFIHost, long[:MaxFrameLen], 0, false, true},
		{"no command code", TFIHost, nil, 0, false, true},
		{"error TFI", tfiError, []byte{0x01}, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := EncodeFrame(tt.tfi, tt.data)
			if tt.wantErr {
				if !errors.Is(err, ErrFrame) {
					t.Fatalf("EncodeFrame = % X, %v; want ErrFrame", b, err)
				}
				return
			}
			if err != nil || len(b) != tt.size {
				t.Fatalf("EncodeFrame: %d bytes, %v; want %d", len(b), err, tt.size)
			}
			f, n, err := DecodeFrame(b)
			if err != nil || n != len(b) || f.Extended != tt.extended || !bytes.Equal(f.Data, tt.data) {
				t.Fatalf("round trip: %+v, %d, %v", f.Extended, n, err)
			}
		})
	}
}

// FuzzDecodeFrame checks that DecodeFrame never panics, reports a
// consumption within its input and one of its three errors, and that a
// frame it decodes is exactly what encoding it again gives.
func FuzzDecodeFrame(f *testing.F) {
	for _, name := range []string{
		"get_firmware_version.hex", "firmware_response.hex", "sam_configuration.hex",
		"rf_configuration.hex", "in_list_passive_target.hex", "in_data_exchange_read.hex",
		"in_release_all.hex", "ack.hex", "nack.hex", "syntax_error.hex",
	} {
		b := hexfixture.Read(f, name)
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(append([]byte{0xFF, 0x00}, b...))
	}
	ext, _ := appendFrame(nil, TFIHost, []byte{0x40, 0x01, 0x30, 0x00}, true)
	f.Add(ext)
	f.Add([]byte{0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := DecodeFrame(b)
		if n < 0 || n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		if err != nil {
			if !errors.Is(err, ErrShortFrame) && !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrFrame) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		var want []byte
		switch fr.Kind {
		case FrameInfo:
			if want, err = appendFrame(nil, fr.TFI, fr.Data, fr.Extended); err != nil {
				t.Fatalf("decoded %+v does not encode: %v", fr, err)
			}
			if !fr.Extended {
				if std, _ := EncodeFrame(fr.TFI, fr.Data); !bytes.Equal(std, want) {
					t.Fatalf("EncodeFrame = % X, want % X", std, want)
				}
			}
		case FrameAck:
			want = ackFrame
		case FrameNack:
			want = nackFrame
		case FrameError:
			want = errorFrame
		default:
			t.Fatalf("kind %v", fr.Kind)
		}
		if !bytes.HasSuffix(b[:n], want) {
			t.Fatalf("decoded %s from % X, re-encodes to % X", fr.Kind, b[:n], want)
		}
	})
}
