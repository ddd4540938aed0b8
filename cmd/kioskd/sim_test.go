package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/microretail/kioskd/firmware/sim"
)

// TestSimBoardEndToEnd runs the real binary on the sim board and changes
// only the physical world through /api/sim. Everything it then checks
// travelled from the emulated chips through the drivers, the supervision
// and the till's API.
func TestSimBoardEndToEnd(t *testing.T) {
	p := startKioskd(t, t.TempDir(), freeAddr(t))
	defer stopKioskd(t, p)
	p.waitReady(t)
	evs := p.events(t)

	// Every device of the sim board comes up.
	p.waitState(t, "every device ok", func(st state) bool {
		for _, d := range []string{"fuel_gauge", "battery_shunt", "nfc", "lights", "mains_detect"} {
			if st.Devices[d] != "ok" {
				return false
			}
		}
		return true
	})

	// 1. Mains off, battery at 40%.
	p.mustPost(t, "/api/sim/mains", `{"on":false}`)
	p.mustPost(t, "/api/sim/battery", `{"soc":40,"drain_pct_per_min":1}`)
	evs.wait(t, "mains_lost", nil)

	// Battery mode begins once mains has stayed away for the debounce,
	// with the battery scene.
	p.waitState(t, "battery mode", func(s state) bool { return s.Power.Mode == "battery" && s.Lights.Scene == "battery" })

	// 2. The readings came through the drivers: the gauge's SOC register
	// in 1/256 %, its VCELL at 78.125 µV, the shunt's current from its
	// calibration, a runtime from CRATE. The load is 1 %/min of 3 Ah
	// (1.8 A) plus whatever the lights draw as the PWM board drives them
	// (they fade to the battery scene): the model says which, and once
	// the readings settle the drivers must read the same.
	var why string
	p.waitState(t, "battery readings as the model has them", func(s state) bool {
		b := s.Power.Battery
		if s.Power.Mains == nil || *s.Power.Mains || b.SOC == nil || math.Abs(*b.SOC-40) > 0.5 || b.Amps == nil || b.Volts == nil || b.RuntimeS == nil {
			why = "readings missing"
			return false
		}
		world := simWorld(t, p)
		wantAmps := world.Amps
		wantVolts := sim.OCV(world.SOC) + wantAmps*sim.InternalOhms
		wantRuntime := world.SOC / (-wantAmps / sim.CapacityAh * 100) * 3600 // the charge at the load's %/h
		why = fmt.Sprintf("amps %v (model %v, lights %v), volts %v (model %.3f), runtime %d s (model %.0f)",
			*b.Amps, wantAmps, world.LightsAmps, *b.Volts, wantVolts, *b.RuntimeS, wantRuntime)
		base := -1.0 * 60 / 100 * sim.CapacityAh
		return wantAmps <= base && math.Abs(*b.Amps-wantAmps) < 0.05 && math.Abs(*b.Volts-wantVolts) < 0.02 &&
			math.Abs(float64(*b.RuntimeS)-wantRuntime) < 0.05*wantRuntime
	})
	t.Logf("settled: %s", why)

	// 3. A card tap reaches the event stream with its UID.
	p.mustPost(t, "/api/sim/tap", `{"uid":"04A22B91C53E80"}`)
	evs.wait(t, "card_tap", func(data map[string]any) bool { return data["uid"] == "04a22b91c53e80" })

	// 4. The card reader stops answering: offline; cleared: ok again.
	p.mustPost(t, "/api/sim/fault", `{"device":"nfc","fault":"nack"}`)
	evs.wait(t, "device_offline", func(data map[string]any) bool { return data["name"] == "nfc" })
	p.waitState(t, "nfc offline", func(s state) bool { return s.Devices["nfc"] == "offline" })
	if code, _, _ := p.post("/api/cart/scan", `{"code":"8964000100011"}`); code != 200 {
		t.Errorf("the till stopped selling with the card reader offline: %d", code)
	}
	p.mustPost(t, "/api/sim/fault", `{"device":"nfc","fault":"none"}`)
	evs.wait(t, "device_ok", func(data map[string]any) bool { return data["name"] == "nfc" })
	p.mustPost(t, "/api/sim/tap", `{"uid":"04a22b91"}`)
	evs.wait(t, "card_tap", func(data map[string]any) bool { return data["uid"] == "04a22b91" })

	// A brownout resets the shunt, and the load changes: the driver finds
	// its calibration gone, writes it again, and reads the new current.
	p.mustPost(t, "/api/sim/fault", `{"device":"battery_shunt","fault":"reset"}`)
	p.mustPost(t, "/api/sim/battery", `{"drain_pct_per_min":0.5}`)
	p.waitState(t, "the new current after the shunt's reset", func(s state) bool {
		a := s.Power.Battery.Amps
		return a != nil && math.Abs(*a-simWorld(t, p).Amps) < 0.03 && *a > -0.5*60/100*sim.CapacityAh-1.5
	})

	// On battery the lights are in the battery scene; with mains back for
	// the debounce, in the open scene again, and the PWM chip's outputs
	// say so.
	p.waitState(t, "battery scene", func(s state) bool { return s.Lights.Scene == "battery" })
	p.mustPost(t, "/api/sim/mains", `{"on":true}`)
	evs.wait(t, "mains_restored", nil)
	p.waitState(t, "mains mode, open scene", func(s state) bool { return s.Power.Mode == "mains" && s.Lights.Scene == "open" })
	// The scene fades in (lights.fade): the outputs arrive a moment later.
	var lights []any
	for deadline := time.Now().Add(5 * time.Second); ; {
		code, world, err := p.get("/api/sim/world")
		if err != nil || code != 200 {
			t.Fatalf("sim world: %d %v", code, err)
		}
		lights, _ = world["lights"].([]any)
		if len(lights) >= 4 && lights[0] == 1.0 && lights[2] == 1.0 && lights[3] == 0.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PWM outputs %v, want channels 0-2 full on and 3 off", lights)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type state struct {
	Devices map[string]string `json:"devices"`
	Power   struct {
		Mains          *bool  `json:"mains"`
		Mode           string `json:"mode"`
		MainsSource    string `json:"mains_source"`
		BackgroundHeld string `json:"background_held"`
		Battery        struct {
			Volts    *float64 `json:"volts"`
			Amps     *float64 `json:"amps"`
			SOC      *float64 `json:"soc"`
			RuntimeS *int64   `json:"runtime_s"`
		} `json:"battery"`
		Estimate *struct {
			Source string `json:"source"`
			Note   string `json:"note"`
		} `json:"estimate"`
	} `json:"power"`
	Lights struct {
		Scene string `json:"scene"`
	} `json:"lights"`
	Printer struct {
		Printer string `json:"printer"`
		Waiting string `json:"waiting"`
		Queue   []any  `json:"queue"`
	} `json:"printer"`
	Closing string `json:"closing"`
	MQTT    struct {
		State  string  `json:"state"`
		Outbox *uint64 `json:"outbox"`
	} `json:"mqtt"`
}

func (p *proc) get(path string) (int, map[string]any, error) {
	resp, err := client.Get("http://" + p.addr + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	err = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, err
}

// simWorld is the sim's model of the world now.
func simWorld(t *testing.T, p *proc) sim.Physics {
	t.Helper()
	resp, err := client.Get("http://" + p.addr + "/api/sim/world")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ph sim.Physics
	if err := json.NewDecoder(resp.Body).Decode(&ph); err != nil || resp.StatusCode != 200 {
		t.Fatalf("sim world: %d %v", resp.StatusCode, err)
	}
	return ph
}

func (p *proc) mustPost(t *testing.T, path, body string) {
	t.Helper()
	code, out, err := p.post(path, body)
	if err != nil || code != 200 {
		t.Fatalf("POST %s %s: %d %v %v", path, body, code, out, err)
	}
}

// waitState polls /api/state until cond holds.
func (p *proc) waitState(t *testing.T, what string, cond func(state) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + p.addr + "/api/state")
		if err == nil {
			var st state
			var raw json.RawMessage
			_ = json.NewDecoder(resp.Body).Decode(&raw)
			resp.Body.Close()
			last = string(raw)
			if json.Unmarshal(raw, &st) == nil && cond(st) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-p.done:
		t.Fatalf("waiting for %s: kioskd exited (%v); last state %s\n%s", what, err, last, p.log)
	default:
	}
	t.Fatalf("timed out waiting for %s; last state %s", what, last)
}

type eventStream struct {
	c chan map[string]any
}

// events follows /api/events for the rest of the test.
func (p *proc) events(t *testing.T) *eventStream {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	es := &eventStream{c: make(chan map[string]any, 1024)}
	go func() {
		defer close(es.c)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var e map[string]any
				if json.Unmarshal([]byte(data), &e) == nil {
					es.c <- e
				}
			}
		}
	}()
	return es
}

// wait returns once an event of type typ whose data satisfies cond (nil:
// any) arrives.
func (es *eventStream) wait(t *testing.T, typ string, cond func(map[string]any) bool) {
	t.Helper()
	es.waitFor(t, typ, 20*time.Second, cond)
}

// waitFor is wait with its own time limit.
func (es *eventStream) waitFor(t *testing.T, typ string, d time.Duration, cond func(map[string]any) bool) {
	t.Helper()
	timeout := time.After(d)
	var seen []string
	for {
		select {
		case e, ok := <-es.c:
			if !ok {
				t.Fatalf("event stream ended waiting for %s; saw %v", typ, seen)
			}
			seen = append(seen, fmt.Sprint(e["type"]))
			if e["type"] != typ {
				continue
			}
			data, _ := e["data"].(map[string]any)
			if cond == nil || cond(data) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event in time; saw %v", typ, seen)
		}
	}
}
