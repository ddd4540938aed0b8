package cards

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/pn532"
	"github.com/microretail/kioskd/firmware/devices"
	"github.com/microretail/kioskd/firmware/events"
)

func TestOneTapPerVisit(t *testing.T) {
	hub := events.NewHub(0, nil)
	r := NewReader(Options{Logger: zerolog.Nop(), Events: hub})
	a := &pn532.Target{UID: []byte{0x04, 0xa2, 0x2b, 0x91}}
	b := &pn532.Target{UID: []byte{0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66}}
	for i, step := range []struct {
		poll *pn532.Target
		tap  string // the UID tapped by this poll, "" for none
	}{
		{a, "04a22b91"},      // card enters the field
		{a, ""},              // held: no new tap
		{nil, ""},            // one missed poll: a wobble, not a removal
		{a, ""},              // still the same visit
		{nil, ""}, {nil, ""}, // two empty polls: it left
		{a, "04a22b91"},       // back: a new tap
		{b, "04112233445566"}, // swapped for another card without a gap
	} {
		tap, ok := r.Seen(step.poll)
		if got := map[bool]string{true: tap.UID}[ok]; got != step.tap {
			t.Fatalf("poll %d: tap %q, want %q", i, got, step.tap)
		}
	}
	if n := len(hub.Recent(0)); n != 3 {
		t.Fatalf("%d card_tap events, want 3", n)
	}
	if last, ok := r.Last(); !ok || last.UID != "04112233445566" {
		t.Fatalf("Last = %+v", last)
	}
}

// TestReaderOnEmulator polls the PN532 emulator through the real driver,
// as the sim board does.
func TestReaderOnEmulator(t *testing.T) {
	bus := emu.NewBus("test", 1)
	chip := pn532.NewEmulator()
	bus.Attach(pn532.Addr, chip)
	hub := events.NewHub(0, nil)
	r := NewReader(Options{Logger: zerolog.Nop(), Events: hub})
	dev := r.Device(func(context.Context) (*pn532.Dev, error) {
		return pn532.New(bus, pn532.Addr, &pn532.DefaultOpts)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dev.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	step := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := dev.Step(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	step(3) // empty field
	chip.Place(pn532.NTAG213([]byte{0x04, 0xa2, 0x2b, 0x91, 0xc5, 0x3e, 0x80}))
	step(5)
	chip.Remove()
	step(3)
	chip.Place(pn532.Card{UID: []byte{0xde, 0xad, 0xbe, 0xef}, SensRes: 0x0004, SelRes: 0x08})
	step(2)
	var taps []string
	for _, e := range hub.Recent(0) {
		taps = append(taps, e.Data.(Tap).UID)
	}
	if len(taps) != 2 || taps[0] != "04a22b91c53e80" || taps[1] != "deadbeef" {
		t.Fatalf("taps %v, want the NTAG once and then the 4-byte card", taps)
	}

	// A reader that stops answering fails its step; the supervisor takes
	// it from there.
	bus.Inject(pn532.Addr, emu.FaultNACK, -1)
	if err := dev.Step(ctx); err == nil {
		t.Fatal("a NACKing reader stepped without error")
	}
}

// TestRestingCardAfterReaderBlip: a card left on the reader while the
// reader drops off the bus and comes back is not tapped again: a second
// tap would pay or top up twice.
func TestRestingCardAfterReaderBlip(t *testing.T) {
	bus := emu.NewBus("test", 1)
	chip := pn532.NewEmulator()
	bus.Attach(pn532.Addr, chip)
	hub := events.NewHub(0, nil)
	r := NewReader(Options{Logger: zerolog.Nop(), Events: hub})
	sup := devices.New(devices.Options{Logger: zerolog.Nop(), MinBackoff: 10 * time.Millisecond})
	defer sup.Close(context.Background())
	sup.Start(devices.Spec{Name: "nfc", Device: r.Device(func(context.Context) (*pn532.Dev, error) {
		return pn532.New(bus, pn532.Addr, &pn532.DefaultOpts)
	}), Every: 5 * time.Millisecond})
	chip.Place(pn532.NTAG213([]byte{0x04, 0xa2, 0x2b, 0x91, 0xc5, 0x3e, 0x80}))
	waitTaps(t, hub, 1)
	opens := func() int { h, _ := sup.Get("nfc"); return h.Opens }
	before := opens()
	bus.Inject(pn532.Addr, emu.FaultNACK, 3) // three failed polls: offline, then reopened
	deadline := time.Now().Add(5 * time.Second)
	for opens() == before {
		if time.Now().After(deadline) {
			t.Fatal("the reader was not reopened after the blip")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // several polls with the card still there
	if n := len(hub.Recent(0)); n != 1 {
		t.Fatalf("%d taps for one card resting on the reader, want 1", n)
	}
	chip.Remove()
	time.Sleep(50 * time.Millisecond)
	chip.Place(pn532.NTAG213([]byte{0x04, 0xa2, 0x2b, 0x91, 0xc5, 0x3e, 0x80}))
	waitTaps(t, hub, 2) // lifted and tapped again: a new tap
}

// TestReaderRecoversFromBrownout: after a chip reset the next poll fails
// once, sets the chip up again, and polls on.
func TestReaderRecoversFromBrownout(t *testing.T) {
	bus := emu.NewBus("test", 1)
	chip := pn532.NewEmulator()
	bus.Attach(pn532.Addr, chip)
	r := NewReader(Options{Logger: zerolog.Nop()})
	opts := pn532.DefaultOpts
	opts.Timeout = 50 * time.Millisecond
	dev := r.Device(func(context.Context) (*pn532.Dev, error) { return pn532.New(bus, pn532.Addr, &opts) })
	ctx := context.Background()
	if err := dev.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	bus.Reset(pn532.Addr)
	if err := dev.Step(ctx); !errors.Is(err, pn532.ErrTimeout) {
		t.Fatalf("first poll after the reset: %v, want a timeout", err)
	}
	for i := 0; i < 3; i++ {
		if err := dev.Step(ctx); err != nil {
			t.Fatalf("poll %d after re-initialising: %v", i, err)
		}
	}
}

func waitTaps(t *testing.T, hub *events.Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(hub.Recent(0)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d taps, want %d", len(hub.Recent(0)), n)
		}
		time.Sleep(time.Millisecond)
	}
}
