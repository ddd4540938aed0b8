package escpos

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// printed runs b through a fresh emulator and returns its receipts.
func printed(t *testing.T, p Paper, b []byte) []Receipt {
	t.Helper()
	e := NewEmulator(p)
	if _, err := e.Write(b); err != nil {
		t.Fatal(err)
	}
	if e.Held() != 0 || e.Printed() != len(b) {
		t.Fatalf("held %d, printed %d of %d bytes", e.Held(), e.Printed(), len(b))
	}
	return e.Receipts()
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		paper Paper
		build func(e *Encoder)
		want  []Receipt
	}{
		{"sample receipt", Paper58, func(e *Encoder) { *e = *sampleReceipt() },
			[]Receipt{{Job: "sale-000123", Text: sampleText, Cut: true, Drawer: 1}}},
		{"text in progress", Paper58, func(e *Encoder) { e.Line("one"); e.Text("two") },
			[]Receipt{{Text: "one"}}},
		{"two receipts", Paper58, func(e *Encoder) {
			e.Line("first")
			e.Cut(false)
			e.Line("second")
			e.Cut(true)
		}, []Receipt{{Text: "first", Cut: true}, {Text: "second", Cut: true}}},
		{"empty cut", Paper58, func(e *Encoder) { e.Cut(true); e.Cut(true) }, nil},
		{"wrap at 32 columns", Paper58, func(e *Encoder) { e.Line(strings.Repeat("x", 32) + "yz") },
			[]Receipt{{Text: strings.Repeat("x", 32) + "\nyz"}}},
		{"wrap at 24 columns doubled", Paper80, func(e *Encoder) { e.Size(2, 1); e.Line(strings.Repeat("x", 25)) },
			[]Receipt{{Text: strings.Repeat("x", 24) + "\nx"}}},
		{"exact line", Paper58, func(e *Encoder) { e.Line(strings.Repeat("x", 32)); e.Line("y") },
			[]Receipt{{Text: strings.Repeat("x", 32) + "\ny"}}},
		{"feed", Paper58, func(e *Encoder) { e.Text("a"); e.Feed(3); e.Line("b"); e.Feed(0) },
			[]Receipt{{Text: "a\n\n\nb"}}},
		{"init drops text", Paper58, func(e *Encoder) { e.Text("lost"); e.Init(); e.Line("kept") },
			[]Receipt{{Text: "kept"}}},
		{"PC437", Paper58, func(e *Encoder) { e.Line("Café €5 Ω") },
			[]Receipt{{Text: "Café ?5 Ω"}}},
		{"PC850", Paper58, func(e *Encoder) { e.SetCodePage(PC850); e.Line("Ærø ı €") },
			[]Receipt{{Text: "Ærø ı ?"}}},
		{"PC858", Paper58, func(e *Encoder) { e.SetCodePage(PC858); e.Line("Ærø €") },
			[]Receipt{{Text: "Ærø €"}}},
		{"WPC1252", Paper58, func(e *Encoder) { e.SetCodePage(WPC1252); e.Line("“Œuvre” – 5€") },
			[]Receipt{{Text: "“Œuvre” – 5€"}}},
		{"WPC1256 Urdu", Paper58, func(e *Encoder) { e.SetCodePage(WPC1256); e.Line("شکریہ Rs 50 é") },
			[]Receipt{{Text: "????? Rs 50 é"}}},
		{"init resets page", Paper58, func(e *Encoder) { e.SetCodePage(PC858); e.Init(); e.Line("€é") },
			[]Receipt{{Text: "?é"}}},
		{"EAN-13 with check digit", Paper58, func(e *Encoder) { e.EAN13("400638133393") },
			[]Receipt{{Text: "[barcode EAN13 4006381333931]"}}},
		{"EAN-8", Paper58, func(e *Encoder) { e.EAN8("96385074") },
			[]Receipt{{Text: "[barcode EAN8 96385074]"}}},
		{"CODE128 B", Paper58, func(e *Encoder) { e.Code128("Sale{42}") },
			[]Receipt{{Text: "[barcode CODE128 Sale{42}]"}}},
		{"CODE128 C", Paper58, func(e *Encoder) { e.Code128("20260401") },
			[]Receipt{{Text: "[barcode CODE128 20260401]"}}},
		{"QR", Paper58, func(e *Encoder) {
			e.Text("pay")
			e.QRCode("S-1", QR{Module: 4, ECC: ECCHigh})
			e.QRCode("S-2", QR{})
		}, []Receipt{{Job: "S-1", Text: "pay\n[qr S-1]\n[qr S-2]"}}},
		{"image bands", Paper58, func(e *Encoder) { e.Image(checkered(384, 300)); e.Image(checkered(8, 2)) },
			[]Receipt{{Text: "[image 384x300]\n[image 8x2]"}}},
		{"image width rounds up", Paper58, func(e *Encoder) { e.Image(checkered(10, 3)) },
			[]Receipt{{Text: "[image 16x3]"}}},
		{"drawer", Paper58, func(e *Encoder) { e.Pulse(5, 100, 100); e.PulseNow(2, 100) },
			[]Receipt{{Text: "[drawer 5]\n[drawer 2]", Drawer: 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEncoder()
			e.SetPaper(tt.paper)
			tt.build(e)
			if e.Err() != nil {
				t.Fatal(e.Err())
			}
			got := printed(t, tt.paper, e.Bytes())
			if len(got) != len(tt.want) {
				t.Fatalf("got %d receipts %+v, want %+v", len(got), got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("receipt %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestEmulatorStream feeds streams the encoder does not write.
func TestEmulatorStream(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"unknown GS", "a\n\x1d\x99b\n", "a\n[unknown 1d 99]\nb"},
		{"unknown DLE", "\x10\x09c\n", "[unknown 10 09]\nc"},
		{"known command skipped", "\x1bW\x00\x00\x00\x00\x80\x01\x00\x01x\n", "x"},
		{"ESC * skipped", "\x1b*\x00\x03\x00\x0a\x0a\x0ax\n", "x"},
		{"GS ( L skipped", "\x1d(L\x02\x00\x30\x45x\n", "x"},
		{"GS V out of range", "\x1dV\x07x\n", "[unknown 1d 56]\nx"},
		{"barcode form 1", "\x1dk\x02400638133393\x00", "[barcode EAN13 4006381333931]"},
		{"barcode bad EAN", "\x1dkC\x0d4006381333932", "[barcode EAN13 invalid]"},
		{"barcode bad CODE128", "\x1dkI\x03ABC", "[barcode CODE128 invalid]"},
		{"barcode CODE39", "\x1dkE\x03ABC", "[barcode CODE39 ABC]"},
		{"code page by number", "\x1bt\x13\xd5\n\x1bt\x63\xd5\n", "€\n€"},
		{"tab", "a\tb\n", "a       b"},
		{"CR ignored", "a\rb\n", "ab"},
		{"QR without data", "\x1d(k\x03\x001Q0", ""},
		{"real-time in the buffer", "a\x10\x04\x01b\n", "ab"},
		{"ESC p ASCII pin", "\x1bp1\x10\x10", "[drawer 5]"},
		{"pulse mid-line", "abc\x10\x14\x01\x00\x01def\n", "[drawer 2]\nabcdef"},
		{"ESC p mid-line", "ab\x1bp\x00\x10\x20c\n", "[drawer 2]\nabc"},
		{"images apart", "\x1dv0\x00\x01\x00\x02\x00\xff\xff\x1bJ\x01\x1dv0\x00\x01\x00\x03\x00\xff\xff\xff", "[image 8x2]\n[image 8x3]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := printed(t, Paper58, []byte(tt.in))
			text := ""
			if len(got) > 0 {
				text = got[0].Text
			}
			if text != tt.want {
				t.Errorf("text %q, want %q", text, tt.want)
			}
		})
	}
}

// TestEmulatorByteByByte prints the sample receipt fed a byte at a time.
func TestEmulatorByteByByte(t *testing.T) {
	e := NewEmulator(Paper58)
	b := sampleReceipt().Bytes()
	for i := range b {
		if _, err := e.Write(b[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if r := e.Receipts(); len(r) != 1 || r[0].Text != sampleText || r[0].Job != "sale-000123" {
		t.Errorf("receipts %+v", r)
	}
}

// TestEmulatorLargeCommand prints an image larger than the receive buffer
// while offline part of the way.
func TestEmulatorLargeCommand(t *testing.T) {
	e := NewEmulator(Paper58)
	enc := NewEncoder()
	enc.Image(checkered(384, 255)) // 12 248 bytes in one command
	enc.Line("after")
	b := enc.Bytes()
	if _, err := e.Write(b[:5000]); err != nil {
		t.Fatal(err)
	}
	e.SetCover(true)
	if _, err := e.Write(b[5000:9000]); err != nil {
		t.Fatal(err)
	}
	n, err := e.Write(b[9000:])
	if !errors.Is(err, ErrOverflow) || n != RxBuffer-4000 {
		t.Fatalf("writing past a full buffer: %d, %v; want %d, ErrOverflow", n, err, RxBuffer-4000)
	}
	if e.Held() != RxBuffer {
		t.Errorf("held %d, want %d", e.Held(), RxBuffer)
	}
	e.SetCover(false)
	if e.Held() != 0 || e.Printed() != 5000+RxBuffer {
		t.Errorf("held %d, printed %d", e.Held(), e.Printed())
	}
	if _, err := e.Write(b[9000+n:]); err != nil {
		t.Fatal(err)
	}
	if r := e.Receipts(); len(r) != 1 || r[0].Text != "[image 384x255]\nafter" {
		t.Errorf("receipts %+v", r)
	}
}

func readAll(t *testing.T, e *Emulator) []byte {
	t.Helper()
	e.SetReadTimeout(0)
	var out []byte
	buf := make([]byte, 64)
	for {
		n, err := e.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			return out
		}
	}
}

func TestEmulatorRealTime(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *Emulator)
		want  []byte // replies to DLE EOT 1, 2, 3, 4
	}{
		{"online", func(e *Emulator) {}, []byte{0x12, 0x12, 0x12, 0x12}},
		{"near end", func(e *Emulator) { e.SetPaper(PaperNearEnd) }, []byte{0x12, 0x12, 0x12, 0x1e}},
		{"paper out", func(e *Emulator) { e.SetPaper(PaperOut) }, []byte{0x1a, 0x32, 0x12, 0x7e}},
		{"cover open", func(e *Emulator) { e.SetCover(true) }, []byte{0x1a, 0x16, 0x12, 0x12}},
		{"cutter jam", func(e *Emulator) { e.SetCutterJam(true) }, []byte{0x1a, 0x52, 0x1a, 0x12}},
		{"drawer high", func(e *Emulator) { e.SetDrawerHigh(true) }, []byte{0x16, 0x12, 0x12, 0x12}},
		{"bad paper level ignored", func(e *Emulator) { e.SetPaper("low") }, []byte{0x12, 0x12, 0x12, 0x12}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEmulator(Paper58)
			tt.setup(e)
			// Split across writes, and behind text the offline printer holds.
			e.Write([]byte("held text\x10"))
			e.Write([]byte("\x04\x01\x10\x04"))
			e.Write([]byte("\x02\x10\x04\x03\x10\x10\x04\x04"))
			if got := readAll(t, e); !bytes.Equal(got, tt.want) {
				t.Errorf("replies % X, want % X", got, tt.want)
			}
		})
	}
}

func TestEmulatorPulseNowOffline(t *testing.T) {
	e := NewEmulator(Paper58)
	e.SetPaper(PaperOut)
	enc := NewEncoder()
	enc.Line("sale 7")
	enc.Pulse(2, 100, 100)
	enc.Cut(true)
	enc.PulseNow(5, 500)
	e.Write(enc.Bytes())
	if r := e.Receipts(); len(r) != 1 || r[0].Text != "[drawer 5]" || r[0].Drawer != 1 {
		t.Fatalf("offline: receipts %+v, want only the real-time pulse", r)
	}
	e.SetPaper(PaperOK)
	want := []Receipt{{Text: "[drawer 5]\nsale 7\n[drawer 2]", Cut: true, Drawer: 2}}
	if r := e.Receipts(); len(r) != 1 || r[0] != want[0] {
		t.Errorf("back online: receipts %+v, want %+v", r, want)
	}
}

func TestEmulatorASB(t *testing.T) {
	e := NewEmulator(Paper58)
	e.SetPaper(PaperNearEnd)
	e.Write([]byte{0x1d, 'a', asbOnline | asbPaper})
	steps := []struct {
		name string
		do   func()
		want []byte
	}{
		{"enabled: sends at once", func() {}, []byte{0x10, 0, 0x03, 0}},
		{"drawer not enabled", func() { e.SetDrawerHigh(true) }, nil},
		{"paper out", func() { e.SetPaper(PaperOut) }, []byte{0x1c, 0, 0x0f, 0}},
		{"same again", func() { e.SetPaper(PaperOut) }, nil},
		{"cover open", func() { e.SetCover(true) }, []byte{0x3c, 0, 0x0f, 0}},
		{"jam not enabled, offline already", func() { e.SetCutterJam(true) }, nil},
		{"all clear but the jam", func() { e.SetCover(false); e.SetPaper(PaperOK) }, []byte{0x1c, 0x08, 0x0f, 0, 0x1c, 0x08, 0, 0}},
		{"back online", func() { e.SetCutterJam(false) }, []byte{0x14, 0, 0, 0}},
		{"disabled", func() { e.Write([]byte{0x1d, 'a', 0}); e.SetCover(true) }, nil},
	}
	for _, s := range steps {
		s.do()
		got := readAll(t, e)
		if !bytes.Equal(got, s.want) {
			t.Errorf("%s: sent % X, want % X", s.name, got, s.want)
		}
		var sr StatusReader
		sr.Feed(got)
		for {
			r, ok := sr.Next()
			if !ok {
				break
			}
			if _, err := DecodeASB(r.Data); r.Kind != AutoStatus || err != nil {
				t.Errorf("%s: %v %v", s.name, r, err)
			}
		}
	}
}

func TestEmulatorPower(t *testing.T) {
	e := NewEmulator(Paper58)
	e.Write([]byte("\x1bt\x13a"))
	e.SetPower(false)
	e.Write([]byte("lost\x10\x04\x01"))
	if got := readAll(t, e); len(got) != 0 {
		t.Errorf("powered off, replied % X", got)
	}
	e.SetPower(true)
	e.Write([]byte("\xd5\n\x10\x04\x01"))
	if got := readAll(t, e); !bytes.Equal(got, []byte{0x12}) {
		t.Errorf("powered on, replied % X", got)
	}
	if r := e.Receipts(); len(r) != 1 || r[0].Text != "╒" { // PC437 again: the power-on page
		t.Errorf("receipts %+v", r)
	}
	e.Clear()
	if r := e.Receipts(); len(r) != 0 {
		t.Errorf("after Clear: %+v", r)
	}
}

func TestEmulatorReadTimeout(t *testing.T) {
	e := NewEmulator(Paper58)
	e.SetReadTimeout(20 * time.Millisecond)
	start := time.Now()
	n, err := e.Read(make([]byte, 4))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if d := time.Since(start); d < 20*time.Millisecond || d > 5*time.Second {
		t.Errorf("Read took %v", d)
	}
	e.SetReadTimeout(-1)
	done := make(chan []byte)
	go func() {
		b := make([]byte, 4)
		n, _ := e.Read(b)
		done <- b[:n]
	}()
	e.Write([]byte{dle, eot, 4})
	if got := <-done; !bytes.Equal(got, []byte{0x12}) {
		t.Errorf("blocked Read got % X", got)
	}
}

// connPort is a Port on a net.Conn.
type connPort struct{ net.Conn }

func (c connPort) SetReadTimeout(d time.Duration) error {
	return c.SetReadDeadline(time.Now().Add(d))
}

func TestServe(t *testing.T) {
	host, printer := net.Pipe()
	defer host.Close()
	e := NewEmulator(Paper58)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, printer) }()

	d, err := New(connPort{host}, &Opts{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.SetPaper(PaperNearEnd)
	enc := NewEncoder()
	enc.Image(checkered(384, 255)) // larger than the receive buffer: flow control
	enc.Line("over a pipe")
	enc.Cut(true)
	if err := d.Print(enc.Bytes()); err != nil {
		t.Fatal(err)
	}
	st, err := d.Status()
	if err != nil || !st.PaperNearEnd {
		t.Errorf("status %v, %v", st, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if r := e.Receipts(); len(r) != 1 || r[0].Text != "[image 384x255]\nover a pipe" || !r[0].Cut {
		t.Errorf("receipts %+v", r)
	}
}

func TestServeNeedsInterruptibleStream(t *testing.T) {
	var rw struct{ bytes.Buffer }
	if err := NewEmulator(Paper58).Serve(context.Background(), &rw); err == nil {
		t.Error("Serve on a plain buffer: no error")
	}
}
