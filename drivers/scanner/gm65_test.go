package scanner

import (
	"bytes"
	"testing"
	"time"

	"github.com/microretail/kioskd/internal/hexfixture"
	"github.com/microretail/kioskd/internal/testclock"
)

// wire is the emulator's serial line in memory: what the test sends and
// what the module answered.
type wire struct{ out bytes.Buffer }

func (w *wire) Read([]byte) (int, error)    { return 0, nil }
func (w *wire) Write(b []byte) (int, error) { return w.out.Write(b) }

func TestGM65Emulator(t *testing.T) {
	write := func(addr uint16, v byte) []byte { return encodeCommand(typeWrite, addr, []byte{v}) }
	read := func(addr uint16, n byte) []byte { return encodeCommand(typeRead, addr, []byte{n}) }
	ok := hexfixture.Read(t, "gm65_write_reply.hex")
	type step struct {
		send    []byte        // bytes from the host
		after   time.Duration // clock advance after sending
		present string        // then show this code, if set
		want    []byte        // everything the module sent
	}
	tests := []struct {
		name  string
		steps []step
		zones map[uint8]byte // afterwards
	}{
		{"manual §8.2 read", []step{{send: hexfixture.Read(t, "gm65_read_cmd.hex"), want: hexfixture.Read(t, "gm65_read_reply.hex")}}, nil},
		{"manual §8.3 write", []step{{send: hexfixture.Read(t, "gm65_write_cmd.hex"), want: ok}}, map[uint8]byte{0x0A: 0x3E}},
		{"bad CRC: no reply, no change", []step{{send: write(0x0A, 0x11)[:7], want: nil}, {send: []byte{0x11, 0x22}, want: nil}}, map[uint8]byte{0x0A: 0x3E}},
		{"AB CD skips the CRC", []step{{send: append(write(0x0A, 0x42)[:7], 0xAB, 0xCD), want: ok}}, map[uint8]byte{0x0A: 0x42}},
		{"noise and a stray 7E before a command", []step{{send: append([]byte{0x55, 0x7E, 0x7E, 0x01}, write(0x0A, 0x43)...), want: ok}}, map[uint8]byte{0x0A: 0x43}},
		{"incomplete after 400 ms: dropped", []step{
			{send: write(0x0A, 0x44)[:5], after: 401 * time.Millisecond},
			{send: write(0x0A, 0x44)[5:], want: nil},
			{send: write(0x0A, 0x45), want: ok},
		}, map[uint8]byte{0x0A: 0x45}},
		{"slow but within 400 ms", []step{{send: write(0x0A, 0x46)[:5], after: 399 * time.Millisecond}, {send: write(0x0A, 0x46)[5:], want: ok}}, map[uint8]byte{0x0A: 0x46}},
		{"read past zone 0x00FF: no reply", []step{{send: read(0xFF, 2), want: nil}}, nil},
		{"read of two zones", []step{{send: read(0x05, 2), want: encodeReply(typeOK, []byte{0, 50})}}, nil},
		{"unknown type: no reply", []step{{send: encodeCommand(0x0A, 0, []byte{0}), want: nil}}, nil},
		{"manual mode reads nothing", []step{{present: "96385074", want: nil}}, map[uint8]byte{0: 0xD4}},
		{"continuous mode, CR", []step{{send: write(zoneControl, 0xD6), want: ok}, {send: write(zoneTail, tailCR), want: ok}, {present: "96385074", want: []byte("96385074\r")}}, nil},
		{"CRLF", []step{{send: write(zoneControl, 0xD6), want: ok}, {send: write(zoneTail, tailCRLF), want: ok}, {present: "A1", want: []byte("A1\r\n")}}, nil},
		{"TAB", []step{{send: write(zoneControl, 0xD6), want: ok}, {send: write(zoneTail, tailTab), want: ok}, {present: "A1", want: []byte("A1\t")}}, nil},
		{"no tail", []step{{send: write(zoneControl, 0xD6), want: ok}, {present: "A1", want: []byte("A1")}}, nil},
		{"command mode waits for a trigger", []step{{send: write(zoneControl, 0xD5), want: ok}, {present: "A1", want: nil}}, map[uint8]byte{zoneTrigger: 0}},
		{"trigger: reply, then one code", []step{
			{send: write(zoneControl, 0xD5), want: ok},
			{send: hexfixture.Read(t, "gm65_trigger_nocrc.hex"), after: 4 * time.Second, want: ok},
			{present: "A1", want: []byte("A1")},
			{present: "B2", want: nil},
		}, map[uint8]byte{zoneTrigger: 0}},
		{"trigger: the read time runs out", []step{
			{send: write(zoneControl, 0xD5), want: ok},
			{send: write(zoneTrigger, triggerStart), after: 5 * time.Second, want: ok},
			{present: "A1", want: nil},
		}, map[uint8]byte{zoneTrigger: 0}},
		{"trigger: no read time limit", []step{
			{send: write(zoneControl, 0xD5), want: ok},
			{send: write(zoneReadTime, 0), want: ok},
			{send: write(zoneTrigger, triggerStart), after: time.Hour, want: ok},
		}, map[uint8]byte{zoneTrigger: triggerStart}},
		{"trigger outside command mode", []step{{send: write(zoneTrigger, triggerStart), want: ok}}, map[uint8]byte{zoneTrigger: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testclock.New(epoch)
			w := &wire{}
			e := NewGM65Emulator(w, clk.Now)
			for i, s := range tt.steps {
				w.out.Reset()
				if err := e.receive(s.send); err != nil {
					t.Fatal(err)
				}
				clk.Advance(s.after)
				if s.present != "" {
					if _, err := e.Present(s.present); err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(w.out.Bytes(), s.want) {
					t.Fatalf("step %d: module sent % X, want % X", i, w.out.Bytes(), s.want)
				}
			}
			for addr, want := range tt.zones {
				if got := e.Zone(addr); got != want {
					t.Errorf("zone %#04x = %#02x, want %#02x", addr, got, want)
				}
			}
		})
	}
}

func TestGM65EmulatorSave(t *testing.T) {
	w := &wire{}
	e := NewGM65Emulator(w, nil)
	steps := encodeCommand(typeWrite, zoneControl, []byte{0xD6})
	steps = append(steps, hexfixture.Read(t, "gm65_save_cmd.hex")...)
	steps = append(steps, encodeCommand(typeWrite, zoneTail, []byte{tailCR})...)
	if err := e.receive(steps); err != nil {
		t.Fatal(err)
	}
	if want := bytes.Repeat(hexfixture.Read(t, "gm65_write_reply.hex"), 3); !bytes.Equal(w.out.Bytes(), want) {
		t.Fatalf("replies % X", w.out.Bytes())
	}
	if e.Saved(zoneControl) != 0xD6 || e.Saved(zoneTail) != tailNone || e.Zone(zoneTail) != tailCR {
		t.Fatalf("saved %#x %#x, zone %#x", e.Saved(zoneControl), e.Saved(zoneTail), e.Zone(zoneTail))
	}
	e.PowerCycle()
	if e.Zone(zoneControl) != 0xD6 || e.Zone(zoneTail) != tailNone {
		t.Fatalf("after power cycle: %#x %#x", e.Zone(zoneControl), e.Zone(zoneTail))
	}
}
