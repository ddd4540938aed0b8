package sim

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/ina219"
	"github.com/microretail/kioskd/drivers/max17048"
	"github.com/microretail/kioskd/drivers/pca9685"
	"github.com/microretail/kioskd/internal/testclock"
)

func newWorld(t *testing.T) (*World, *testclock.Clock) {
	t.Helper()
	p, err := boards.Load(boards.Sim)
	if err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Unix(1_700_000_000, 0))
	w, err := New(p, Options{Clock: clk.Now, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	return w, clk
}

// TestBatteryModelThroughDrivers drains the modelled battery and reads it
// back the way kioskd does: through the gauge and shunt drivers.
func TestBatteryModelThroughDrivers(t *testing.T) {
	w, clk := newWorld(t)
	gaugeAddr, _ := w.Addr(boards.RoleFuelGauge)
	shuntAddr, _ := w.Addr(boards.RoleBatteryShunt)
	gauge, err := max17048.New(w.Bus, gaugeAddr, &max17048.DefaultOpts)
	if err != nil {
		t.Fatal(err)
	}
	shunt, err := ina219.New(w.Bus, shuntAddr, &ina219.DefaultOpts)
	if err != nil {
		t.Fatal(err)
	}
	soc := 50.0
	drain := 1.5
	w.SetBattery(&soc, &drain, nil)
	w.SetMains(false)
	if l := w.Pin("GPIO6").Read(); l != gpio.Low {
		t.Fatal("mains pulled but the detect line is still high")
	}
	clk.Advance(20 * time.Minute) // 1.5 %/min for 20 minutes: 2.7 A, inside the shunt's 3.2 A
	w.Advance()
	clk.Advance(30 * time.Millisecond) // the shunt converts on the world's clock

	g, err := gauge.Sense()
	if err != nil {
		t.Fatal(err)
	}
	if got := g.SOC.Percent(); math.Abs(got-20) > 0.01 {
		t.Errorf("gauge SOC %.3f%%, want 20%%", got)
	}
	if got := g.Rate.PercentPerHour(); math.Abs(got+90) > 0.3 {
		t.Errorf("gauge rate %.2f%%/h, want -90", got)
	}
	amps := -1.5 * 60 / 100 * CapacityAh
	wantV := OCV(20) + amps*InternalOhms
	if got := float64(g.Cell) / 1e9; math.Abs(got-wantV) > 0.001 {
		t.Errorf("gauge cell %.4f V, want %.4f", got, wantV)
	}
	s, err := shunt.Sense()
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(s.Current) / 1e9; math.Abs(got-amps) > 0.01 {
		t.Errorf("shunt current %.3f A, want %.3f", got, amps)
	}
	if got := float64(s.Bus) / 1e9; math.Abs(got-wantV) > 0.008 { // 4 mV LSB
		t.Errorf("shunt bus %.4f V, want %.4f", got, wantV)
	}

	// Mains back: the cell charges and the current turns positive.
	w.SetMains(true)
	clk.Advance(5 * time.Minute)
	w.Advance()
	if st := w.State(); math.Abs(st.SOC-25) > 0.01 || st.Amps <= 0 {
		t.Errorf("charging: %+v", st)
	}
	// Flat: no charge left to drain, no current.
	zero := 0.0
	w.SetBattery(&zero, nil, nil)
	w.SetMains(false)
	clk.Advance(time.Minute)
	if st := w.State(); st.SOC != 0 || st.Amps != 0 {
		t.Errorf("flat battery: %+v", st)
	}
	// No battery: the gauge, powered from the cell, stops answering.
	absent := false
	w.SetBattery(nil, nil, &absent)
	if _, err := gauge.Sense(); err == nil {
		t.Error("a gauge with no battery answered")
	}
}

func TestSimEndpoints(t *testing.T) {
	w, _ := newWorld(t)
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path, body string
		code       int
		says       string
	}{
		{"/api/sim/mains", `{"on":false}`, 200, `"mains":false`},
		{"/api/sim/mains", `{}`, 400, "is required: true or false"},
		{"/api/sim/mains", `{"on":"yes"}`, 400, "malformed JSON"},
		{"/api/sim/battery", `{"soc":40,"drain_pct_per_min":1.5}`, 200, `"soc":40`},
		{"/api/sim/battery", `{"soc":140}`, 400, "not 0-100"},
		{"/api/sim/battery", `{"volts":3.7}`, 400, "unknown field"},
		{"/api/sim/tap", `{"uid":"04a22b91"}`, 200, `"uid":"04a22b91"`},
		{"/api/sim/tap", `{"uid":"04a22b"}`, 400, "not 4, 7 or 10 bytes"},
		{"/api/sim/tap", `{"uid":"zz"}`, 400, "not 4, 7 or 10 bytes"},
		{"/api/sim/fault", `{"device":"nfc","fault":"nack","count":3}`, 200, `"count":3`},
		{"/api/sim/fault", `{"device":"nfc","fault":"melt"}`, 400, "unknown fault"},
		{"/api/sim/fault", `{"device":"printer","fault":"nack"}`, 400, "no I2C device"},
		{"/api/sim/fault", `{"device":"lights","fault":"reset"}`, 200, `"reset":true`},
		{"/api/sim/nope", `{}`, 404, "no sim endpoint"},
	} {
		resp, err := http.Post(srv.URL+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		_, _ = io_copy(&sb, resp)
		if resp.StatusCode != tc.code || !strings.Contains(sb.String(), tc.says) {
			t.Errorf("POST %s %s: %d %s, want %d saying %q", tc.path, tc.body, resp.StatusCode, sb.String(), tc.code, tc.says)
		}
	}
	if f := w.Bus.Fault(0x24); f.String() != "nack" {
		t.Errorf("nfc fault %v after injection", f)
	}
}

func io_copy(sb *strings.Builder, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		sb.Write(buf[:k])
		n += int64(k)
		if err != nil {
			return n, nil
		}
	}
}

// TestLightsLoadAndTimeScale: the lights the PWM board drives add to the
// load, so a dimmer scene drains the cell more slowly; the time scale
// speeds the battery's clock without changing the current the chips see.
func TestLightsLoadAndTimeScale(t *testing.T) {
	w, clk := newWorld(t)
	pwmAddr, _ := w.Addr(boards.RoleLights)
	lights, err := pca9685.New(w.Bus, pwmAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	soc, drain := 80.0, DefaultDrain
	w.SetBattery(&soc, &drain, nil)
	w.SetMains(false)
	base := w.State().Amps
	if want := -pctPerMinToAmps(DefaultDrain); math.Abs(base-want) > 0.001 {
		t.Fatalf("base load %.3f A, want %.3f", base, want)
	}
	if err := lights.SetDuties(0, []uint16{pca9685.MaxDuty, pca9685.MaxDuty / 2, 0}); err != nil {
		t.Fatal(err)
	}
	w.Advance()
	st := w.State()
	wantLights := LightAmps[0] + LightAmps[1]*float64(pca9685.MaxDuty/2)/float64(pca9685.MaxDuty)
	if math.Abs(st.LightsAmps-wantLights) > 0.01 || math.Abs(st.Amps-(base-wantLights)) > 0.01 {
		t.Fatalf("with the lights on: lights %.3f A (want %.3f), total %.3f A", st.LightsAmps, wantLights, st.Amps)
	}
	// 10 minutes at this load.
	clk.Advance(10 * time.Minute)
	want := 80 - ampsToPctPerMin(-st.Amps)*10
	if got := w.State().SOC; math.Abs(got-want) > 0.01 {
		t.Fatalf("after 10 min: %.2f%%, want %.2f%%", got, want)
	}
	// At 60×, one wall minute is an hour of the battery's, at the same current.
	if err := w.SetTimeScale(60); err != nil {
		t.Fatal(err)
	}
	before := w.State()
	clk.Advance(time.Second)
	after := w.State()
	if d := before.SOC - after.SOC; math.Abs(d-ampsToPctPerMin(-before.Amps)) > 0.01 || math.Abs(after.Amps-before.Amps) > 0.001 {
		t.Fatalf("1 s at 60x: drained %.3f%%, current %.3f → %.3f A", d, before.Amps, after.Amps)
	}
	for _, bad := range []float64{0, 0.5, MaxTimeScale + 1} {
		if w.SetTimeScale(bad) == nil {
			t.Errorf("time scale %v accepted", bad)
		}
	}
}
