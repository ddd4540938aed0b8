package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/microretail/kioskd/telemetry"
)

// TestFleet: the table comes from retained messages: online, offline,
// stale and unreported kiosks, sorted by id, in human and JSON form.
func TestFleet(t *testing.T) {
	b := broker(t)
	pub := client(t, b, "sim")
	now := time.Now().UTC()
	soc := 42.0
	kiosk := func(id, state string, at time.Time) {
		publish(t, pub, telemetry.Topic(id, telemetry.TopicStatus), true,
			telemetry.Status{State: state, Boot: 7, Version: "1.4.2", Board: "rpi4b", TS: at.Add(-time.Hour)})
		publish(t, pub, telemetry.Topic(id, telemetry.TopicHealth), true,
			telemetry.Health{TS: at, UptimeS: 3600, Boot: 7, CheckoutAvailability: 0.987, Outbox: 12,
				Devices: map[string]string{"printer": "ok", "scanner": "offline"}})
		publish(t, pub, telemetry.Topic(id, telemetry.TopicPower), true,
			telemetry.Power{TS: at, Mode: "battery", Battery: &telemetry.Battery{SoC: soc}})
	}
	kiosk("k10", "online", now.Add(-30*time.Second))
	kiosk("k02", "offline", now.Add(-20*time.Minute)) // offline, and silent past --stale
	kiosk("k03", "online", now.Add(-time.Hour))       // silent for an hour: stale
	publish(t, pub, telemetry.Topic("k04", telemetry.TopicHealth), true, "{broken")

	code, out, errs := cli("fleet", "--broker", b.URL(), "--json")
	if code != 0 {
		t.Fatalf("fleet: %d %s", code, errs)
	}
	var rep fleetReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var ids []string
	for _, r := range rep.Kiosks {
		ids = append(ids, r.Kiosk)
	}
	if strings.Join(ids, " ") != "k02 k03 k04 k10" || rep.Online != 2 || rep.Offline != 1 || rep.Stale != 3 {
		t.Fatalf("kiosks %v, online %d offline %d stale %d", ids, rep.Online, rep.Offline, rep.Stale)
	}
	k10, k02, k03, k04 := rep.Kiosks[3], rep.Kiosks[0], rep.Kiosks[1], rep.Kiosks[2]
	if k10.State != "online" || k10.Stale || k10.Version != "1.4.2" || k10.Board != "rpi4b" || *k10.UptimeS != 3600 ||
		k10.PowerMode != "battery" || *k10.BatteryPct != 42 || *k10.Outbox != 12 || *k10.Availability < 98.69 ||
		*k10.Availability > 98.71 || strings.Join(k10.DevicesDown, ",") != "scanner:offline" || !k10.LastSeen.Equal(now.Add(-30*time.Second)) {
		t.Fatalf("k10: %+v", k10)
	}
	if k02.State != "offline" || !k02.Stale || !k03.Stale || k03.State != "online" {
		t.Fatalf("k02 %+v\nk03 %+v", k02, k03)
	}
	if k04.State != "unknown" || len(k04.Errors) != 1 || !k04.Stale {
		t.Fatalf("k04: %+v", k04)
	}

	code, out, errs = cli("--broker", b.URL(), "fleet", "--stale", "2h")
	if code != 0 {
		t.Fatalf("fleet: %d %s", code, errs)
	}
	rows := lines(out)
	if len(rows) != 6 || !strings.HasPrefix(rows[0], "KIOSK") || !strings.HasPrefix(rows[1], "k02") || !strings.HasPrefix(rows[4], "k10") {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"online", "1h00m", "1.4.2", "battery", "42%", "98.7%", "scanner:offline", "30s ago"} {
		if !strings.Contains(rows[4], want) {
			t.Fatalf("k10's row lacks %q: %q", want, rows[4])
		}
	}
	if strings.Contains(rows[2], "STALE") || !strings.Contains(rows[3], "never STALE") || strings.Contains(out, "\x1b[") {
		t.Fatalf("with --stale 2h only k04 is stale, and no colour off a terminal:\n%s", out)
	}
	if rows[5] != "4 kiosks: 2 online, 1 offline, 1 stale" {
		t.Fatalf("summary %q", rows[5])
	}
	if code, _, _ := cli("fleet", "--broker", b.URL(), "extra"); code != 2 {
		t.Fatalf("fleet with an argument: %d", code)
	}
}

// fakeKiosk answers commands like kioskd: once per id, from memory after.
type fakeKiosk struct {
	mu   sync.Mutex
	seen map[string]telemetry.Result
	runs map[string]int // command name → times run
	args []json.RawMessage
}

func startFakeKiosk(t *testing.T, b interface{ URL() string }, id string) *fakeKiosk {
	t.Helper()
	k := &fakeKiosk{seen: map[string]telemetry.Result{}, runs: map[string]int{}}
	o := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetCleanSession(true)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	h := func(c mqtt.Client, m mqtt.Message) {
		cmd, err := telemetry.ParseCommand(m.Payload())
		k.mu.Lock()
		r, replay := k.seen[cmd.ID]
		switch {
		case replay:
			r.Replayed = true
		case err != nil:
			r = telemetry.Result{ID: cmd.ID, Error: err.Error()}
		case cmd.Cmd == "ping" || cmd.Cmd == "lights" || cmd.Cmd == "config":
			k.runs[cmd.Cmd]++
			k.args = append(k.args, cmd.Args)
			r = telemetry.Result{ID: cmd.ID, OK: true, Data: json.RawMessage(`{"pong":true}`)}
		default:
			r = telemetry.Result{ID: cmd.ID, Error: "unknown command " + cmd.Cmd}
		}
		r.Kiosk = id
		if !replay {
			k.seen[cmd.ID] = r
		}
		k.mu.Unlock()
		p, _ := json.Marshal(r)
		c.Publish(telemetry.Topic(id, telemetry.TopicCmdResult), 1, false, p)
	}
	for _, topic := range []string{telemetry.Topic(id, telemetry.TopicCmd), telemetry.TopicFleetCmd} {
		if tok := c.Subscribe(topic, 1, h); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	st, _ := json.Marshal(telemetry.Status{State: "online", TS: time.Now()})
	c.Publish(telemetry.Topic(id, telemetry.TopicStatus), 1, true, st).WaitTimeout(10 * time.Second)
	return k
}

func (k *fakeKiosk) ran(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.runs[name]
}

func TestCommand(t *testing.T) {
	b := broker(t)
	k1 := startFakeKiosk(t, b, "k1")
	k3 := startFakeKiosk(t, b, "k3")
	pub := client(t, b, "sim")
	// k2 says it is online but answers nothing; k4 is offline.
	publish(t, pub, telemetry.Topic("k2", telemetry.TopicStatus), true, telemetry.Status{State: "online", TS: time.Now()})
	publish(t, pub, telemetry.Topic("k4", telemetry.TopicStatus), true, telemetry.Status{State: "offline", TS: time.Now()})
	url := b.URL()

	code, out, errs := cli("cmd", "k1", "ping", "--broker", url, "--id", "c-1")
	if code != 0 || !strings.Contains(out, "k1") || !strings.Contains(out, `{"pong":true}`) || strings.Contains(out, "replayed") {
		t.Fatalf("ping k1: %d\n%s%s", code, out, errs)
	}
	// The same id again: answered from memory, not run twice.
	code, out, _ = cli("--json", "--broker", url, "cmd", "k1", "ping", "--id", "c-1")
	var rep cmdReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("%d %v\n%s", code, err, out)
	}
	if !rep.OK || len(rep.Answers) != 1 || !rep.Answers[0].Replayed || rep.ID != "c-1" || k1.ran("ping") != 1 {
		t.Fatalf("replay: %+v, ran %d", rep, k1.ran("ping"))
	}

	// To all: k1 and k3 answer, k2 (online) does not, k4 (offline) is not expected.
	code, out, _ = cli("--json", "--broker", url, "cmd", "all", "ping", "--timeout", "1s")
	rep = cmdReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err, out)
	}
	if code != 1 || rep.OK || strings.Join(rep.Expected, ",") != "k1,k2,k3" || strings.Join(rep.Missing, ",") != "k2" ||
		len(rep.Answers) != 2 || !rep.Answers[0].OK || rep.Answers[1].Kiosk != "k3" || len(rep.ID) != 16 {
		t.Fatalf("all: %d %+v", code, rep)
	}
	code, out, _ = cli("--broker", url, "cmd", "all", "ping", "--timeout", "1s")
	if code != 1 || !strings.Contains(out, "3 expected, 2 answered, 1 did not") || !strings.Contains(out, "no answer") {
		t.Fatalf("all, human: %d\n%s", code, out)
	}
	if k1.ran("ping") != 3 || k3.ran("ping") != 2 {
		t.Fatalf("pings run: k1 %d, k3 %d", k1.ran("ping"), k3.ran("ping"))
	}

	// Arguments: JSON where they parse, strings else, files with @.
	dir := t.TempDir()
	desired := filepath.Join(dir, "desired.json")
	os.WriteFile(desired, []byte(`{"version": 3, "catalog": [{"sku": "CHAI"}]}`), 0o600)
	scene := filepath.Join(dir, "scene.json")
	os.WriteFile(scene, []byte(`{"r": 255}`), 0o600)
	if code, out, errs := cli("--broker", url, "cmd", "k1", "lights", "scene=night", "level=0.5", "on=true", "phone=03001234567", "rgb=@"+scene); code != 0 {
		t.Fatalf("lights: %d %s %s", code, out, errs)
	}
	if code, out, errs := cli("--broker", url, "cmd", "k1", "config", "@"+desired, "version=4"); code != 0 {
		t.Fatalf("config: %d %s %s", code, out, errs)
	}
	k1.mu.Lock()
	got := []string{string(k1.args[len(k1.args)-2]), string(k1.args[len(k1.args)-1])}
	k1.mu.Unlock()
	if got[0] != `{"level":0.5,"on":true,"phone":"03001234567","rgb":{"r":255},"scene":"night"}` ||
		got[1] != `{"catalog":[{"sku":"CHAI"}],"version":4}` {
		t.Fatalf("args sent: %s", got)
	}

	// An error answer and a kiosk that never answers both exit 1.
	if code, out, _ := cli("--broker", url, "cmd", "k1", "dance"); code != 1 || !strings.Contains(out, "unknown command dance") {
		t.Fatalf("unknown command: %d %s", code, out)
	}
	if code, out, _ := cli("--broker", url, "cmd", "k2", "ping", "--timeout", "200ms"); code != 1 || !strings.Contains(out, "no answer") {
		t.Fatalf("silent kiosk: %d %s", code, out)
	}

	for _, args := range [][]string{
		{"cmd", "k1"},
		{"cmd", "k1", "ping", "novalue"},
		{"cmd", "k1", "ping", "x=@" + filepath.Join(dir, "missing.json")},
		{"cmd", "k1", "ping", "@" + desired + "x"},
		{"cmd", "k/1", "ping"},
		{"cmd", "k1", "ping", "--timeout", "0s"},
		{"cmd", "k1", "ping", "--id", strings.Repeat("x", 200)},
		{"cmd", "k1", "ping", "--bogus"},
	} {
		if code, _, errs := cli(append(args, "--broker", url)...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, %q", args, code, errs)
		}
	}
}

func TestWatch(t *testing.T) {
	b := broker(t)
	pub := client(t, b, "sim")
	publish(t, pub, telemetry.Topic("k1", telemetry.TopicStatus), true, telemetry.Status{State: "online", TS: t0})
	w := startCLI(t, "watch", "k1", "--json", "--broker", b.URL())
	h := startCLI(t, "--broker", b.URL(), "watch")
	for _, c := range []*background{w, h} {
		eventually(t, "watch to subscribe", func() bool { return strings.Contains(c.err.String(), "watching") })
	}
	publish(t, pub, telemetry.Topic("k1", telemetry.TopicEvents), false, telemetry.Event{TS: t0, Type: "mains_lost"})
	publish(t, pub, telemetry.Topic("k2", telemetry.TopicEvents), false, "not json")
	publish(t, pub, telemetry.Topic("k1", telemetry.TopicSales), false, batch("k1", 1, 50))
	eventually(t, "3 lines of k1", func() bool { return len(lines(w.out.String())) >= 3 })
	eventually(t, "4 lines of everything", func() bool { return len(lines(h.out.String())) >= 4 })
	if code := w.stop(t); code != 0 {
		t.Fatalf("watch exited %d", code)
	}
	h.stop(t)

	var got []watchLine
	for _, l := range lines(w.out.String()) {
		var wl watchLine
		if err := json.Unmarshal([]byte(l), &wl); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		got = append(got, wl)
	}
	if len(got) != 3 || got[0].Topic != "status" || !got[0].Retained || got[1].Kiosk != "k1" || got[1].Topic != "events" ||
		string(got[2].Payload) != `{"count":50,"from_seq":1,"to_seq":50}` {
		t.Fatalf("watch k1 --json:\n%s", w.out.String())
	}
	out := h.out.String()
	if !strings.Contains(out, `k2  events  "not json"`) || !strings.Contains(out, `k1  status (retained)  {"state":"online"`) ||
		!strings.Contains(out, `"type":"mains_lost"`) || strings.Contains(out, "CHAI") {
		t.Fatalf("watch:\n%s", out)
	}
	if code, _, _ := cli("watch", "a", "b"); code != 2 {
		t.Fatal("watch with two ids")
	}
}

func TestArgsAndMoney(t *testing.T) {
	for in, want := range map[int64]string{0: "0.00", 5: "0.05", 12345: "123.45", -12345: "-123.45", 123456789: "1,234,567.89", 100000: "1,000.00"} {
		if got := money(in); got != want {
			t.Errorf("money(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{5 * time.Second: "5s", 90 * time.Second: "1m", 3*time.Hour + 5*time.Minute: "3h05m", 50 * time.Hour: "2d02h", -time.Second: "0s"} {
		if got := age(in); got != want {
			t.Errorf("age(%v) = %q, want %q", in, got, want)
		}
	}
	if a, err := commandArgs(nil); a != nil || err != nil {
		t.Fatalf("no args: %s %v", a, err)
	}
	if a, err := commandArgs([]string{"n=1", "n=2", `s="7"`, "e="}); err != nil || string(a) != `{"e":"","n":2,"s":"7"}` {
		t.Fatalf("%s %v", a, err)
	}
	for _, bad := range []string{"=1", "x", "@", "k=@"} {
		if _, err := commandArgs([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestColourKeepsColumns: on a terminal the table is coloured, and with
// the colour codes taken out it is the plain table, aligned the same.
func TestColourKeepsColumns(t *testing.T) {
	now := time.Now()
	up := int64(100)
	rep := fleetReport{At: now, Kiosks: []fleetRow{{Kiosk: "k1", State: "online", LastSeen: &now, UptimeS: &up},
		{Kiosk: "kiosk-long", State: "offline", Stale: true}, {Kiosk: "k3", State: "unknown", Stale: true}}}
	var plain, coloured bytes.Buffer
	(&globals{stdout: &plain}).printFleet(rep)
	(&globals{stdout: &coloured, color: true}).printFleet(rep)
	if !strings.Contains(coloured.String(), colRed+"offline"+colReset) || !strings.Contains(coloured.String(), colGreen+"online") {
		t.Fatalf("no colour:\n%q", coloured.String())
	}
	stripped := regexp.MustCompile("\x1b\\[[0-9]+m").ReplaceAllString(coloured.String(), "")
	if stripped != plain.String() {
		t.Fatalf("coloured table, uncoloured:\n%s\nplain:\n%s", stripped, plain.String())
	}
}
