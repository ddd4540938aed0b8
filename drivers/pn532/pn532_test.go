package pn532

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"
)

// noWait replaces the clock: polls cost no time but still count against
// the budget, so traces do not depend on the machine's speed.
func noWait(context.Context, time.Duration) error { return nil }

func testOpts(edit func(*Opts)) *Opts {
	o := DefaultOpts
	o.wait = noWait
	if edit != nil {
		edit(&o)
	}
	return &o
}

// initOps is the traffic of New with DefaultOpts and no IRQ line.
func initOps() []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: Addr, R: []byte{0x00}}, // wake-up: status byte, nothing pending
		{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00}}, // GetFirmwareVersion
		{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
		{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
		{Addr: Addr, R: []byte{0x01}},                                     // status: response ready
		{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x06, 0xFA, 0xD5, 0x03, 0x32, 0x01, 0x06, 0x07, 0xE8, 0x00}}, // IC 32 (PN532), V1.6, support 07
		{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x05, 0xFB, 0xD4, 0x14, 0x01, 0x14, 0x01, 0x02, 0x00}},             // SAMConfiguration: normal, 1 s, IRQ
		{Addr: Addr, R: []byte{0x01}},                                                                         // status: ACK ready
		{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}},                                     // ACK
		{Addr: Addr, R: []byte{0x01}},                                                                         // status: response ready
		{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD5, 0x15, 0x16, 0x00}},                   // SAMConfiguration done
		{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x06, 0xFA, 0xD4, 0x32, 0x05, 0xFF, 0x01, 0x02, 0xF3, 0x00}}, // RFConfiguration MaxRetries FF 01 02
		{Addr: Addr, R: []byte{0x01}},                                                                         // status: ACK ready
		{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}},                                     // ACK
		{Addr: Addr, R: []byte{0x01}},                                                                         // status: response ready
		{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD5, 0x33, 0xF8, 0x00}},                   // RFConfiguration done
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		addr    uint16
		opts    *Opts
		ops     []i2ctest.IO
		wantErr error
	}{
		{"PN532", Addr, testOpts(nil), initOps(), nil},
		{"not a PN532", Addr, testOpts(nil), []i2ctest.IO{
			{Addr: Addr, R: []byte{0x00}}, // wake-up
			{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00}}, // GetFirmwareVersion
			{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
			{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
			{Addr: Addr, R: []byte{0x01}},                                     // status: response ready
			{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x06, 0xFA, 0xD5, 0x03, 0x33, 0x01, 0x06, 0x07, 0xE7, 0x00}}, // IC 33: a PN533
		}, ErrNotPN532},
		{"wrong address", 0x48, testOpts(nil), nil, nil},
		{"Retries 255", Addr, testOpts(func(o *Opts) { o.Retries = 255 }), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			d, err := New(bus, tt.addr, tt.opts)
			switch {
			case tt.ops == nil && (err == nil || d != nil):
				t.Fatalf("New = %v, %v; want an error before any traffic", d, err)
			case tt.wantErr != nil && (!errors.Is(err, tt.wantErr) || d != nil):
				t.Fatalf("New = %v, %v; want nil, %v", d, err, tt.wantErr)
			case tt.ops != nil && tt.wantErr == nil && err != nil:
				t.Fatal(err)
			}
			if err := bus.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCommands(t *testing.T) {
	uid := []byte{0x04, 0x52, 0x3A, 0x92, 0x6C, 0x1F, 0x90}
	pages := []byte{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F}
	poll := func(want Target) func(*Dev) error {
		return func(d *Dev) error {
			got, err := d.Poll(context.Background())
			if err == nil && (got.Tg != want.Tg || got.SensRes != want.SensRes || got.SelRes != want.SelRes || !bytes.Equal(got.UID, want.UID)) {
				t.Errorf("Poll = %+v, want %+v", got, want)
			}
			return err
		}
	}
	firmware := func(d *Dev) error {
		fw, err := d.Firmware()
		if err == nil && fw != (Firmware{IC: 0x32, Ver: 0x01, Rev: 0x06, Support: 0x07}) {
			t.Errorf("Firmware = %+v", fw)
		}
		return err
	}
	tests := []struct {
		name    string
		opts    func(*Opts)
		ops     []i2ctest.IO
		run     func(*Dev) error
		wantErr error
	}{
		{
			name: "poll, 7-byte UID",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x04, 0xFC, 0xD4, 0x4A, 0x01, 0x00, 0xE1, 0x00}}, // InListPassiveTarget 1, 106 kbps type A
				{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
				{Addr: Addr, R: []byte{0x00}},                                     // status: busy activating
				{Addr: Addr, R: []byte{0x01}},                                     // status: response ready
				{Addr: Addr, R: pad(26, 0x01, 0x00, 0x00, 0xFF, 0x0F, 0xF1, 0xD5, 0x4B, 0x01, 0x01, 0x00, 0x44, 0x00, 0x07, 0x04, 0x52, 0x3A, 0x92, 0x6C, 0x1F, 0x90, 0x56, 0x00)}, // 1 target: Tg 1, ATQA 0044, SAK 00, 7-byte UID; 00 past the frame
			},
			run: poll(Target{Tg: 1, SensRes: 0x0044, SelRes: 0x00, UID: uid}),
		},
		{
			name: "poll, empty field",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x04, 0xFC, 0xD4, 0x4A, 0x01, 0x00, 0xE1, 0x00}}, // InListPassiveTarget
				{Addr: Addr, R: []byte{0x01}},                                                              // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}},                          // ACK
				{Addr: Addr, R: []byte{0x01}},                                                              // status: retries used up
				{Addr: Addr, R: pad(26, 0x01, 0x00, 0x00, 0xFF, 0x03, 0xFD, 0xD5, 0x4B, 0x00, 0xE0, 0x00)}, // NbTg 0
			},
			run:     poll(Target{}),
			wantErr: ErrNoCard,
		},
		{
			name: "read pages",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x05, 0xFB, 0xD4, 0x40, 0x01, 0x30, 0x04, 0xB7, 0x00}}, // InDataExchange Tg 1: READ page 4
				{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
				{Addr: Addr, R: []byte{0x01}},                                     // status: response ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x13, 0xED, 0xD5, 0x41, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F, 0x72, 0x00}}, // status 00, pages 4 to 7
			},
			run: func(d *Dev) error {
				got, err := d.ReadPages(1, 4)
				if err == nil && !bytes.Equal(got[:], pages) {
					t.Errorf("ReadPages = % X", got)
				}
				return err
			},
		},
		{
			name: "read pages, card gone",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x05, 0xFB, 0xD4, 0x40, 0x01, 0x30, 0x04, 0xB7, 0x00}}, // InDataExchange Tg 1: READ page 4
				{Addr: Addr, R: []byte{0x01}},                                                              // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}},                          // ACK
				{Addr: Addr, R: []byte{0x01}},                                                              // status: response ready
				{Addr: Addr, R: pad(27, 0x01, 0x00, 0x00, 0xFF, 0x03, 0xFD, 0xD5, 0x41, 0x01, 0xE9, 0x00)}, // status 01: the target has not answered
			},
			run:     func(d *Dev) error { _, err := d.ReadPages(1, 4); return err },
			wantErr: ErrTargetLost,
		},
		{
			name: "NACK instead of ACK: command sent again",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00}}, // GetFirmwareVersion
				{Addr: Addr, R: []byte{0x01}},                                                                               // status: ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00}},                                           // a NACK frame, not the ACK
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00}},                               // GetFirmwareVersion again
				{Addr: Addr, R: []byte{0x01}},                                                                               // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}},                                           // ACK
				{Addr: Addr, R: []byte{0x01}},                                                                               // status: response ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x06, 0xFA, 0xD5, 0x03, 0x32, 0x01, 0x06, 0x07, 0xE8, 0x00}}, // firmware
			},
			run: firmware,
		},
		{
			name: "corrupt response: NACK asks for it again",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00}}, // GetFirmwareVersion
				{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
				{Addr: Addr, R: []byte{0x01}},                                     // status: response ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x06, 0xFA, 0xD5, 0x03, 0x32, 0x01, 0x16, 0x07, 0xE8, 0x00}}, // a bit flipped in Rev: DCS fails
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00}},                                                 // NACK: send the response again
				{Addr: Addr, R: []byte{0x01}}, // status: response ready again
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x06, 0xFA, 0xD5, 0x03, 0x32, 0x01, 0x06, 0x07, 0xE8, 0x00}}, // firmware, intact
			},
			run: firmware,
		},
		{
			name: "response longer than expected: NACK, then read whole",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x04, 0xFC, 0xD4, 0x4A, 0x01, 0x00, 0xE1, 0x00}}, // InListPassiveTarget
				{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
				{Addr: Addr, R: []byte{0x01}},                                     // status: response ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x14, 0xEC, 0xD5, 0x4B, 0x01, 0x01, 0x00, 0x44, 0x20, 0x07, 0x04, 0x52, 0x3A, 0x92, 0x6C, 0x1F, 0x90, 0x05, 0x78, 0x80, 0x70, 0x02}}, // SAK 20: an ATS follows the UID; DCS and postamble cut off
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00}}, // NACK: send the response again
				{Addr: Addr, R: []byte{0x01}},                               // status: response ready again
				{Addr: Addr, R: pad(276, 0x01, 0x00, 0x00, 0xFF, 0x14, 0xEC, 0xD5, 0x4B, 0x01, 0x01, 0x00, 0x44, 0x20, 0x07, 0x04, 0x52, 0x3A, 0x92, 0x6C, 0x1F, 0x90, 0x05, 0x78, 0x80, 0x70, 0x02, 0xC7, 0x00)}, // the whole frame, read at the longest a frame can be
			},
			run: poll(Target{Tg: 1, SensRes: 0x0044, SelRes: 0x20, UID: uid}),
		},
		{
			name: "syntax error frame",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00}}, // GetFirmwareVersion
				{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
				{Addr: Addr, R: []byte{0x01}},                                     // status: response ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}}, // syntax error frame
			},
			run:     firmware,
			wantErr: ErrSyntax,
		},
		{
			name: "garbage before the frame",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x04, 0xFC, 0xD4, 0x4A, 0x01, 0x00, 0xE1, 0x00}}, // InListPassiveTarget
				{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
				{Addr: Addr, R: []byte{0x01}},                                     // status: response ready
				{Addr: Addr, R: []byte{0x01, 0xFF, 0x00, 0xFF, 0x00, 0x00, 0xFF, 0x0F, 0xF1, 0xD5, 0x4B, 0x01, 0x01, 0x00, 0x44, 0x00, 0x07, 0x04, 0x52, 0x3A, 0x92, 0x6C, 0x1F, 0x90, 0x56, 0x00}}, // FF 00 FF, then the frame
			},
			run: poll(Target{Tg: 1, SensRes: 0x0044, UID: uid}),
		},
		{
			name: "timeout aborts with an ACK",
			opts: func(o *Opts) { o.Timeout = 20 * time.Millisecond },
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00}}, // GetFirmwareVersion
				{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
				{Addr: Addr, R: []byte{0x00}},                                     // status: busy, 20 ms left
				{Addr: Addr, R: []byte{0x00}},                                     // status: busy, 15 ms left
				{Addr: Addr, R: []byte{0x00}},                                     // status: busy, 10 ms left
				{Addr: Addr, R: []byte{0x00}},                                     // status: busy, 5 ms left
				{Addr: Addr, R: []byte{0x00}},                                     // status: busy, time is up
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}},       // ACK from the host: abort the command
			},
			run:     firmware,
			wantErr: ErrTimeout,
		},
		{
			name: "cancelled poll aborts with an ACK",
			// The context ends while the driver waits between polls.
			opts: func(o *Opts) { o.wait = func(context.Context, time.Duration) error { return context.Canceled } },
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x04, 0xFC, 0xD4, 0x4A, 0x01, 0x00, 0xE1, 0x00}}, // InListPassiveTarget
				{Addr: Addr, R: []byte{0x01}},                                     // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}}, // ACK
				{Addr: Addr, R: []byte{0x00}},                                     // status: busy; the wait is cancelled
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}},       // ACK from the host: abort
			},
			run:     func(d *Dev) error { _, err := d.Poll(context.Background()); return err },
			wantErr: context.Canceled,
		},
		{
			name: "poll with a done context: no traffic",
			run: func(d *Dev) error {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_, err := d.Poll(ctx)
				return err
			},
			wantErr: context.Canceled,
		},
		{
			name: "halt twice",
			ops: []i2ctest.IO{
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x03, 0xFD, 0xD4, 0x52, 0x00, 0xDA, 0x00}}, // InRelease all
				{Addr: Addr, R: []byte{0x01}},                                                             // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}},                         // ACK
				{Addr: Addr, R: []byte{0x01}},                                                             // status: response ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x03, 0xFD, 0xD5, 0x53, 0x00, 0xD8, 0x00}}, // status 00
				{Addr: Addr, W: []byte{0x00, 0x00, 0xFF, 0x03, 0xFD, 0xD4, 0x52, 0x00, 0xDA, 0x00}},       // InRelease all, again
				{Addr: Addr, R: []byte{0x01}},                                                             // status: ACK ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}},                         // ACK
				{Addr: Addr, R: []byte{0x01}},                                                             // status: response ready
				{Addr: Addr, R: []byte{0x01, 0x00, 0x00, 0xFF, 0x03, 0xFD, 0xD5, 0x53, 0x00, 0xD8, 0x00}}, // status 00
			},
			run: func(d *Dev) error {
				if err := d.Halt(); err != nil {
					return err
				}
				return d.Halt()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: append(initOps(), tt.ops...), DontPanic: true}
			d, err := New(bus, Addr, testOpts(tt.opts))
			if err != nil {
				t.Fatal(err)
			}
			err = tt.run(d)
			if tt.wantErr == nil && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if err := bus.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// pad returns b followed by zeros up to n bytes, as a read past a frame gives.
func pad(n int, b ...byte) []byte { return append(b, make([]byte, n-len(b))...) }

func TestString(t *testing.T) {
	d, err := New(&i2ctest.Playback{Ops: initOps()}, Addr, testOpts(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.String(), "PN532{playback(36)}"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
}
