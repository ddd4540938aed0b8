package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/mattn/go-isatty"
	"github.com/microretail/kioskd/ota"
	"github.com/microretail/kioskd/telemetry"
)

// rollout: `kioskctl ota rollout` sends one signed release to the fleet in
// stages. A canary group goes first; only when each of its kiosks has
// committed (passed its trial) does the rest follow, in waves, each wave
// waiting for its kiosks the same way. The rollout halts, sending nothing
// more, as soon as the failures pass the threshold.
//
// Every kiosk gets the same ota_install command ({"envelope", "job"}) on
// its own topic, with one correlation id for the whole run, and is then
// followed on its retained kiosk/<id>/ota. A kiosk's clean session means a
// command sent while it is offline is lost: one that comes online during
// its wave without having answered gets the command again (the kiosk
// answers a correlation id it saw before from memory).

// A kiosk's state in a rollout: the ota job states the kiosk reports
// (downloading … committed, rolled_back, failed), and the console's own.
const (
	rolloutPending   = "pending"   // its wave has not started
	rolloutSent      = "sent"      // the command went out; no answer yet
	rolloutAccepted  = "accepted"  // answered ok; no job state yet
	rolloutNoAnswer  = "no_answer" // never answered before its wave timed out
	rolloutTimedOut  = "timed_out" // answered, but did not finish before its wave timed out
	rolloutNotSent   = "not_sent"  // the rollout halted before its wave
	rolloutAlready   = "already"   // runs the release already: skipped
	rolloutCommitted = string(ota.StateCommitted)
	rolloutFailed    = string(ota.StateFailed) // also a refused command: nothing changed on the kiosk
	rolloutRolled    = string(ota.StateRolledBack)
)

// rolloutFailure reports whether a kiosk that ended in state counts
// against the threshold.
func rolloutFailure(state string) bool {
	switch state {
	case rolloutFailed, rolloutRolled, rolloutNoAnswer, rolloutTimedOut:
		return true
	}
	return false
}

// rolloutStages weighs how far along an unfinished kiosk is, for the
// progress bar; the download's own percentage fills its stage.
var rolloutStages = map[string]float64{
	rolloutSent: 0, rolloutAccepted: 0.02, string(ota.StateDownloading): 0.05,
	string(ota.StateDownloaded): 0.5, string(ota.StateInstalling): 0.55, string(ota.StateInstalled): 0.65,
	string(ota.StateSwitching): 0.7, string(ota.StateTrial): 0.8,
}

// rolloutOrder lists states in the order a kiosk goes through them, for
// the progress line's counts.
var rolloutOrder = []string{rolloutSent, rolloutAccepted, string(ota.StateDownloading), string(ota.StateDownloaded),
	string(ota.StateInstalling), string(ota.StateInstalled), string(ota.StateSwitching), string(ota.StateTrial)}

// rolloutReport is what `ota rollout --json` prints.
type rolloutReport struct {
	Job        string        `json:"job"`
	Version    string        `json:"version"`
	Waves      []rolloutWave `json:"waves"`
	Already    []string      `json:"already"`               // targets already running the version: skipped
	OtherBoard []string      `json:"other_board,omitempty"` // with --all: kiosks whose board the release is not for
	Committed  int           `json:"committed"`
	Failed     int           `json:"failed"` // failed, rolled back, refused, no answer or timed out
	Halted     bool          `json:"halted"`
	Reason     string        `json:"reason"` // why it halted
}

type rolloutWave struct {
	Canary bool            `json:"canary"`
	Kiosks []rolloutResult `json:"kiosks"`
}

type rolloutResult struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Error string `json:"error"`
}

// rolloutPlan is who gets the release, in which wave.
type rolloutPlan struct {
	waves  [][]string
	canary bool // waves[0] is the canary group
}

// planRollout splits the kiosks to update (sorted) into the canary group
// and the waves: the explicit canary ids, or the first canaryCount; the
// rest in waves of waveSize, or in waves equal waves.
func planRollout(update []string, canary []string, canaryCount, waveSize, waves int) rolloutPlan {
	var p rolloutPlan
	in := map[string]bool{}
	var first, rest []string
	if canary != nil {
		for _, id := range canary {
			in[id] = true
		}
		for _, id := range update {
			if in[id] {
				first = append(first, id)
			} else {
				rest = append(rest, id)
			}
		}
	} else {
		n := min(canaryCount, len(update))
		first, rest = update[:n], update[n:]
	}
	if len(first) > 0 {
		p.waves, p.canary = append(p.waves, first), true
	}
	if len(rest) == 0 {
		return p
	}
	size := waveSize
	if size <= 0 {
		size = (len(rest) + waves - 1) / max(waves, 1)
	}
	for len(rest) > 0 {
		n := min(size, len(rest))
		p.waves, rest = append(p.waves, rest[:n]), rest[n:]
	}
	return p
}

// threshold is when a rollout halts: more than maxFailures failures, or,
// with a rate, a failure rate above ratePct of the kiosks sent the release.
type threshold struct {
	maxFailures int
	ratePct     float64
	rate        bool
}

// passed reports whether failures out of sent kiosks pass the threshold,
// and says how.
func (t threshold) passed(failures, sent int) (string, bool) {
	if t.rate {
		if sent == 0 || float64(failures)*100 <= t.ratePct*float64(sent) {
			return "", false
		}
		return fmt.Sprintf("%d of %d kiosks sent the release failed (%.0f%%), above --max-failure-rate %g%%",
			failures, sent, float64(failures)*100/float64(sent), t.ratePct), true
	}
	if failures <= t.maxFailures {
		return "", false
	}
	return fmt.Sprintf("%d %s, more than --max-failures %d", failures, plural(failures, "failure", "failures"), t.maxFailures), true
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// rolloutKiosk is one target's progress. Guarded by rolloutTracker.mu.
type rolloutKiosk struct {
	sent     bool
	answered bool // a result, or a job state, came back
	state    string
	progress float64
	err      string
	final    bool
	resend   bool // send the command again: it came online unanswered, or the publish failed
	reported bool // the plain progress printed its outcome
}

// rolloutTracker follows the targets through the results and job states
// they publish. Its handler only decodes and stores; it never blocks.
type rolloutTracker struct {
	fleet   *collector // retained status, and the settle of the first collection
	job     string
	cmdID   string
	mu      sync.Mutex
	kiosks  map[string]*rolloutKiosk // the targets, once planned
	running map[string]string        // the version each kiosk's latest job state says it runs
	changed chan struct{}            // capacity 1
}

func newRolloutTracker(job, cmdID string) *rolloutTracker {
	return &rolloutTracker{fleet: newCollector(), job: job, cmdID: cmdID, kiosks: map[string]*rolloutKiosk{},
		running: map[string]string{}, changed: make(chan struct{}, 1)}
}

func (t *rolloutTracker) poke() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *rolloutTracker) handle(cl mqtt.Client, m mqtt.Message) {
	kiosk, suffix, ok := telemetry.SplitTopic(m.Topic())
	if !ok || len(m.Payload()) == 0 {
		return
	}
	switch suffix {
	case telemetry.TopicStatus:
		t.fleet.handle(cl, m)
		var st telemetry.Status
		if json.Unmarshal(m.Payload(), &st) != nil || st.State != "online" {
			return
		}
		t.mu.Lock()
		if k := t.kiosks[kiosk]; k != nil && k.sent && !k.answered && !k.final {
			k.resend = true
		}
		t.mu.Unlock()
		t.poke()
	case telemetry.TopicOTA:
		var st telemetry.OTAStatus
		if json.Unmarshal(m.Payload(), &st) != nil {
			return
		}
		t.mu.Lock()
		if st.Running != "" {
			t.running[kiosk] = st.Running
		}
		// A retained job state from before the command (a rerun with the
		// same --job) says nothing about this run.
		if k := t.kiosks[kiosk]; k != nil && k.sent && !k.final && st.Job == t.job && st.State != "" {
			k.answered, k.state, k.progress, k.err = true, st.State, st.Progress, st.Error
			switch st.State {
			case rolloutCommitted, rolloutFailed, rolloutRolled:
				k.final = true
			}
		}
		t.mu.Unlock()
		if m.Retained() {
			select {
			case t.fleet.arrived <- struct{}{}:
			default:
			}
		}
		t.poke()
	case telemetry.TopicCmdResult:
		var r telemetry.Result
		if json.Unmarshal(m.Payload(), &r) != nil || r.ID != t.cmdID {
			return
		}
		t.mu.Lock()
		if k := t.kiosks[kiosk]; k != nil && k.sent && !k.final {
			k.answered = true
			switch {
			case !r.OK:
				k.state, k.err, k.final = rolloutFailed, "refused: "+r.Error, true
			case k.state == rolloutSent:
				k.state = rolloutAccepted
			}
		}
		t.mu.Unlock()
		t.poke()
	}
}

// status is a kiosk's retained status, nil when it has none.
func (t *rolloutTracker) status(id string) *telemetry.Status {
	t.fleet.mu.Lock()
	defer t.fleet.mu.Unlock()
	if k := t.fleet.kiosks[id]; k != nil {
		return k.status
	}
	return nil
}

// withStatus lists the kiosks with a retained status, sorted.
func (t *rolloutTracker) withStatus() []string {
	t.fleet.mu.Lock()
	defer t.fleet.mu.Unlock()
	var ids []string
	for id, k := range t.fleet.kiosks {
		if k.status != nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// runs reports whether kiosk id runs version v, by its status or its
// latest job state.
func (t *rolloutTracker) runs(id string, v ota.Version) bool {
	t.mu.Lock()
	running := t.running[id]
	t.mu.Unlock()
	if sameVersion(running, v) {
		return true
	}
	st := t.status(id)
	return st != nil && sameVersion(st.Version, v)
}

// sameVersion reports whether s names exactly v (the same canonical form:
// "v1.4.0" is 1.4.0, but two builds past a tag differ by their commit).
func sameVersion(s string, v ota.Version) bool {
	if s == "" {
		return false
	}
	w, err := ota.ParseVersion(s)
	return err == nil && w.String() == v.String()
}

// start marks a wave's kiosks sent.
func (t *rolloutTracker) start(ids []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		k := t.kiosks[id]
		k.sent, k.state = true, rolloutSent
	}
}

// resends takes the kiosks of ids to send the command to again.
func (t *rolloutTracker) resends(ids []string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, id := range ids {
		if k := t.kiosks[id]; k.resend && !k.final {
			out = append(out, id)
		}
		t.kiosks[id].resend = false
	}
	return out
}

// retry marks kiosks whose command could not be published.
func (t *rolloutTracker) retry(id string) {
	t.mu.Lock()
	t.kiosks[id].resend = true
	t.mu.Unlock()
}

// expire ends the unfinished kiosks of a wave that ran out of time.
func (t *rolloutTracker) expire(ids []string, after time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		k := t.kiosks[id]
		if k.final {
			continue
		}
		k.final = true
		if !k.answered {
			k.state, k.err = rolloutNoAnswer, fmt.Sprintf("no answer within %s", after)
			continue
		}
		last := k.state
		if last == string(ota.StateDownloading) {
			last += fmt.Sprintf(" %.0f%%", k.progress)
		}
		if k.err != "" {
			last += ": " + k.err
		}
		k.state, k.err = rolloutTimedOut, fmt.Sprintf("still %s after %s", last, after)
	}
}

// waveTally is a wave's progress at one moment.
type waveTally struct {
	total, done int
	committed   int
	failed      int
	fraction    float64        // of the wave's work done, 0 to 1
	under       map[string]int // unfinished kiosks per state
	ended       []rolloutResult
}

// tally counts a wave's kiosks; ended lists those that finished since
// the last tally.
func (t *rolloutTracker) tally(ids []string) waveTally {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := waveTally{total: len(ids), under: map[string]int{}}
	var sum float64
	for _, id := range ids {
		k := t.kiosks[id]
		if k.final {
			w.done++
			sum++
			switch {
			case k.state == rolloutCommitted:
				w.committed++
			case rolloutFailure(k.state):
				w.failed++
			}
			if !k.reported {
				k.reported = true
				w.ended = append(w.ended, rolloutResult{ID: id, State: k.state, Error: k.err})
			}
			continue
		}
		w.under[k.state]++
		stage := rolloutStages[k.state]
		if k.state == string(ota.StateDownloading) {
			stage += 0.45 * min(max(k.progress, 0), 100) / 100
		}
		sum += stage
	}
	if len(ids) > 0 {
		w.fraction = sum / float64(len(ids))
	}
	return w
}

// failures counts the failed kiosks among those sent the release, and
// lists them.
func (t *rolloutTracker) failures() (failed []rolloutResult, sent int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, k := range t.kiosks {
		if !k.sent {
			continue
		}
		sent++
		if k.final && rolloutFailure(k.state) {
			failed = append(failed, rolloutResult{ID: id, State: k.state, Error: k.err})
		}
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].ID < failed[j].ID })
	return failed, sent
}

// result is a kiosk's row in the report.
func (t *rolloutTracker) result(id string) (rolloutResult, float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.kiosks[id]
	state := k.state
	if !k.sent {
		state = rolloutNotSent
	}
	return rolloutResult{ID: id, State: state, Error: k.err}, k.progress
}

// describeFailures is one line naming failed kiosks and why, the first
// few of them.
func describeFailures(failed []rolloutResult) string {
	const most = 10
	parts := make([]string, 0, min(len(failed), most))
	for i, f := range failed {
		if i == most {
			parts = append(parts, fmt.Sprintf("and %d more", len(failed)-most))
			break
		}
		s := f.ID + " " + f.State
		if f.Error != "" {
			s += " (" + f.Error + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// validJobID accepts what a kiosk takes as an update job id.
func validJobID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func otaRollout(ctx context.Context, g *globals, args []string) int {
	const name = "ota rollout"
	fs := g.flags(name)
	var kiosks, canary listFlag
	kiosks.split, canary.split = true, true
	fs.Var(&kiosks, "kiosks", "the kiosk `ids` to update, comma-separated or repeated")
	all := fs.Bool("all", false, "update every kiosk with a retained status, online or not")
	fs.Var(&canary, "canary", "the canary group's kiosk `ids`")
	canaryCount := fs.Int("canary-count", 1, "canary group: the first `N` targets by id")
	waveSize := fs.Int("wave-size", 0, "after the canary, waves of `N` kiosks")
	waves := fs.Int("waves", 3, "after the canary, `N` waves of equal size")
	maxFailures := fs.Int("max-failures", 0, "halt when more than `N` kiosks fail")
	maxRate := fs.Float64("max-failure-rate", 0, "halt when more than `PCT` percent of the kiosks sent the release fail")
	timeout := fs.Duration("timeout", 30*time.Minute, "wait at most `D` for each wave to commit")
	job := fs.String("job", "", "the update job `id` (default rollout-VERSION-UNIXTIME)")
	keys := fs.String("keys", "", "check the envelope's signatures against the *.pub keys in `dir` first")
	limit := fs.Duration("wait", 3*time.Second, "collect retained status for at most `D`")
	pos, ok := g.parse(fs, args)
	if !ok {
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, pair := range [][2]string{{"kiosks", "all"}, {"canary", "canary-count"}, {"wave-size", "waves"}, {"max-failures", "max-failure-rate"}} {
		if set[pair[0]] && set[pair[1]] {
			return g.badUsage(name, "--%s and --%s exclude each other", pair[0], pair[1])
		}
	}
	switch {
	case len(pos) != 1:
		return g.badUsage(name, "want one ENVELOPE file (what ota sign wrote)")
	case !*all && len(kiosks.vals) == 0:
		return g.badUsage(name, "give the kiosks: --kiosks ID,ID or --all")
	case set["canary"] && len(canary.vals) == 0:
		return g.badUsage(name, "--canary wants kiosk ids")
	case *canaryCount < 0:
		return g.badUsage(name, "--canary-count must not be negative")
	case set["wave-size"] && *waveSize < 1, *waves < 1:
		return g.badUsage(name, "--wave-size and --waves must be at least 1")
	case *maxFailures < 0, *maxRate < 0 || *maxRate > 100 || math.IsNaN(*maxRate):
		return g.badUsage(name, "--max-failures must not be negative, --max-failure-rate must be 0 to 100")
	case *timeout <= 0 || *limit <= 0:
		return g.badUsage(name, "--timeout and --wait must be positive")
	case *job != "" && !validJobID(*job):
		return g.badUsage(name, "bad --job %q: 1 to 128 printable ASCII characters without spaces", *job)
	}
	for _, id := range append(append([]string(nil), kiosks.vals...), canary.vals...) {
		if !validKioskID(id) {
			return g.badUsage(name, "bad kiosk id %q", id)
		}
	}
	if set["kiosks"] {
		for _, id := range canary.vals {
			if !contains(kiosks.vals, id) {
				return g.badUsage(name, "--canary %s is not among --kiosks", id)
			}
		}
	}
	limitBy := threshold{maxFailures: *maxFailures, ratePct: *maxRate, rate: set["max-failure-rate"]}

	env, m, _, code := g.release(name, pos[0], *keys)
	if code != 0 {
		return code
	}
	version := m.Version.String()
	if *job == "" {
		*job = fmt.Sprintf("rollout-%s-%d", version, clock().Unix())
	}
	// One correlation id for the run: a kiosk that sees the command twice
	// answers from memory. A rerun with the same --job is a new command.
	cmdID := *job
	if len(cmdID) > telemetry.MaxCommandID-9 {
		cmdID = cmdID[:telemetry.MaxCommandID-9]
	}
	cmdID += "." + randomID()[:8]
	cmdArgs, err := json.Marshal(struct {
		Envelope json.RawMessage `json:"envelope"`
		Job      string          `json:"job"`
	}{env, *job})
	var payload []byte
	if err == nil {
		payload, err = json.Marshal(telemetry.Command{ID: cmdID, Cmd: "ota_install", Args: cmdArgs})
	}
	if err == nil {
		_, err = telemetry.ParseCommand(payload) // what the kiosk will check
	}
	if err != nil {
		return g.fail("%s: %v", pos[0], err)
	}

	tr := newRolloutTracker(*job, cmdID)
	topics := []string{telemetry.Topic("+", telemetry.TopicStatus), telemetry.Topic("+", telemetry.TopicOTA),
		telemetry.Topic("+", telemetry.TopicCmdResult)}
	var connects atomic.Int64
	c, err := g.connect(ctx, session{clientID: "kioskctl-" + randomID(), clean: true,
		onConnect: func(c mqtt.Client) {
			if connects.Add(1) > 1 { // the first subscription is made (and checked) below
				filters := map[string]byte{}
				for _, t := range topics {
					filters[t] = 1
				}
				c.SubscribeMultiple(filters, tr.handle)
			}
		},
		onLost: func(err error) { fmt.Fprintf(g.stderr, "kioskctl %s: connection lost (%v), reconnecting\n", name, err) },
	})
	if err != nil {
		return g.fail("%v", err)
	}
	defer c.Disconnect(100)
	if err := subscribe(ctx, c, tr.handle, topics...); err != nil {
		return g.fail("%v", err)
	}
	tr.fleet.settle(ctx, *limit)
	if ctx.Err() != nil {
		return g.fail("interrupted")
	}

	// The targets, less those that run the release already.
	rep := rolloutReport{Job: *job, Version: version, Waves: []rolloutWave{}, Already: []string{}}
	targets := append([]string(nil), kiosks.vals...)
	if *all {
		targets = nil
		for _, id := range tr.withStatus() {
			if st := tr.status(id); st.Board != "" && !contains(m.Boards, st.Board) {
				rep.OtherBoard = append(rep.OtherBoard, id)
				continue
			}
			targets = append(targets, id)
		}
		switch {
		case len(targets) == 0 && len(rep.OtherBoard) == 0:
			return g.fail("no kiosk has a retained status on %s", g.broker)
		case len(targets) == 0:
			return g.fail("the release is for %s; no kiosk runs on one (%s: other boards)", strings.Join(m.Boards, ","), idList(rep.OtherBoard))
		}
		for _, id := range canary.vals {
			if !contains(targets, id) {
				return g.badUsage(name, "--canary %s is not a target (no retained status, or another board)", id)
			}
		}
	}
	sort.Strings(targets)
	targets = dedupe(targets)
	var update []string
	for _, id := range targets {
		if tr.runs(id, m.Version) {
			rep.Already = append(rep.Already, id)
		} else {
			update = append(update, id)
		}
	}
	var explicitCanary []string
	if set["canary"] {
		explicitCanary = canary.vals
	}
	plan := planRollout(update, explicitCanary, *canaryCount, *waveSize, *waves)
	tr.mu.Lock()
	for _, ids := range plan.waves {
		for _, id := range ids {
			tr.kiosks[id] = &rolloutKiosk{state: rolloutPending}
		}
	}
	tr.mu.Unlock()

	progressOut := g.stdout
	if g.json {
		progressOut = g.stderr
	}
	pr := newRolloutProgress(g, progressOut)
	pr.intro(rep, m, plan, set["canary"] && len(plan.waves) > 0 && !plan.canary)

	send := func(ids []string) {
		toks := make([]mqtt.Token, len(ids))
		for i, id := range ids {
			toks[i] = c.Publish(telemetry.Topic(id, telemetry.TopicCmd), 1, false, payload)
		}
		for i, tok := range toks {
			if err := wait(ctx, tok, 15*time.Second); err != nil {
				if ctx.Err() != nil {
					return
				}
				fmt.Fprintf(g.stderr, "kioskctl %s: send to %s: %v (trying again)\n", name, ids[i], err)
				tr.retry(ids[i])
			}
		}
	}

waves:
	for w, ids := range plan.waves {
		tr.start(ids)
		pr.begin(w, len(plan.waves), plan.canary && w == 0, ids)
		send(ids)
		deadline := time.NewTimer(*timeout)
		tick := time.NewTicker(time.Second)
		started := time.Now()
		for {
			if again := tr.resends(ids); len(again) > 0 {
				send(again)
			}
			tl := tr.tally(ids)
			pr.update(tl, *timeout-time.Since(started))
			failed, sent := tr.failures()
			if why, over := limitBy.passed(len(failed), sent); over && !rep.Halted {
				rep.Halted = true
				rep.Reason = why + ": " + describeFailures(failed)
			}
			if rep.Halted || tl.done == tl.total {
				pr.end(tl, time.Since(started))
				deadline.Stop()
				tick.Stop()
				if rep.Halted {
					break waves
				}
				break
			}
			select {
			case <-tr.changed:
			case <-tick.C:
			case <-deadline.C:
				tr.expire(ids, *timeout)
			case <-ctx.Done():
				rep.Halted, rep.Reason = true, "interrupted"
			}
		}
	}

	// The report.
	for w, ids := range plan.waves {
		wave := rolloutWave{Canary: plan.canary && w == 0, Kiosks: make([]rolloutResult, 0, len(ids))}
		for _, id := range ids {
			r, _ := tr.result(id)
			switch {
			case r.State == rolloutCommitted:
				rep.Committed++
			case rolloutFailure(r.State):
				rep.Failed++
			}
			wave.Kiosks = append(wave.Kiosks, r)
		}
		rep.Waves = append(rep.Waves, wave)
	}
	if g.json {
		if err := writeJSON(g.stdout, rep); err != nil {
			return g.fail("%v", err)
		}
	} else {
		g.printRollout(rep, tr)
	}
	if rep.Halted || rep.Committed+len(rep.Already) != len(targets) {
		return 1
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// dedupe drops repeats from a sorted list.
func dedupe(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// rolloutStateColour: green for committed (or already there), red for a
// failure, plain for a kiosk never sent the release, amber under way.
func rolloutStateColour(state string) string {
	switch {
	case state == rolloutCommitted || state == rolloutAlready:
		return colGreen
	case rolloutFailure(state):
		return colRed
	case state == rolloutNotSent:
		return colPlain
	}
	return colAmber
}

func (g *globals) printRollout(rep rolloutReport, tr *rolloutTracker) {
	tw := newTable(g.stdout)
	fmt.Fprintln(tw, "KIOSK\tWAVE\t"+g.paint(colPlain, "STATE")+"\tPROGRESS\tERROR")
	for w, wave := range rep.Waves {
		label := fmt.Sprint(w + 1)
		if wave.Canary {
			label += " canary"
		}
		for _, r := range wave.Kiosks {
			_, p := tr.result(r.ID)
			progress := "-"
			if r.State != rolloutNotSent && r.State != rolloutSent && r.State != rolloutAccepted && r.State != rolloutNoAnswer {
				progress = fmt.Sprintf("%.0f%%", p)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, label, g.paint(rolloutStateColour(r.State), r.State), progress, orDash(r.Error))
		}
	}
	for _, id := range rep.Already {
		fmt.Fprintf(tw, "%s\t-\t%s\t-\truns %s\n", id, g.paint(rolloutStateColour(rolloutAlready), rolloutAlready), rep.Version)
	}
	tw.Flush()
	targets := len(rep.Already)
	notSent := 0
	for _, w := range rep.Waves {
		targets += len(w.Kiosks)
		for _, r := range w.Kiosks {
			if r.State == rolloutNotSent {
				notSent++
			}
		}
	}
	fmt.Fprintf(g.stdout, "rollout %s of %s to %d %s: %d committed, %d already, %d failed",
		rep.Job, rep.Version, targets, plural(targets, "kiosk", "kiosks"), rep.Committed, len(rep.Already), rep.Failed)
	if notSent > 0 {
		fmt.Fprintf(g.stdout, ", %d not sent", notSent)
	}
	fmt.Fprintln(g.stdout)
	if len(rep.OtherBoard) > 0 {
		fmt.Fprintf(g.stdout, "left out (the release is not for their board): %s\n", strings.Join(rep.OtherBoard, ", "))
	}
	if rep.Halted {
		fmt.Fprintln(g.stdout, g.paint(colRed, "HALTED: "+rep.Reason))
	}
}

// rolloutProgress shows the waves as they go: on a terminal a bar per
// wave, redrawn in place; elsewhere (a log, a pipe) a line when a wave
// starts, one per kiosk as it finishes and one when the wave ends.
type rolloutProgress struct {
	w      io.Writer
	tty    bool
	colour bool
	paint  func(c, s string) string
	name   string // the wave's
	line   string // the bar as last drawn
	drawn  time.Time
	now    func() time.Time
}

func newRolloutProgress(g *globals, w io.Writer) *rolloutProgress {
	p := &rolloutProgress{w: w, now: time.Now}
	if f, ok := w.(*os.File); ok {
		p.tty = isatty.IsTerminal(f.Fd())
	}
	p.colour = p.tty && w == g.stdout && g.color
	p.paint = func(c, s string) string {
		if !p.colour {
			return s
		}
		return c + s + colReset
	}
	return p
}

// intro says what the rollout will do.
func (p *rolloutProgress) intro(rep rolloutReport, m ota.Manifest, plan rolloutPlan, canaryAlready bool) {
	n := 0
	for _, w := range plan.waves {
		n += len(w)
	}
	fmt.Fprintf(p.w, "rollout %s: %s to %d %s in %d %s", rep.Job, m.Version, n, plural(n, "kiosk", "kiosks"),
		len(plan.waves), plural(len(plan.waves), "wave", "waves"))
	if plan.canary {
		fmt.Fprintf(p.w, " (the first is the canary: %s)", idList(plan.waves[0]))
	}
	fmt.Fprintln(p.w)
	if len(rep.Already) > 0 {
		fmt.Fprintf(p.w, "already on %s: %s\n", m.Version, idList(rep.Already))
	}
	if canaryAlready {
		fmt.Fprintln(p.w, "the canary kiosks run the release already: no canary wave")
	}
}

// idList names up to ten kiosks.
func idList(ids []string) string {
	if len(ids) <= 10 {
		return strings.Join(ids, ", ")
	}
	return strings.Join(ids[:10], ", ") + fmt.Sprintf(" and %d more", len(ids)-10)
}

func waveName(w, of int, canary bool) string {
	s := fmt.Sprintf("wave %d/%d", w+1, of)
	if canary {
		s += " (canary)"
	}
	return s
}

func (p *rolloutProgress) begin(w, of int, canary bool, ids []string) {
	p.name, p.line, p.drawn = waveName(w, of, canary), "", time.Time{}
	if !p.tty {
		fmt.Fprintf(p.w, "%s: sending to %d %s: %s\n", p.name, len(ids), plural(len(ids), "kiosk", "kiosks"), idList(ids))
	}
}

// update redraws the bar, at most ten times a second, or prints the
// kiosks that finished.
func (p *rolloutProgress) update(tl waveTally, left time.Duration) {
	if !p.tty {
		for _, r := range tl.ended {
			s := "  " + r.ID + " " + r.State
			if r.Error != "" {
				s += ": " + r.Error
			}
			fmt.Fprintln(p.w, s)
		}
		return
	}
	line := p.bar(tl, left)
	if line == p.line || p.now().Sub(p.drawn) < 100*time.Millisecond {
		return
	}
	p.line, p.drawn = line, p.now()
	fmt.Fprint(p.w, "\r\x1b[K"+line)
}

// end closes a wave's progress; update has shown tl already.
func (p *rolloutProgress) end(tl waveTally, took time.Duration) {
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K"+p.bar(tl, -1)+"\n")
		return
	}
	took = took.Round(10 * time.Millisecond)
	if took >= time.Minute {
		took = took.Round(time.Second)
	}
	fmt.Fprintf(p.w, "%s: %d committed, %d failed of %d in %s\n", p.name, tl.committed, tl.failed, tl.total, took)
}

// bar is the progress line of a wave: its name, a bar of the work done,
// the counts, and the time left (none when left < 0).
func (p *rolloutProgress) bar(tl waveTally, left time.Duration) string {
	const width = 24
	filled := int(math.Round(tl.fraction * width))
	b := fmt.Sprintf("%s [%s%s] %3.0f%%  %d/%d done", p.name, strings.Repeat("#", filled), strings.Repeat("-", width-filled),
		tl.fraction*100, tl.done, tl.total)
	parts := []string{p.paint(colGreen, fmt.Sprintf("%d committed", tl.committed))}
	if tl.failed > 0 {
		parts = append(parts, p.paint(colRed, fmt.Sprintf("%d failed", tl.failed)))
	}
	for _, s := range rolloutOrder {
		if n := tl.under[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	b += ": " + strings.Join(parts, ", ")
	if left >= 0 {
		b += fmt.Sprintf("  (%s left)", age(left))
	}
	return b
}
