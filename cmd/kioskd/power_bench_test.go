package main

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"periph.io/x/conn/v3/i2c"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/mains"
	"github.com/microretail/kioskd/drivers/pca9685"
	"github.com/microretail/kioskd/firmware/devices"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/firmware/lighting"
	"github.com/microretail/kioskd/firmware/power"
	"github.com/microretail/kioskd/firmware/sim"
)

// BenchmarkMainsLostReaction measures the battery-mode reaction: from the
// moment the debounce ends after a mains-lost edge (the edge as the mains
// driver reported it, plus the debounce) to the actions being done: the
// fleet's power event queued, the ledger flushed to disk, and the PWM
// board's registers at the battery scene. Everything is real but the
// chips: the sim's emulators behind the real drivers, Pebble on disk,
// kioskd's own power actions, lights cut with no fade. Each op is one
// cut and one restore; p50, p99 and max are reported in ms.
//
//	go test -run '^$' -bench MainsLostReaction -benchtime 300x ./cmd/kioskd
func BenchmarkMainsLostReaction(b *testing.B) {
	const debounce = 100 * time.Millisecond
	p, err := boards.Load(boards.Sim)
	if err != nil {
		b.Fatal(err)
	}
	w, err := sim.New(p, sim.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	cfg := defaultConfig()
	hub := events.NewHub(0, nil)
	lights, err := lighting.New(lighting.Options{Scenes: cfg.Lights.Scenes, Start: lighting.Open, Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	sup := devices.New(devices.Options{Logger: zerolog.Nop()})
	defer sup.Close(context.Background())
	pwmAddr, _ := w.Addr(boards.RoleLights)
	sup.Start(devices.Spec{Name: "lights", Device: lights.Device(func(context.Context) (lighting.Output, error) {
		dev, err := pca9685.New(i2c.Bus(w.Bus), pwmAddr, &pca9685.DefaultOpts)
		if err != nil {
			return nil, err
		}
		return lighting.PWMBoard{Dev: dev}, nil
	})})
	sensors := power.NewSensors(power.Options{Logger: zerolog.Nop(), Events: hub})
	line, _ := p.LineFor(boards.RoleMainsDetect)
	sup.Start(devices.Spec{Name: "mains", Device: sensors.MainsDevice(func(context.Context) (*mains.Dev, error) {
		pin, err := w.Line(line.Name)
		if err != nil {
			return nil, err
		}
		return mains.New(pin, &mains.Opts{ActiveHigh: line.ActiveHigh})
	})})
	l, err := ledger.Open(b.TempDir(), ledger.Options{KioskID: "bench", Currency: "PKR", Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	flushed := make(chan time.Time, 16)
	pa := &powerActions{cfg: cfg, log: zerolog.Nop(), hub: hub, lights: lights, background: &power.Gate{}, trading: func() bool { return true },
		sync: func() {
			if err := l.Flush(); err != nil {
				b.Error(err)
			}
			flushed <- time.Now()
		},
		shutdown: func(string) {}}
	th := power.DefaultThresholds
	th.Debounce = debounce
	auto, err := power.NewAutomation(sensors, power.AutomationOptions{Thresholds: th, Actions: pa})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go auto.Run(ctx)
	batteryDuty := make([]float64, 3)
	for i, pct := range cfg.Lights.Scenes[cfg.Power.BatteryScene] {
		batteryDuty[i] = float64(lighting.Duty(float64(pct))) / pca9685.MaxDuty
	}
	lit := func() bool {
		for ch, want := range batteryDuty {
			if d := w.PWM.Duty(ch); d < want-0.001 || d > want+0.001 {
				return false
			}
		}
		return true
	}
	sub := hub.Subscribe(0, false, 1024)
	defer hub.Unsubscribe(sub)
	next := func(typ, mode string) events.Event {
		timeout := time.After(10 * time.Second)
		for {
			select {
			case e := <-sub.C():
				if e.Type != typ {
					continue
				}
				if m, ok := e.Data.(map[string]string); mode != "" && (!ok || m["mode"] != mode) {
					continue
				}
				return e
			case <-timeout:
				b.Fatalf("no %s %s event", typ, mode)
			}
		}
	}
	// Wait for the devices, then time each cut.
	for deadline := time.Now().Add(5 * time.Second); len(lights.Shown()) == 0 || sensors.Status().Mains == nil; {
		if time.Now().After(deadline) {
			b.Fatal("devices did not come up")
		}
		time.Sleep(time.Millisecond)
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		if _, err := l.Append(ctx, ledger.Draft{Kind: ledger.KindSale, Payment: ledger.PaymentCash, IdempotencyKey: fmt.Sprint("b-", i),
			Lines: []ledger.Line{{SKU: "CHAI", Name: "Chai", Qty: 1, Price: 8000}}}); err != nil {
			b.Fatal(err)
		}
		w.SetMains(false)
		edge := next(events.MainsLost, "").Time
		ev := next(events.Power, "battery").Time
		var flushT time.Time
		select {
		case flushT = <-flushed:
		case <-time.After(10 * time.Second):
			b.Fatal("no ledger flush")
		}
		for !lit() {
			time.Sleep(50 * time.Microsecond)
		}
		done := time.Now() // the lights, last of the three here…
		for _, t := range []time.Time{ev, flushT} {
			if t.After(done) { // …unless another came after them
				done = t
			}
		}
		lat = append(lat, done.Sub(edge.Add(debounce)))
		w.SetMains(true)
		next(events.Power, "mains")
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
