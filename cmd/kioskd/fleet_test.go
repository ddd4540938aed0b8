package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/microretail/kioskd/internal/mosquitto"
	"github.com/microretail/kioskd/telemetry"
)

// These tests run the kioskd binary against a real Mosquitto and look at
// it as the fleet does, through a plain MQTT client.

type fleetWatch struct {
	c  paho.Client
	ch chan paho.Message
}

// watchFleet subscribes to filter with a client that reconnects (and
// resubscribes) across broker restarts.
func watchFleet(t *testing.T, url, filter string) *fleetWatch {
	t.Helper()
	return watchFleetAs(t, url, filter, telemetry.TLSFiles{})
}

// watchFleetAs is watchFleet with a client certificate.
func watchFleetAs(t *testing.T, url, filter string, tf telemetry.TLSFiles) *fleetWatch {
	t.Helper()
	w := &fleetWatch{ch: make(chan paho.Message, 100000)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("fleet-watch-%d", time.Now().UnixNano())).
		SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(250 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { w.ch <- m })
		})
	tc, err := tf.Config()
	if err != nil {
		t.Fatal(err)
	}
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	w.c = paho.NewClient(o)
	if tok := w.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.c.Disconnect(0) })
	return w
}

// wait returns the first message on a topic ending in suffix that
// decodes into a T match likes, failing the test after d.
func wait[T any](t *testing.T, w *fleetWatch, suffix, what string, d time.Duration, match func(T, paho.Message) bool) T {
	t.Helper()
	var last string
	deadline := time.After(d)
	for {
		select {
		case m := <-w.ch:
			var v T
			if !strings.HasSuffix(m.Topic(), suffix) || json.Unmarshal(m.Payload(), &v) != nil {
				continue
			}
			last = string(m.Payload())
			if match(v, m) {
				return v
			}
		case <-deadline:
			t.Fatalf("no %s within %s; last on %s: %s", what, d, suffix, last)
			var zero T
			return zero
		}
	}
}

// status waits for a status message on kiosk/<id>/status that cond likes.
func (w *fleetWatch) status(t *testing.T, p *proc, what string, cond func(telemetry.Status, bool) bool) telemetry.Status {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("kioskd:\n%s", p.log)
		}
	}()
	return wait(t, w, "/status", "status "+what, 20*time.Second, func(st telemetry.Status, m paho.Message) bool {
		return cond(st, m.Retained())
	})
}

// result waits for the result of command id.
func (w *fleetWatch) result(t *testing.T, id string) telemetry.Result {
	t.Helper()
	return wait(t, w, "/cmd/result", "result for command "+id, 15*time.Second, func(r telemetry.Result, _ paho.Message) bool {
		return r.ID == id
	})
}

// event waits for an event of type typ on kiosk/<id>/events, at QoS 1.
func (w *fleetWatch) event(t *testing.T, typ string) telemetry.Event {
	t.Helper()
	return wait(t, w, "/events", typ+" event", 15*time.Second, func(e telemetry.Event, m paho.Message) bool {
		if e.Type == typ && m.Qos() != 1 {
			t.Errorf("event %s at QoS %d", typ, m.Qos())
		}
		return e.Type == typ
	})
}

// onlineKiosk runs a broker and kioskd on the sim board connected to it,
// and waits, watching kiosk/proc-test/#, until its birth says online.
func onlineKiosk(t *testing.T) (b *mosquitto.Broker, data, addr string, p *proc, w *fleetWatch) {
	t.Helper()
	b = mosquitto.Start(t, mosquitto.Options{})
	data, addr = t.TempDir(), freeAddr(t)
	p = startKioskd(t, data, addr, "--mqtt", b.URL())
	p.waitReady(t)
	w = watchFleet(t, b.URL(), "kiosk/proc-test/#")
	w.status(t, p, "online", func(s telemetry.Status, _ bool) bool { return s.State == "online" })
	return b, data, addr, p, w
}

func (w *fleetWatch) send(t *testing.T, topic string, c telemetry.Command) {
	t.Helper()
	b, _ := json.Marshal(c)
	if tok := w.c.Publish(topic, 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// TestFleetStatusWillStopAndReboot: the birth is retained and counts
// boots; SIGKILL leaves the broker to publish the will; a clean stop and
// the fleet's reboot command say offline themselves, with the reason.
func TestFleetStatusWillStopAndReboot(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Options{})
	data, addr := t.TempDir(), freeAddr(t)
	p := startKioskd(t, data, addr, "--mqtt", b.URL())
	p.waitReady(t)
	w := watchFleet(t, b.URL(), "kiosk/proc-test/#")
	online := func(boot uint64) func(telemetry.Status, bool) bool {
		return func(s telemetry.Status, _ bool) bool { return s.State == "online" && s.Boot == boot }
	}
	st := w.status(t, p, "online, boot 1", online(1))
	if st.Board != "sim" {
		t.Fatalf("birth %+v", st)
	}

	// SIGKILL: no goodbye from kioskd; the broker sends the will.
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	st = w.status(t, p, "offline by will", func(s telemetry.Status, _ bool) bool { return s.State == "offline" })
	if st.Reason != "" || st.Boot != 1 {
		t.Fatalf("will %+v", st)
	}

	p = startKioskd(t, data, addr, "--mqtt", b.URL())
	p.waitReady(t)
	st = w.status(t, p, "online, boot 2", online(2))
	if !strings.HasPrefix(st.LastShutdown, "unclean") {
		t.Fatalf("birth after SIGKILL: last_shutdown %q", st.LastShutdown)
	}

	// The fleet's reboot: the result, a goodbye, and boot 3 in place.
	w.send(t, "kiosk/proc-test/cmd", telemetry.Command{ID: "rb-1", Cmd: "reboot"})
	if r := w.result(t, "rb-1"); !r.OK {
		t.Fatalf("reboot: %+v", r)
	}
	st = w.status(t, p, "offline for the reboot", func(s telemetry.Status, _ bool) bool { return s.State == "offline" })
	if st.Reason != "reboot" {
		t.Fatalf("goodbye before the reboot: %+v", st)
	}
	st = w.status(t, p, "online, boot 3", online(3))
	if st.LastShutdown != "reboot" {
		t.Fatalf("birth after the reboot: %+v", st)
	}
	p.waitReady(t)

	// A clean stop says offline itself, and that is what stays retained.
	stopKioskd(t, p)
	st = w.status(t, p, "offline after SIGTERM", func(s telemetry.Status, _ bool) bool { return s.State == "offline" })
	if st.Reason != "stop" {
		t.Fatalf("goodbye on SIGTERM: %+v", st)
	}
	late := watchFleet(t, b.URL(), "kiosk/proc-test/status")
	st = late.status(t, p, "retained offline", func(s telemetry.Status, retained bool) bool { return retained })
	if st.State != "offline" || st.Reason != "stop" {
		t.Fatalf("retained after stop: %+v", st)
	}
}

// TestFleetCommandsAcrossABrokerRestart: after the broker restarts the
// kiosk reconnects by itself and still obeys; a command id sent twice
// prints once.
func TestFleetCommandsAcrossABrokerRestart(t *testing.T) {
	b, _, _, p, w := onlineKiosk(t)

	// Mains goes while the broker is down: the event waits and arrives
	// after the reconnect, at QoS 1.
	b.Stop()
	p.mustPost(t, "/api/sim/mains", `{"on":false}`)
	time.Sleep(300 * time.Millisecond)
	b.Restart(0)
	w.status(t, p, "online again", func(s telemetry.Status, _ bool) bool { return s.State == "online" && s.Boot == 1 })
	w.event(t, "mains_lost")

	printed := func() int {
		_, body, err := p.get("/api/sim/printer")
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := body["receipts"].([]any)
		return len(rs)
	}
	before := printed()
	for range 2 {
		w.send(t, "kiosk/proc-test/cmd", telemetry.Command{ID: "pt-1", Cmd: "print_test"})
		if r := w.result(t, "pt-1"); !r.OK {
			t.Fatalf("print_test: %+v", r)
		}
	}
	w.send(t, "fleet/cmd", telemetry.Command{ID: "l-1", Cmd: "lights", Args: json.RawMessage(`{"scene":"battery"}`)})
	if r := w.result(t, "l-1"); !r.OK {
		t.Fatalf("lights through fleet/cmd: %+v", r)
	}
	w.send(t, "kiosk/proc-test/cmd", telemetry.Command{ID: "l-2", Cmd: "lights", Args: json.RawMessage(`{"scene":"disco"}`)})
	if r := w.result(t, "l-2"); r.OK || !strings.Contains(r.Error, "scene") {
		t.Fatalf("unknown scene: %+v", r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for printed() < before+1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // room for a second print, were there one
	if n := printed() - before; n != 1 {
		t.Fatalf("the test page printed %d times for one command id sent twice", n)
	}
	_, st, _ := p.get("/api/state")
	if mq, _ := st["mqtt"].(map[string]any); mq["state"] != "connected" {
		t.Fatalf("status bar mqtt: %v", st["mqtt"])
	}
	stopKioskd(t, p)
}

// TestFleetConfigCommand: a versioned config changes prices at once, is
// kept across a restart, and an older version arriving late changes
// nothing.
func TestFleetConfigCommand(t *testing.T) {
	b, data, addr, p, w := onlineKiosk(t)
	price := func(sku string) float64 {
		_, st, err := p.get("/api/state")
		if err != nil {
			t.Fatal(err)
		}
		cat, _ := st["catalog"].([]any)
		for _, c := range cat {
			if m := c.(map[string]any); m["sku"] == sku {
				return m["price"].(float64)
			}
		}
		t.Fatalf("no %s in the catalog", sku)
		return 0
	}
	send := func(id, args string) telemetry.Result {
		w.send(t, "fleet/cmd", telemetry.Command{ID: id, Cmd: "config", Args: json.RawMessage(args)})
		return w.result(t, id)
	}
	if r := send("cfg-3", `{"version":3,"prices":{"CHAI":9900}}`); !r.OK || !strings.Contains(string(r.Data), `"applied":true`) {
		t.Fatalf("config v3: %+v", r)
	}
	if got := price("CHAI"); got != 9900 {
		t.Fatalf("CHAI at %v after config v3", got)
	}
	if r := send("cfg-bad", `{"version":4,"prices":{"NOSUCH":1}}`); r.OK {
		t.Fatalf("config with an unknown SKU: %+v", r)
	}
	stopKioskd(t, p)
	p = startKioskd(t, data, addr, "--mqtt", b.URL())
	p.waitReady(t)
	if got := price("CHAI"); got != 9900 {
		t.Fatalf("CHAI at %v after a restart", got)
	}
	w.status(t, p, "online, boot 2", func(s telemetry.Status, _ bool) bool { return s.State == "online" && s.Boot == 2 })
	if r := send("cfg-2", `{"version":2,"prices":{"CHAI":100}}`); !r.OK || !strings.Contains(string(r.Data), `"applied":false`) {
		t.Fatalf("older config: %+v", r)
	}
	if got := price("CHAI"); got != 9900 {
		t.Fatalf("CHAI at %v after an older config", got)
	}
	stopKioskd(t, p)
}

// TestFleetOverTLSWithTheShippedBroker: kioskd with its certificate, on the
// shipped Mosquitto config and ACL, as docs/FLEET.md sets a kiosk up: the
// operator sees its birth and it obeys the operator.
func TestFleetOverTLSWithTheShippedBroker(t *testing.T) {
	pki := mosquitto.PKI(t, "proc-test")
	b := mosquitto.Start(t, mosquitto.Shipped(t, pki))
	conf := filepath.Join(t.TempDir(), "kioskd.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("mqtt = %q\n[fleet]\nca = %q\ncert = %q\nkey = %q\n",
		b.TLSURL(), filepath.Join(pki, "ca.pem"), filepath.Join(pki, "proc-test.pem"), filepath.Join(pki, "proc-test.key"))), 0o600); err != nil {
		t.Fatal(err)
	}
	data, addr := t.TempDir(), freeAddr(t)
	p := startKioskd(t, data, addr, "--config", conf)
	p.waitReady(t)
	op := watchFleetAs(t, b.TLSURL(), "kiosk/proc-test/#", telemetry.TLSFiles{CA: filepath.Join(pki, "ca.pem"),
		Cert: filepath.Join(pki, "operator.pem"), Key: filepath.Join(pki, "operator.key")})
	op.status(t, p, "online over TLS", func(s telemetry.Status, retained bool) bool { return s.State == "online" })
	op.send(t, "kiosk/proc-test/cmd", telemetry.Command{ID: "tls-ping", Cmd: "ping"})
	if r := op.result(t, "tls-ping"); !r.OK {
		t.Fatalf("ping over TLS: %+v", r)
	}
	stopKioskd(t, p)
	if st := op.status(t, p, "offline", func(s telemetry.Status, _ bool) bool { return s.State == "offline" }); st.Reason != "stop" {
		t.Fatalf("goodbye over TLS: %+v", st)
	}
}
