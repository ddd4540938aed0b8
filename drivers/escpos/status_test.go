package escpos

import (
	"errors"
	"slices"
	"testing"
)

func TestDecodeRealTime(t *testing.T) {
	const ok = 0x12 // a reply with no flag set
	cases := []struct {
		name string
		r    [4]byte // replies to DLE EOT 1, 2, 3, 4
		want Status
	}{
		{"all clear", [4]byte{ok, ok, ok, ok}, Status{}},
		{"1 bit 2 drawer", [4]byte{ok | 0x04, ok, ok, ok}, Status{DrawerHigh: true}},
		{"1 bit 3 offline", [4]byte{ok | 0x08, ok, ok, ok}, Status{Offline: true}},
		{"1 bits 5, 6 not decoded", [4]byte{ok | 0x60, ok, ok, ok}, Status{}},
		{"2 bit 2 cover", [4]byte{ok, ok | 0x04, ok, ok}, Status{CoverOpen: true}},
		{"2 bit 3 feed button not decoded", [4]byte{ok, ok | 0x08, ok, ok}, Status{}},
		{"2 bit 5 paper-end stop", [4]byte{ok, ok | 0x20, ok, ok}, Status{PaperOut: true}},
		{"2 bit 6 error", [4]byte{ok, ok | 0x40, ok, ok}, Status{Error: true, Recoverable: true}},
		{"3 bit 2 mechanical", [4]byte{ok, ok, ok | 0x04, ok}, Status{Error: true, Recoverable: true}},
		{"3 bit 3 autocutter", [4]byte{ok, ok | 0x40, ok | 0x08, ok}, Status{Error: true, Recoverable: true, CutterError: true}},
		{"3 bit 5 unrecoverable", [4]byte{ok, ok | 0x40, ok | 0x20, ok}, Status{Error: true}},
		{"3 bit 6 auto-recoverable", [4]byte{ok, ok | 0x40, ok | 0x40, ok}, Status{Error: true, Recoverable: true}},
		{"4 bit 2 near end", [4]byte{ok, ok, ok, ok | 0x04}, Status{PaperNearEnd: true}},
		{"4 bit 3 near end", [4]byte{ok, ok, ok, ok | 0x08}, Status{PaperNearEnd: true}},
		{"4 bit 5 paper end", [4]byte{ok, ok, ok, ok | 0x20}, Status{PaperOut: true}},
		{"4 bit 6 paper end", [4]byte{ok, ok, ok, ok | 0x40}, Status{PaperOut: true}},
		{"paper out, as a printer sends it", [4]byte{0x1a, 0x32, ok, 0x7e}, Status{Offline: true, PaperOut: true, PaperNearEnd: true}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRealTime(tt.r[0], tt.r[1], tt.r[2], tt.r[3])
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestDecodeRealTimeFixedBits(t *testing.T) {
	for i := range 4 {
		for _, bad := range []byte{0x13, 0x10, 0x02, 0x92, 0x00, 0xff, xon, xoff} {
			r := [4]byte{0x12, 0x12, 0x12, 0x12}
			r[i] = bad
			if _, err := DecodeRealTime(r[0], r[1], r[2], r[3]); !errors.Is(err, ErrBadReply) {
				t.Errorf("reply %d = 0x%02x: err %v, want ErrBadReply", i+1, bad, err)
			}
		}
	}
}

func TestDecodeASB(t *testing.T) {
	tests := []struct {
		name string
		p    [4]byte
		want Status
	}{
		{"all clear", [4]byte{0x10, 0, 0, 0}, Status{}},
		{"1 bit 2 drawer", [4]byte{0x14, 0, 0, 0}, Status{DrawerHigh: true}},
		{"1 bit 3 offline", [4]byte{0x18, 0, 0, 0}, Status{Offline: true}},
		{"1 bit 5 cover", [4]byte{0x30, 0, 0, 0}, Status{CoverOpen: true}},
		{"1 bit 6 feed button not decoded", [4]byte{0x50, 0, 0, 0}, Status{}},
		{"2 bit 2 mechanical", [4]byte{0x10, 0x04, 0, 0}, Status{Error: true, Recoverable: true}},
		{"2 bit 3 autocutter", [4]byte{0x10, 0x08, 0, 0}, Status{Error: true, Recoverable: true, CutterError: true}},
		{"2 bit 5 unrecoverable", [4]byte{0x10, 0x20, 0, 0}, Status{Error: true}},
		{"2 bit 6 auto-recoverable", [4]byte{0x10, 0x40, 0, 0}, Status{Error: true, Recoverable: true}},
		{"3 bits 0, 1 near end", [4]byte{0x10, 0, 0x03, 0}, Status{PaperNearEnd: true}},
		{"3 bits 2, 3 paper end", [4]byte{0x10, 0, 0x0c, 0}, Status{PaperOut: true}},
		{"4 reserved bits", [4]byte{0x10, 0, 0, 0x6f}, Status{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeASB(tt.p)
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	for _, bad := range [][4]byte{
		{0x12, 0, 0, 0}, {0x00, 0, 0, 0}, {0x11, 0, 0, 0}, {0x90, 0, 0, 0},
		{0x10, 0x10, 0, 0}, {0x10, 0, 0x80, 0}, {0x10, 0, 0, 0x10}, {0x10, 0, 0, xoff},
	} {
		if _, err := DecodeASB(bad); !errors.Is(err, ErrBadReply) {
			t.Errorf("% X: err %v, want ErrBadReply", bad, err)
		}
	}
}

func TestStatusErr(t *testing.T) {
	tests := []struct {
		s      Status
		is     []error
		isNot  []error
		string string
	}{
		{Status{}, nil, []error{ErrOffline}, "ok"},
		{Status{PaperNearEnd: true}, nil, nil, "paper near end"},
		{Status{Offline: true}, []error{ErrOffline}, nil, "offline"},
		{Status{Offline: true, PaperOut: true, PaperNearEnd: true}, []error{ErrPaperOut}, []error{ErrOffline, ErrCoverOpen}, "offline, paper out"},
		{Status{Offline: true, CoverOpen: true}, []error{ErrCoverOpen}, []error{ErrPaperOut}, "offline, cover open"},
		{Status{Offline: true, CoverOpen: true, PaperOut: true}, []error{ErrCoverOpen, ErrPaperOut}, []error{ErrPrinter}, "offline, cover open, paper out"},
		{Status{Offline: true, Error: true, Recoverable: true, CutterError: true}, []error{ErrPrinter}, nil, "offline, error (recoverable, autocutter)"},
		{Status{Error: true, DrawerHigh: true}, []error{ErrPrinter}, nil, "error (unrecoverable), drawer pin 3 high"},
	}
	for _, tt := range tests {
		t.Run(tt.string, func(t *testing.T) {
			err := tt.s.Err()
			if (err == nil) != (len(tt.is) == 0) {
				t.Errorf("Err() = %v", err)
			}
			for _, want := range tt.is {
				if !errors.Is(err, want) {
					t.Errorf("Err() = %v, want it to be %v", err, want)
				}
			}
			for _, not := range tt.isNot {
				if errors.Is(err, not) {
					t.Errorf("Err() = %v, is %v", err, not)
				}
			}
			if s := tt.s.String(); s != tt.string {
				t.Errorf("String() = %q", s)
			}
		})
	}
}

func TestStatusReader(t *testing.T) {
	rt := func(b byte) Reply { return Reply{Kind: RealTime, Data: [4]byte{b}} }
	asb := func(a, b, c, d byte) Reply { return Reply{Kind: AutoStatus, Data: [4]byte{a, b, c, d}} }
	junk := func(b byte) Reply { return Reply{Kind: Garbage, Data: [4]byte{b}} }
	tests := []struct {
		name string
		in   []byte
		want []Reply
	}{
		{"real-time replies", []byte{0x12, 0x1a, 0x7e}, []Reply{rt(0x12), rt(0x1a), rt(0x7e)}},
		{"ASB packet", []byte{0x18, 0x08, 0x0f, 0x00}, []Reply{asb(0x18, 0x08, 0x0f, 0)}},
		{"XON and XOFF dropped", []byte{xon, 0x12, xoff}, []Reply{rt(0x12)}},
		{"XOFF inside a packet", []byte{0x10, xoff, 0x00, 0x03, xon, 0x00}, []Reply{asb(0x10, 0, 0x03, 0)}},
		{"packet then reply", []byte{0x10, 0, 0, 0, 0x16}, []Reply{asb(0x10, 0, 0, 0), rt(0x16)}},
		{"reply breaks a packet", []byte{0x10, 0x00, 0x12}, []Reply{junk(0x10), junk(0x00), rt(0x12)}},
		{"packet breaks a packet", []byte{0x10, 0x00, 0x14, 0, 0, 0}, []Reply{junk(0x10), junk(0x00), asb(0x14, 0, 0, 0)}},
		{"garbage", []byte{0x00, 0xff, 0x80, 0x01, 0x12}, []Reply{junk(0x00), junk(0xff), junk(0x80), junk(0x01), rt(0x12)}},
		{"unfinished packet waits", []byte{0x10, 0x00}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []int{0, 1, len(tt.in) / 2} {
				var r StatusReader
				r.Feed(tt.in[:split])
				got := drainReplies(&r)
				r.Feed(tt.in[split:])
				got = append(got, drainReplies(&r)...)
				if !slices.Equal(got, tt.want) {
					t.Errorf("split at %d: got %v, want %v", split, got, tt.want)
				}
			}
		})
	}
	var r StatusReader
	r.Feed([]byte{0x10, 0x00, 0x12})
	r.Reset()
	r.Feed([]byte{0x00, 0x00, 0x00})
	if got := drainReplies(&r); !slices.Equal(got, []Reply{junk(0), junk(0), junk(0)}) {
		t.Errorf("after Reset: %v", got)
	}
}

func drainReplies(r *StatusReader) []Reply {
	var out []Reply
	for {
		rep, ok := r.Next()
		if !ok {
			return out
		}
		out = append(out, rep)
	}
}
