package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/microretail/kioskd/internal/mosquitto"
	"github.com/microretail/kioskd/telemetry"
)

// rolloutEvents is the order things happened in across the simulated
// kiosks: "cmd k02" when a kiosk got the command, "committed k01" just
// before it reports the commit.
type rolloutEvents struct {
	mu     sync.Mutex
	events []string
}

func (e *rolloutEvents) add(s string) {
	e.mu.Lock()
	e.events = append(e.events, s)
	e.mu.Unlock()
}

// at is the position of the first event s, or -1.
func (e *rolloutEvents) at(s string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, v := range e.events {
		if v == s {
			return i
		}
	}
	return -1
}

func (e *rolloutEvents) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.events, ", ")
}

// How a simulated kiosk takes an update.
const (
	simCommit   = "commit"   // downloading … trial → committed, and a birth with the new version
	simRollback = "rollback" // … trial → rolled_back
	simFail     = "fail"     // downloading → failed (before any switch)
	simRefuse   = "refuse"   // answers ok:false
	simStall    = "stall"    // answers, then stays installing
	simSilent   = "silent"   // subscribed, online, never answers
)

// simKiosk is a kiosk as the rollout sees it: a retained online status
// with its version, ota_install answered on cmd/result, and the job's
// states on the retained kiosk/<id>/ota.
type simKiosk struct {
	id, running, behave string
	c                   mqtt.Client
	events              *rolloutEvents

	mu   sync.Mutex
	cmds int
	jobs []string // the job ids it was sent
}

func startSimKiosk(t *testing.T, b *mosquitto.Broker, ev *rolloutEvents, id, running, behave string) *simKiosk {
	t.Helper()
	k := &simKiosk{id: id, running: running, behave: behave, events: ev}
	k.c = client(t, b, id)
	subscribeTest(t, k.c, telemetry.Topic(id, telemetry.TopicCmd), func(_ mqtt.Client, m mqtt.Message) {
		cmd, err := telemetry.ParseCommand(m.Payload())
		if err != nil || cmd.Cmd != "ota_install" {
			return
		}
		go k.install(cmd) // never block paho's router
	})
	publish(t, k.c, telemetry.Topic(id, telemetry.TopicStatus), true,
		telemetry.Status{State: "online", Boot: 1, Version: running, Board: "rpi4b", TS: time.Now().UTC()})
	return k
}

func (k *simKiosk) commands() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cmds
}

// send publishes without a test to fail: it runs on the kiosk's own
// goroutine, which may outlive the test.
func (k *simKiosk) send(suffix string, retained bool, v any) {
	b, _ := json.Marshal(v)
	k.c.Publish(telemetry.Topic(k.id, suffix), 1, retained, b).WaitTimeout(5 * time.Second)
}

func (k *simKiosk) install(cmd telemetry.Command) {
	k.events.add("cmd " + k.id)
	var args struct {
		Envelope json.RawMessage `json:"envelope"`
		Job      string          `json:"job"`
	}
	err := json.Unmarshal(cmd.Args, &args)
	k.mu.Lock()
	k.cmds++
	first := k.cmds == 1
	k.jobs = append(k.jobs, args.Job)
	k.mu.Unlock()
	m, merr := envelopeManifest(args.Envelope, nil)
	switch {
	case k.behave == simSilent:
		return
	case err != nil || merr != nil:
		k.send(telemetry.TopicCmdResult, false, telemetry.Result{ID: cmd.ID, Error: fmt.Sprintf("bad args: %v %v", err, merr)})
		return
	case k.behave == simRefuse:
		k.send(telemetry.TopicCmdResult, false, telemetry.Result{ID: cmd.ID, Error: "ota: wrong board"})
		return
	case !first:
		k.send(telemetry.TopicCmdResult, false, telemetry.Result{ID: cmd.ID, OK: true, Replayed: true})
		return
	}
	version := m.Version.String()
	state := func(s string, progress float64, errText, running string) {
		time.Sleep(5 * time.Millisecond)
		k.send(telemetry.TopicOTA, true, telemetry.OTAStatus{TS: time.Now().UTC(), Job: args.Job, Version: version,
			State: s, Progress: progress, Error: errText, Running: running})
	}
	state("downloading", 0, "", k.running)
	k.send(telemetry.TopicCmdResult, false, telemetry.Result{ID: cmd.ID, OK: true, Kiosk: k.id,
		Data: json.RawMessage(fmt.Sprintf(`{"job":%q,"version":%q,"state":"downloading"}`, args.Job, version))})
	state("downloading", 50, "", k.running)
	if k.behave == simFail {
		state("failed", 50, "ota: sha256 mismatch", k.running)
		return
	}
	state("downloaded", 100, "", k.running)
	state("installing", 100, "", k.running)
	if k.behave == simStall {
		return
	}
	state("installed", 100, "", k.running)
	state("switching", 100, "", k.running)
	state("trial", 100, "", version)
	if k.behave == simRollback {
		state("rolled_back", 100, "trial failed: crash loop (3 boots)", k.running)
		return
	}
	k.events.add("committed " + k.id)
	state("committed", 100, "", version)
	k.send(telemetry.TopicStatus, true, telemetry.Status{State: "online", Boot: 2, Version: version, Board: "rpi4b", TS: time.Now().UTC()})
}

// rolloutFixture is a broker, a signed 1.4.0 release and simulated kiosks.
type rolloutFixture struct {
	b        *mosquitto.Broker
	envelope string
	events   *rolloutEvents
	kiosks   map[string]*simKiosk
}

// newRolloutFixture starts kiosks on 1.3.0 that take the update as behave
// says (commit when not named).
func newRolloutFixture(t *testing.T, ids []string, behave map[string]string) *rolloutFixture {
	t.Helper()
	f := &rolloutFixture{b: broker(t), envelope: newOTARelease(t).envelope, events: &rolloutEvents{}, kiosks: map[string]*simKiosk{}}
	for _, id := range ids {
		how := behave[id]
		if how == "" {
			how = simCommit
		}
		f.kiosks[id] = startSimKiosk(t, f.b, f.events, id, "1.3.0", how)
	}
	return f
}

func (f *rolloutFixture) rollout(args ...string) (int, string, string) {
	return cli(append([]string{"ota", "rollout", f.envelope, "--broker", f.b.URL(), "--wait", "2s", "--timeout", "20s"}, args...)...)
}

// sent lists the kiosks that got the command, sorted.
func (f *rolloutFixture) sent() []string {
	var ids []string
	for id, k := range f.kiosks {
		if k.commands() > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func decodeRollout(t *testing.T, out string) rolloutReport {
	t.Helper()
	var rep rolloutReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return rep
}

// states is "id:state" for every kiosk of the report, wave by wave.
func (r rolloutReport) states() string {
	var waves []string
	for _, w := range r.Waves {
		var ks []string
		for _, k := range w.Kiosks {
			ks = append(ks, k.ID+":"+k.State)
		}
		waves = append(waves, strings.Join(ks, ","))
	}
	return strings.Join(waves, " | ")
}

// TestRolloutCanaryThenWaves: the canary commits before anything else is
// sent, each wave commits before the next is sent, and every kiosk gets
// the command once, with the one job id.
func TestRolloutCanaryThenWaves(t *testing.T) {
	f := newRolloutFixture(t, []string{"k01", "k02", "k03", "k04", "k05"}, nil)
	code, out, errs := f.rollout("--all", "--canary-count", "1", "--wave-size", "2", "--job", "rel-140")
	if code != 0 {
		t.Fatalf("rollout: %d\n%s%s", code, out, errs)
	}
	ev := f.events
	after := func(first []string, then []string) {
		t.Helper()
		last := -1
		for _, id := range first {
			i := ev.at("committed " + id)
			if i < 0 {
				t.Fatalf("%s never committed: %s", id, ev)
			}
			last = max(last, i)
		}
		for _, id := range then {
			if i := ev.at("cmd " + id); i < last {
				t.Fatalf("%s got the command (event %d) before %v committed (event %d): %s", id, i, first, last, ev)
			}
		}
	}
	after([]string{"k01"}, []string{"k02", "k03", "k04", "k05"})
	after([]string{"k02", "k03"}, []string{"k04", "k05"})
	for id, k := range f.kiosks {
		k.mu.Lock()
		jobs := strings.Join(k.jobs, ",")
		k.mu.Unlock()
		if jobs != "rel-140" {
			t.Errorf("%s was sent jobs %q", id, jobs)
		}
	}
	for _, want := range []string{
		"rollout rel-140: 1.4.0 to 5 kiosks in 3 waves (the first is the canary: k01)",
		"wave 1/3 (canary): sending to 1 kiosk: k01",
		"  k01 committed",
		"wave 1/3 (canary): 1 committed, 0 failed of 1 in",
		"wave 2/3: sending to 2 kiosks: k02, k03",
		"wave 3/3: 2 committed, 0 failed of 2 in",
		"rollout rel-140 of 1.4.0 to 5 kiosks: 5 committed, 0 already, 0 failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	rows := regexp.MustCompile(`(?m)^(k0\d)\s+(\S+( canary)?)\s+(\S+)\s+(\S+)\s+(\S+)$`).FindAllStringSubmatch(out, -1)
	var table []string
	for _, r := range rows {
		table = append(table, r[1]+" "+r[2]+" "+r[4]+" "+r[5])
	}
	if strings.Join(table, "; ") != "k01 1 canary committed 100%; k02 2 committed 100%; k03 2 committed 100%; k04 3 committed 100%; k05 3 committed 100%" {
		t.Fatalf("table %q:\n%s", table, out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Fatalf("colour off a terminal:\n%q", out)
	}
}

// TestRolloutCanaryRollsBack: a canary that rolls back halts the rollout;
// no other kiosk is sent anything.
func TestRolloutCanaryRollsBack(t *testing.T) {
	f := newRolloutFixture(t, []string{"k01", "k02", "k03", "k04"}, map[string]string{"k03": simRollback})
	code, out, errs := f.rollout("--kiosks", "k01,k02,k03", "--kiosks", "k04", "--canary", "k03", "--waves", "1")
	if code != 1 {
		t.Fatalf("rollout: %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"wave 1/2 (canary): sending to 1 kiosk: k03",
		"k03 rolled_back: trial failed: crash loop (3 boots)",
		"HALTED: 1 failure, more than --max-failures 0: k03 rolled_back (trial failed: crash loop (3 boots))",
		"rollout rollout-1.4.0-",
		"to 4 kiosks: 0 committed, 0 already, 1 failed, 3 not sent",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "wave 2/2") {
		t.Fatalf("the second wave started:\n%s", out)
	}
	time.Sleep(300 * time.Millisecond) // anything sent would have arrived
	if got := strings.Join(f.sent(), ","); got != "k03" {
		t.Fatalf("commands reached %s", got)
	}
}

// TestRolloutFailureRate: the rate counts failures against the kiosks sent
// the release; past it, in a later wave, the rollout halts.
func TestRolloutFailureRate(t *testing.T) {
	ids := []string{"k01", "k02", "k03", "k04", "k05", "k06"}
	f := newRolloutFixture(t, ids, map[string]string{"k04": simFail, "k05": simRefuse})
	code, out, errs := f.rollout("--all", "--json", "--wave-size", "2", "--max-failure-rate", "30")
	if code != 1 {
		t.Fatalf("rollout: %d\n%s%s", code, out, errs)
	}
	rep := decodeRollout(t, out)
	// 1 failure of 5 sent is 20%: on; 2 of 5 is 40%: halt before k06.
	if got := rep.states(); got != "k01:committed | k02:committed,k03:committed | k04:failed,k05:failed | k06:not_sent" {
		t.Fatalf("states %s", got)
	}
	if !rep.Halted || rep.Committed != 3 || rep.Failed != 2 || !rep.Waves[0].Canary || rep.Waves[1].Canary {
		t.Fatalf("report %+v", rep)
	}
	want := "2 of 5 kiosks sent the release failed (40%), above --max-failure-rate 30%: k04 failed (ota: sha256 mismatch); k05 failed (refused: ota: wrong board)"
	if rep.Reason != want {
		t.Fatalf("reason %q\nwant   %q", rep.Reason, want)
	}
	if e := rep.Waves[2].Kiosks[1].Error; e != "refused: ota: wrong board" {
		t.Fatalf("k05's error %q", e)
	}
	// Progress goes to stderr with --json.
	if !strings.Contains(errs, "wave 3/4: sending to 2 kiosks: k04, k05") || strings.Contains(errs, "wave 4/4") {
		t.Fatalf("stderr:\n%s", errs)
	}
	time.Sleep(300 * time.Millisecond)
	if got := strings.Join(f.sent(), ","); got != "k01,k02,k03,k04,k05" {
		t.Fatalf("commands reached %s", got)
	}
}

// TestRolloutSkipsAlready: kiosks that run the version, by their status or
// their latest job state, are skipped and reported; with --all, a kiosk of
// another board is left out.
func TestRolloutSkipsAlready(t *testing.T) {
	f := newRolloutFixture(t, []string{"k01", "k03"}, nil)
	ev := f.events
	f.kiosks["k02"] = startSimKiosk(t, f.b, ev, "k02", "v1.4.0", simCommit)
	k03 := f.kiosks["k03"]
	publish(t, k03.c, telemetry.Topic("k03", telemetry.TopicOTA), true,
		telemetry.OTAStatus{Job: "earlier", Version: "1.4.0", State: "committed", Progress: 100, Running: "1.4.0"})
	other := client(t, f.b, "k04")
	publish(t, other, telemetry.Topic("k04", telemetry.TopicStatus), true,
		telemetry.Status{State: "online", Version: "1.3.0", Board: "x86", TS: time.Now().UTC()})

	code, out, errs := f.rollout("--all", "--json")
	if code != 0 {
		t.Fatalf("rollout: %d\n%s%s", code, out, errs)
	}
	rep := decodeRollout(t, out)
	if rep.states() != "k01:committed" || strings.Join(rep.Already, ",") != "k02,k03" ||
		strings.Join(rep.OtherBoard, ",") != "k04" || rep.Committed != 1 || rep.Halted {
		t.Fatalf("report %s %+v", rep.states(), rep)
	}
	if got := strings.Join(f.sent(), ","); got != "k01" {
		t.Fatalf("commands reached %s", got)
	}

	// Every target on the version already: nothing to do, exit 0.
	code, out, errs = f.rollout("--kiosks", "k01,k02")
	if code != 0 || !strings.Contains(out, "already on 1.4.0: k01, k02") ||
		!strings.Contains(out, "to 2 kiosks: 0 committed, 2 already, 0 failed") {
		t.Fatalf("rollout again: %d\n%s%s", code, out, errs)
	}
	if f.kiosks["k01"].commands() != 1 {
		t.Fatalf("k01 got %d commands", f.kiosks["k01"].commands())
	}
}

// TestRolloutTimeouts: a kiosk that never answers (silent, or offline all
// along) and one that answers but never finishes are failures when their
// wave times out; under the threshold the rollout goes on but exits 1.
// The --json document has the documented shape.
func TestRolloutTimeouts(t *testing.T) {
	f := newRolloutFixture(t, []string{"k01", "k02", "k04"}, map[string]string{"k02": simSilent, "k04": simStall})
	pub := client(t, f.b, "sim")
	publish(t, pub, telemetry.Topic("k03", telemetry.TopicStatus), true,
		telemetry.Status{State: "offline", Version: "1.3.0", Board: "rpi4b", TS: time.Now().UTC()})

	code, out, errs := f.rollout("--all", "--json", "--canary", "k01", "--waves", "1", "--timeout", "1500ms", "--max-failures", "3")
	if code != 1 {
		t.Fatalf("rollout: %d\n%s%s", code, out, errs)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	if got := keys(doc); got != "already,committed,failed,halted,job,reason,version,waves" {
		t.Fatalf("keys %s\n%s", got, out)
	}
	waves := doc["waves"].([]any)
	wave := waves[1].(map[string]any)
	if got := keys(wave); got != "canary,kiosks" {
		t.Fatalf("wave keys %s", got)
	}
	if got := keys(wave["kiosks"].([]any)[0].(map[string]any)); got != "error,id,state" {
		t.Fatalf("kiosk keys %s", got)
	}
	if !strings.HasPrefix(doc["job"].(string), "rollout-1.4.0-") || doc["version"] != "1.4.0" || doc["halted"] != false ||
		doc["reason"] != "" || doc["committed"] != 1.0 || doc["failed"] != 3.0 {
		t.Fatalf("document %v", doc)
	}
	rep := decodeRollout(t, out)
	if got := rep.states(); got != "k01:committed | k02:no_answer,k03:no_answer,k04:timed_out" {
		t.Fatalf("states %s", got)
	}
	if e := rep.Waves[1].Kiosks[2].Error; e != "still installing after 1.5s" {
		t.Fatalf("k04's error %q", e)
	}
	if e := rep.Waves[1].Kiosks[0].Error; e != "no answer within 1.5s" {
		t.Fatalf("k02's error %q", e)
	}

	// A silent canary halts the rollout at the default threshold.
	code, out, errs = f.rollout("--kiosks", "k02,k04", "--canary", "k02", "--timeout", "500ms")
	if code != 1 || !strings.Contains(out, "HALTED: 1 failure, more than --max-failures 0: k02 no_answer (no answer within 500ms)") {
		t.Fatalf("silent canary: %d\n%s%s", code, out, errs)
	}
	time.Sleep(300 * time.Millisecond)
	if n := f.kiosks["k04"].commands(); n != 1 {
		t.Fatalf("k04 got %d commands", n)
	}
}

// TestRolloutResendsWhenOnline: a kiosk offline when its wave starts gets
// the command when it comes online during the wave, and commits.
func TestRolloutResendsWhenOnline(t *testing.T) {
	f := newRolloutFixture(t, []string{"k01"}, nil)
	pub := client(t, f.b, "sim")
	publish(t, pub, telemetry.Topic("k02", telemetry.TopicStatus), true,
		telemetry.Status{State: "offline", Version: "1.3.0", Board: "rpi4b", TS: time.Now().UTC()})
	run := startCLI(t, "ota", "rollout", f.envelope, "--broker", f.b.URL(), "--all", "--canary-count", "0", "--waves", "1", "--timeout", "20s")
	eventually(t, "the wave to start", func() bool { return strings.Contains(run.out.String(), "sending to 2 kiosks") })
	eventually(t, "k01 to commit", func() bool { return f.events.at("committed k01") >= 0 })
	k02 := startSimKiosk(t, f.b, f.events, "k02", "1.3.0", simCommit)
	select {
	case code := <-run.done:
		run.done <- code
		if code != 0 {
			t.Fatalf("rollout: %d\n%s%s", code, run.out.String(), run.err.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("rollout did not end:\n%s", run.out.String())
	}
	if k02.commands() != 1 || !strings.Contains(run.out.String(), "2 committed") {
		t.Fatalf("k02 got %d commands:\n%s", k02.commands(), run.out.String())
	}
}

func TestRolloutUsage(t *testing.T) {
	env := newOTARelease(t).envelope
	for _, args := range [][]string{
		{},
		{env, env, "--all"},
		{env},
		{env, "--all", "--kiosks", "k1"},
		{env, "--all", "--canary", "k1", "--canary-count", "2"},
		{env, "--all", "--wave-size", "2", "--waves", "2"},
		{env, "--all", "--max-failures", "1", "--max-failure-rate", "5"},
		{env, "--all", "--max-failure-rate", "101"},
		{env, "--all", "--max-failures", "-1"},
		{env, "--all", "--wave-size", "0"},
		{env, "--all", "--waves", "0"},
		{env, "--all", "--canary-count", "-1"},
		{env, "--all", "--timeout", "0s"},
		{env, "--all", "--job", "has space"},
		{env, "--kiosks", "k1,k/2"},
		{env, "--kiosks", "k1,k2", "--canary", "k3"},
		{env, "--all", "--canary", ","},
		{env, "--all", "--bogus"},
	} {
		if code, _, errs := cli(append([]string{"ota", "rollout", "--broker", "tcp://127.0.0.1:1"}, args...)...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, %q", args, code, errs)
		}
	}
	// Not an envelope: refused before connecting.
	for _, file := range []string{"/nonexistent/envelope.json", newOTARelease(t).artifact} {
		if code, _, errs := cli("ota", "rollout", file, "--all", "--broker", "tcp://127.0.0.1:1"); code != 1 || errs == "" {
			t.Errorf("%s: exit %d, %q", file, code, errs)
		}
	}
}

func TestRolloutPlan(t *testing.T) {
	ids := func(n int) []string {
		var out []string
		for i := 1; i <= n; i++ {
			out = append(out, fmt.Sprintf("k%02d", i))
		}
		return out
	}
	for _, tc := range []struct {
		name                          string
		update, canary                []string
		canaryCount, waveSize, nWaves int
		want                          string
		canaryWave                    bool
	}{
		{"count", ids(7), nil, 1, 0, 3, "k01 | k02,k03 | k04,k05 | k06,k07", true},
		{"uneven waves", ids(6), nil, 1, 0, 3, "k01 | k02,k03 | k04,k05 | k06", true},
		{"wave size", ids(6), nil, 2, 3, 0, "k01,k02 | k03,k04,k05 | k06", true},
		{"explicit canary", ids(5), []string{"k04", "k02"}, 0, 0, 1, "k02,k04 | k01,k03,k05", true},
		{"canary already updated", ids(3), []string{"k09"}, 0, 0, 1, "k01,k02,k03", false},
		{"no canary", ids(4), nil, 0, 2, 0, "k01,k02 | k03,k04", false},
		{"more waves than kiosks", ids(3), nil, 1, 0, 5, "k01 | k02 | k03", true},
		{"canary is everyone", ids(2), nil, 5, 0, 3, "k01,k02", true},
		{"nothing", nil, nil, 1, 0, 3, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := planRollout(tc.update, tc.canary, tc.canaryCount, tc.waveSize, tc.nWaves)
			var waves []string
			for _, w := range p.waves {
				waves = append(waves, strings.Join(w, ","))
			}
			if got := strings.Join(waves, " | "); got != tc.want || p.canary != tc.canaryWave {
				t.Fatalf("plan %q canary %v, want %q canary %v", got, p.canary, tc.want, tc.canaryWave)
			}
		})
	}
}

func TestRolloutThreshold(t *testing.T) {
	for _, tc := range []struct {
		th             threshold
		failures, sent int
		halt           bool
	}{
		{threshold{}, 0, 5, false},
		{threshold{}, 1, 5, true},
		{threshold{maxFailures: 2}, 2, 5, false},
		{threshold{maxFailures: 2}, 3, 5, true},
		{threshold{rate: true, ratePct: 30}, 1, 5, false},
		{threshold{rate: true, ratePct: 30}, 2, 5, true},
		{threshold{rate: true, ratePct: 20}, 1, 5, false}, // at the rate is not past it
		{threshold{rate: true, ratePct: 0}, 1, 100, true},
		{threshold{rate: true, ratePct: 100}, 5, 5, false},
		{threshold{rate: true, ratePct: 10}, 0, 0, false},
	} {
		why, halt := tc.th.passed(tc.failures, tc.sent)
		if halt != tc.halt || halt != (why != "") {
			t.Errorf("%+v with %d of %d: halt %v %q", tc.th, tc.failures, tc.sent, halt, why)
		}
	}
}

// TestRolloutProgressBar: on a terminal the wave's bar is redrawn in place
// and left on its own line when the wave ends; coloured, it keeps the
// same text.
func TestRolloutProgressBar(t *testing.T) {
	var buf bytes.Buffer
	p := &rolloutProgress{w: &buf, tty: true, now: time.Now}
	p.paint = func(c, s string) string { return s }
	p.begin(1, 3, false, []string{"k02", "k03", "k04", "k05"})
	tl := waveTally{total: 4, done: 1, committed: 1, fraction: 0.5,
		under: map[string]int{"downloading": 2, "trial": 1}}
	p.update(tl, 29*time.Minute)
	p.update(tl, 29*time.Minute) // unchanged: not drawn again
	tl.done, tl.committed, tl.failed, tl.fraction, tl.under = 4, 3, 1, 1, map[string]int{}
	p.end(tl, time.Minute)
	want := "\r\x1b[Kwave 2/3 [############------------]  50%  1/4 done: 1 committed, 2 downloading, 1 trial  (29m left)" +
		"\r\x1b[Kwave 2/3 [########################] 100%  4/4 done: 3 committed, 1 failed\n"
	if buf.String() != want {
		t.Fatalf("bar\n%q\nwant\n%q", buf.String(), want)
	}

	g := &globals{color: true}
	p.paint = func(c, s string) string { return g.paint(c, s) }
	coloured := p.bar(tl, -1)
	if !strings.Contains(coloured, colRed+"1 failed"+colReset) ||
		regexp.MustCompile("\x1b\\[[0-9]+m").ReplaceAllString(coloured, "") != strings.TrimSuffix(want[strings.LastIndex(want, "\x1b[K")+3:], "\n") {
		t.Fatalf("coloured %q", coloured)
	}
}

// TestRolloutTableColours: the final table keeps its columns in colour.
func TestRolloutTableColours(t *testing.T) {
	tr := newRolloutTracker("j", "c")
	tr.kiosks["k01"] = &rolloutKiosk{sent: true, state: "committed", progress: 100, final: true}
	tr.kiosks["kiosk-long"] = &rolloutKiosk{sent: true, state: "rolled_back", progress: 100, err: "crash loop", final: true}
	tr.kiosks["k03"] = &rolloutKiosk{state: rolloutPending}
	rep := rolloutReport{Job: "j", Version: "1.4.0", Already: []string{"k04"}, Committed: 1, Failed: 1, Halted: true, Reason: "why",
		Waves: []rolloutWave{{Canary: true, Kiosks: []rolloutResult{{"k01", "committed", ""}}},
			{Kiosks: []rolloutResult{{"kiosk-long", "rolled_back", "crash loop"}, {"k03", "not_sent", ""}}}}}
	var plain, coloured bytes.Buffer
	(&globals{stdout: &plain}).printRollout(rep, tr)
	(&globals{stdout: &coloured, color: true}).printRollout(rep, tr)
	stripped := regexp.MustCompile("\x1b\\[[0-9]+m").ReplaceAllString(coloured.String(), "")
	if stripped != plain.String() || !strings.Contains(coloured.String(), colRed+"rolled_back") {
		t.Fatalf("coloured:\n%s\nplain:\n%s", coloured.String(), plain.String())
	}
	want := []string{
		"KIOSK       WAVE      STATE        PROGRESS  ERROR",
		"k01         1 canary  committed    100%      -",
		"kiosk-long  2         rolled_back  100%      crash loop",
		"k03         2         not_sent     -         -",
		"k04         -         already      -         runs 1.4.0",
		"rollout j of 1.4.0 to 4 kiosks: 1 committed, 1 already, 1 failed, 1 not sent",
		"HALTED: why",
	}
	if got := lines(plain.String()); !reflect.DeepEqual(got, want) {
		t.Fatalf("table\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
