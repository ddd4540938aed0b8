// Command power measures, in the sim board's load model, how much longer a
// kiosk trades on battery because kioskd dims its lights: the runtime from
// 80% to the shutdown point (critical_soc, 15%) with the lights left in
// each scene, and with kioskd's modes (the battery scene, then the low
// scene from low_soc, 30%). The lights are set through the real PCA9685
// driver; the draw is what the emulated INA219 reads through its driver;
// the model runs on an injected clock, a minute a step.
//
//	go run ./bench/power
package main

import (
	"fmt"
	"os"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/ina219"
	"github.com/microretail/kioskd/drivers/pca9685"
	"github.com/microretail/kioskd/firmware/lighting"
	"github.com/microretail/kioskd/firmware/power"
	"github.com/microretail/kioskd/firmware/sim"
	"github.com/microretail/kioskd/internal/testclock"
)

const start, critical, low = 80.0, 15.0, 30.0

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/power:", err)
		os.Exit(1)
	}
}

// kiosk is the sim board's battery, shunt and lights on a model clock.
type kiosk struct {
	clk    *testclock.Clock
	w      *sim.World
	pwm    *pca9685.Dev
	shunt  *ina219.Dev
	scenes map[string][]int
}

func newKiosk() (*kiosk, error) {
	p, err := boards.Load(boards.Sim)
	if err != nil {
		return nil, err
	}
	clk := testclock.New(time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC))
	w, err := sim.New(p, sim.Options{Clock: clk.Now})
	if err != nil {
		return nil, err
	}
	pwmAddr, _ := w.Addr(boards.RoleLights)
	pwm, err := pca9685.New(i2c.Bus(w.Bus), pwmAddr, &pca9685.DefaultOpts)
	if err != nil {
		return nil, err
	}
	shuntAddr, _ := w.Addr(boards.RoleBatteryShunt)
	shunt, err := ina219.New(w.Bus, shuntAddr, &ina219.DefaultOpts)
	if err != nil {
		return nil, err
	}
	soc, drain := start, sim.DefaultDrain
	w.SetBattery(&soc, &drain, nil)
	w.SetMains(false)
	return &kiosk{clk: clk, w: w, pwm: pwm, shunt: shunt, scenes: lighting.DefaultScenes()}, nil
}

func (k *kiosk) light(scene string) error {
	var duties []uint16
	for _, pct := range k.scenes[scene] {
		duties = append(duties, lighting.Duty(float64(pct)))
	}
	if err := k.pwm.SetDuties(0, duties); err != nil {
		return err
	}
	k.w.Advance()
	return nil
}

// amps is the pack's draw as the shunt reads it, after a conversion.
func (k *kiosk) amps() (float64, error) {
	k.clk.Advance(30 * time.Millisecond)
	r, err := k.shunt.Sense()
	if err != nil {
		return 0, err
	}
	return -float64(r.Current) / 1e9, nil
}

// drain runs the model a minute at a time until the charge is at or under
// to, choosing the scene by the charge; it returns the minutes taken.
func (k *kiosk) drain(to float64, scene func(soc float64) string) (int, error) {
	shown := ""
	for m := 0; ; m++ {
		soc := k.w.State().SOC
		if soc <= to {
			return m, nil
		}
		if s := scene(soc); s != shown {
			if err := k.light(s); err != nil {
				return 0, err
			}
			shown = s
		}
		k.clk.Advance(time.Minute)
		k.w.Advance()
	}
}

func run() error {
	fmt.Printf("sim load model: base load %.2f A (%.1f %%/min of %.0f Ah), lights %v A per channel at full duty\n",
		sim.DefaultDrain*60/100*sim.CapacityAh, sim.DefaultDrain, sim.CapacityAh, sim.LightAmps)
	fmt.Printf("runtime from %.0f%% to the shutdown at %.0f%%:\n\n", start, critical)
	fmt.Printf("%-28s %9s %9s %12s %17s\n", "lights", "draw A", "lights A", "runtime min", "estimate at 80%")
	var openMin int
	for _, scene := range []string{lighting.Open, lighting.Dim, lighting.Battery, lighting.Night, lighting.Off} {
		k, err := newKiosk()
		if err != nil {
			return err
		}
		if err := k.light(scene); err != nil {
			return err
		}
		a, err := k.amps()
		if err != nil {
			return err
		}
		lightsA := k.w.State().LightsAmps
		est, _ := power.EstimateRuntime(power.Gauges{SoC: ptr(start), Amps: ptr(-a)}, sim.CapacityAh)
		mins, err := k.drain(critical, func(float64) string { return scene })
		if err != nil {
			return err
		}
		if scene == lighting.Open {
			openMin = mins
		}
		fmt.Printf("%-28s %9.2f %9.2f %12d %14.0f min\n", "always "+scene, a, lightsA, mins, float64(est.RuntimeS)/60)
	}
	// kioskd's modes: the battery scene, the low scene from low_soc.
	k, err := newKiosk()
	if err != nil {
		return err
	}
	mins, err := k.drain(critical, func(soc float64) string {
		if soc <= low {
			return lighting.Night
		}
		return lighting.Battery
	})
	if err != nil {
		return err
	}
	fmt.Printf("%-28s %9s %9s %12d\n", "kioskd: battery, then night", "", "", mins)
	fmt.Printf("\ngain over leaving the lights open: %d min (+%.0f%%)\n", mins-openMin, 100*float64(mins-openMin)/float64(openMin))
	return nil
}

func ptr(v float64) *float64 { return &v }
