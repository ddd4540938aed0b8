package power

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/ina219"
	"github.com/microretail/kioskd/drivers/mains"
	"github.com/microretail/kioskd/drivers/max17048"
	"github.com/microretail/kioskd/firmware/events"
)

// TestStatusFromChips reads the emulated chips through the drivers, as the
// supervised devices do, and checks what /api/state would show.
func TestStatusFromChips(t *testing.T) {
	bus := emu.NewBus("test", 1)
	gauge := max17048.NewEmulator(1)
	shunt := ina219.NewEmulator(ina219.INA219, 100*physic.MilliOhm)
	bus.Attach(0x36, gauge)
	bus.Attach(0x42, shunt)
	gauge.SetCell(3790 * physic.MilliVolt)
	gauge.SetSOC(40)
	gauge.SetRate(-60) // 1 %/min
	shunt.SetBus(3790 * physic.MilliVolt)
	shunt.SetCurrent(-1800 * physic.MilliAmpere)
	line := emu.NewPin("GPIO6", 6, gpio.High)

	hub := events.NewHub(0, nil)
	s := NewSensors(Options{Logger: zerolog.Nop(), Events: hub})
	if st := s.Status(); st.Mode != "unknown" || st.Mains != nil || st.Battery.SOC != nil {
		t.Fatalf("before any reading: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g := s.GaugeDevice(func(context.Context) (*max17048.Dev, error) { return max17048.New(bus, 0x36, &max17048.DefaultOpts) })
	sh := s.ShuntDevice(func(context.Context) (*ina219.Dev, error) { return ina219.New(bus, 0x42, &ina219.DefaultOpts) })
	m := s.MainsDevice(func(context.Context) (*mains.Dev, error) { return mains.New(line, &mains.DefaultOpts) })
	for _, d := range []interface {
		Open(context.Context) error
		Step(context.Context) error
	}{g, sh} {
		if err := d.Open(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}

	st := s.Status()
	b := st.Battery
	if st.Mode != "mains" || *st.Mains != true {
		t.Errorf("mode %q mains %v", st.Mode, *st.Mains)
	}
	if *b.SOC != 40 || math.Abs(*b.Volts-3.79) > 0.004 /* the 4 mV LSB */ || *b.Amps != -1.8 || *b.RatePctH > -59.5 || *b.RatePctH < -60.5 {
		t.Errorf("battery soc %v volts %v amps %v rate %v", *b.SOC, *b.Volts, *b.Amps, *b.RatePctH)
	}
	// 40% at 60 %/h (CRATE in 0.208 %/h steps: 288 × 0.208 = 59.904): 40 minutes.
	if *b.RuntimeS < 2390 || *b.RuntimeS > 2410 {
		t.Errorf("runtime %d s, want about 2400", *b.RuntimeS)
	}
	if len(b.Sources) != 2 {
		t.Errorf("sources %v", b.Sources)
	}

	// Mains lost: the step sees the debounced edge and publishes at once.
	done := make(chan error, 1)
	go func() { done <- m.Step(ctx) }()
	line.Drive(gpio.Low)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.Mode != "battery" || *st.Mains {
		t.Errorf("after the line fell: %+v", st)
	}
	evs := hub.Recent(0)
	if len(evs) != 1 || evs[0].Type != events.MainsLost {
		t.Fatalf("events %+v, want one mains_lost", evs)
	}

	// A gauge that goes away takes its readings with it.
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if b := s.Status().Battery; b.SOC != nil || b.RuntimeS != nil || b.Amps == nil {
		t.Errorf("after the gauge closed: %+v", b)
	}
	_ = sh.Close()
	_ = m.Close()
}
