package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/microretail/kioskd/internal/mosquitto"
	"github.com/microretail/kioskd/internal/salesdb"
	"github.com/microretail/kioskd/telemetry"
)

// TestBrownoutEndToEnd is sim scenario 7: kioskd on the sim board with a
// real Mosquitto. Mains is cut and the pack drained fast (the sim's time
// scale, at the load's physical current). The fleet sees every state on
// tele/power and events; the till sells on battery, finishes the sale on
// the counter once critical and refuses new ones, and kioskd exits 0. When
// power returns the board boots, says why it went down, and every sale
// made on battery reaches the fleet's ingest.
func TestBrownoutEndToEnd(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Options{})
	data, addr := t.TempDir(), freeAddr(t)
	conf := filepath.Join(t.TempDir(), "kioskd.toml")
	if err := os.WriteFile(conf, []byte("[power]\ndebounce = \"2s\"\n[fleet]\nbattery_power_every = \"2s\"\nack_timeout = \"2s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startKioskd(t, data, addr, "--mqtt", b.URL(), "--config", conf)
	p.waitReady(t)
	w := watchFleet(t, b.URL(), "kiosk/proc-test/#")
	w.status(t, p, "online", func(s telemetry.Status, _ bool) bool { return s.State == "online" })
	p.mustPost(t, "/api/checkout", `{"payment":"cash","idempotency_key":"mains-1","lines":[{"sku":"CHAI","qty":1}]}`)

	// Mains goes; the fleet hears the edge at once and battery mode after
	// the debounce.
	p.mustPost(t, "/api/sim/battery", `{"soc":45,"drain_pct_per_min":0.5}`)
	p.mustPost(t, "/api/sim/mains", `{"on":false}`)
	w.event(t, "mains_lost")
	waitPowerEvent(t, w, "battery")
	for _, k := range []string{"battery-1", "battery-2", "battery-3"} {
		p.mustPost(t, "/api/checkout", `{"payment":"cash","idempotency_key":"`+k+`","lines":[{"sku":"SAMOSA","qty":2}]}`)
	}

	// Drain fast: 200× the battery's clock, at the kiosk's real current.
	modes := watchPowerModes(w)
	p.mustPost(t, "/api/sim/battery", `{"time_scale":200}`)
	p.waitState(t, "low mode, load shed", func(s state) bool { return s.Power.Mode == "low" && s.Lights.Scene == "night" })
	p.mustPost(t, "/api/checkout", `{"payment":"cash","idempotency_key":"low-1","lines":[{"sku":"CHAI","qty":1}]}`)
	p.mustPost(t, "/api/cart/add", `{"sku":"PAKORA","qty":2}`) // a sale on the counter when critical comes

	// Critical: the till is closing. The sale on the counter sells; a new
	// item is refused with the reason.
	p.waitState(t, "closing", func(s state) bool { return s.Closing != "" })
	code, out, _ := p.post("/api/cart/add", `{"sku":"CHAI"}`)
	if code != 503 || !strings.Contains(out["error"].(string), "closing (battery critical: state of charge") {
		t.Fatalf("adding an item while closing: %d %v", code, out)
	}
	p.mustPost(t, "/api/checkout", `{"payment":"cash"}`)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("kioskd exited with %v\n%s", err, p.log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kioskd still running 30 s after closing\n%s", p.log)
	}

	// The fleet saw every mode in order on tele/power, the shutdown
	// event, and the goodbye with its reason.
	if e := w.event(t, "shutdown"); !strings.Contains(string(e.Data), "battery critical: state of charge") {
		t.Fatalf("shutdown event %s", e.Data)
	}
	st := w.status(t, p, "offline with the battery reason", func(s telemetry.Status, _ bool) bool { return s.State == "offline" })
	if !strings.HasPrefix(st.Reason, "shutdown: battery critical: state of charge") {
		t.Fatalf("offline reason %q", st.Reason)
	}
	if got := modes(); !inOrder(got, "battery", "low", "critical") {
		t.Fatalf("tele/power modes %v, want battery, low, critical in order", got)
	}

	// Power is back: the board boots (the sim's world starts afresh, on
	// mains) and the fleet's ingest is up. The birth says why the last
	// boot ended; every sale reaches the ingest.
	in := startIngest(t, b.URL())
	p = startKioskd(t, data, addr, "--mqtt", b.URL(), "--config", conf)
	p.waitReady(t)
	st = w.status(t, p, "online again", func(s telemetry.Status, _ bool) bool { return s.State == "online" && s.Boot == 2 })
	if !strings.HasPrefix(st.LastShutdown, "shutdown: battery critical") {
		t.Fatalf("birth after the battery shutdown: last_shutdown %q", st.LastShutdown)
	}
	p.waitState(t, "every sale synced", func(s state) bool { return s.MQTT.Outbox != nil && *s.MQTT.Outbox == 0 })
	if n := len(p.allSales(t)); n != 6 {
		t.Fatalf("%d sales in the ledger, want 6", n)
	}
	stopKioskd(t, p)
	in.stop(t)
	db, err := salesdb.Open(in.data, salesdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if c := db.Contiguous("proc-test"); c != 6 {
		t.Fatalf("the ingest holds proc-test's sales up to %d, want 6\n%s", c, in.log)
	}
}

// waitPowerEvent waits for the fleet's power event for mode.
func waitPowerEvent(t *testing.T, w *fleetWatch, mode string) {
	t.Helper()
	wait(t, w, "/events", "power event for "+mode, 20*time.Second, func(e telemetry.Event, _ paho.Message) bool {
		return e.Type == "power" && strings.Contains(string(e.Data), `"mode":"`+mode+`"`)
	})
}

// watchPowerModes records the modes tele/power reports, each change once,
// from a second subscription of its own.
func watchPowerModes(w *fleetWatch) func() []string {
	ch := make(chan string, 1024)
	w.c.Subscribe("kiosk/proc-test/tele/power", 0, func(_ paho.Client, m paho.Message) {
		var p telemetry.Power
		if json.Unmarshal(m.Payload(), &p) == nil && !m.Retained() {
			ch <- p.Mode
		}
	})
	var modes []string
	return func() []string {
		for {
			select {
			case m := <-ch:
				if len(modes) == 0 || modes[len(modes)-1] != m {
					modes = append(modes, m)
				}
			default:
				return modes
			}
		}
	}
}

// inOrder reports whether want appear in got in this order.
func inOrder(got []string, want ...string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}
