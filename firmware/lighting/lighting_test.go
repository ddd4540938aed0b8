package lighting

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/internal/testclock"
)

func TestDutyCurve(t *testing.T) {
	for _, tc := range []struct {
		pct  float64
		want uint16
	}{
		{0, 0}, {-5, 0}, {100, MaxDuty}, {150, MaxDuty},
		{50, 754},  // L*=50 is Y=0.1842: half as bright to the eye, a fifth of the power
		{8, 36},    // the linear toe of the curve meets the cube
		{0.01, 1},  // anything above zero glows
		{25, 181},  // Y=0.0442
		{75, 1977}, // Y=0.4828
	} {
		if got := Duty(tc.pct); got != tc.want {
			t.Errorf("Duty(%v) = %d, want %d", tc.pct, got, tc.want)
		}
	}
	prev := uint16(0)
	for p := 0.0; p <= 100; p += 0.5 {
		d := Duty(p)
		if d < prev {
			t.Fatalf("Duty not monotonic at %v: %d < %d", p, d, prev)
		}
		prev = d
	}
}

func TestFades(t *testing.T) {
	clk := testclock.New(time.Unix(1000, 0))
	hub := events.NewHub(0, nil)
	l, err := New(Options{Fade: time.Second, Clock: clk.Now, Events: hub})
	if err != nil {
		t.Fatal(err)
	}
	approx := func(got []float64, want ...float64) {
		t.Helper()
		for i, w := range want {
			if math.Abs(got[i]-w) > 1e-9 {
				t.Fatalf("levels %v, want %v", got, want)
			}
		}
	}
	approx(l.Levels(clk.Now()), 0, 0, 0)
	if err := l.SetScene(Open); err != nil {
		t.Fatal(err)
	}
	clk.Advance(250 * time.Millisecond)
	approx(l.Levels(clk.Now()), 25, 25, 25)
	// A new scene mid-fade starts from where the lights are, not from the
	// old scene's end: no jump.
	if err := l.FadeTo(Night, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	approx(l.Levels(clk.Now()), 25, 25, 25)
	clk.Advance(250 * time.Millisecond)
	approx(l.Levels(clk.Now()), 12.5, 17.5, 12.5)
	clk.Advance(time.Hour)
	approx(l.Levels(clk.Now()), 0, 10, 0)
	if err := l.FadeTo(Off, 0); err != nil {
		t.Fatal(err)
	}
	approx(l.Levels(clk.Now()), 0, 0, 0)

	if err := l.SetScene("disco"); !errors.Is(err, ErrUnknownScene) {
		t.Fatalf("unknown scene: %v", err)
	}
	var seen []string
	for len(hub.Recent(0)) > 0 && len(seen) < len(hub.Recent(0)) {
		seen = append(seen, hub.Recent(0)[len(seen)].Type)
	}
	if len(seen) != 3 {
		t.Fatalf("want one lights event per scene change, got %v", seen)
	}
}

func TestCheckScenes(t *testing.T) {
	bad := DefaultScenes()
	bad[Dim] = []int{50, 101}
	delete(bad, Night)
	err := CheckScenes(bad)
	if err == nil {
		t.Fatal("bad scenes accepted")
	}
	for _, want := range []string{`scene "night" is missing`, `scene "dim" channel 1: level 101`} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := CheckScenes(DefaultScenes()); err != nil {
		t.Fatal(err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// recorder is a PWM output that remembers what it was told.
type recorder struct {
	mu   sync.Mutex
	sets [][]uint16
	err  error
}

func (r *recorder) Channels() int { return 4 }
func (r *recorder) Set(d []uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.sets = append(r.sets, append([]uint16(nil), d...))
	return nil
}

func TestDeviceWritesFramesAndStrip(t *testing.T) {
	clk := testclock.New(time.Unix(1000, 0))
	l, err := New(Options{Start: Open, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	d := l.Device(func(context.Context) (Output, error) { return rec, nil })
	if err := d.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Step returns at once after writing
	if err := d.Step(ctx); err != nil {
		t.Fatal(err)
	}
	want := []uint16{MaxDuty, MaxDuty, MaxDuty, 0} // the fourth channel is in no scene: off
	if got := rec.sets[0]; len(got) != 4 || got[0] != want[0] || got[3] != want[3] {
		t.Fatalf("wrote %v, want %v", got, want)
	}
	rec.err = errors.New("pca9685: NACK")
	if err := d.Step(ctx); err == nil {
		t.Fatal("a failed write was not reported to the supervisor")
	}

	// A MOSFET strip on an active-low gate.
	pin := emu.NewPin("GPIO18", 18, gpio.High)
	strip := &Strip{Pin: pin, ActiveHigh: false}
	sd := l.Device(func(context.Context) (Output, error) { return strip, nil })
	_ = sd.Open(context.Background())
	_ = sd.Step(ctx)
	if pin.Level() != gpio.Low || !pin.IsOutput() {
		t.Fatal("open scene did not switch the active-low strip on")
	}
	_ = l.FadeTo(Off, 0)
	_ = sd.Step(ctx)
	if pin.Level() != gpio.High {
		t.Fatal("off scene left the strip on")
	}
	_ = l.FadeTo(Night, 0) // night lights channel 1 only; the strip is channel 0
	_ = sd.Step(ctx)
	if pin.Level() != gpio.High {
		t.Fatal("night scene lit a strip whose channel is off")
	}
	_ = l.FadeTo(Open, 0)
	_ = sd.Step(ctx)
	if err := sd.Close(); err != nil || pin.Level() != gpio.High {
		t.Fatal("closing the strip did not switch it off")
	}
}
