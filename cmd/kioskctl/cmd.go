package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/microretail/kioskd/telemetry"
)

// cmdAnswer is one kiosk's result in `kioskctl cmd` output.
type cmdAnswer struct {
	Kiosk    string          `json:"kiosk"`
	OK       bool            `json:"ok"`
	Error    string          `json:"error,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	Replayed bool            `json:"replayed,omitempty"`
	Expected bool            `json:"expected"` // false: not in the expected set (its status was not online)
}

type cmdReport struct {
	ID       string      `json:"id"`
	Cmd      string      `json:"cmd"`
	Target   string      `json:"target"` // a kiosk id, or "all"
	Expected []string    `json:"expected"`
	Answers  []cmdAnswer `json:"answers"`
	Missing  []string    `json:"missing"` // expected kiosks that did not answer in time
	OK       bool        `json:"ok"`      // every expected kiosk answered ok
}

// answers collects the results that carry one correlation id, first
// answer per kiosk. Its handler never blocks.
type answers struct {
	id      string
	mu      sync.Mutex
	got     map[string]telemetry.Result
	order   []string
	arrived chan struct{}
}

func (a *answers) handle(_ mqtt.Client, m mqtt.Message) {
	kiosk, suffix, ok := telemetry.SplitTopic(m.Topic())
	if !ok || suffix != telemetry.TopicCmdResult {
		return
	}
	var r telemetry.Result
	if json.Unmarshal(m.Payload(), &r) != nil || r.ID != a.id {
		return
	}
	a.mu.Lock()
	if _, dup := a.got[kiosk]; !dup {
		a.got[kiosk] = r
		a.order = append(a.order, kiosk)
	}
	a.mu.Unlock()
	select {
	case a.arrived <- struct{}{}:
	default:
	}
}

// all reports whether every kiosk in want has answered.
func (a *answers) all(want []string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range want {
		if _, ok := a.got[k]; !ok {
			return false
		}
	}
	return true
}

func command(ctx context.Context, g *globals, args []string) int {
	fs := g.flags("cmd")
	timeout := fs.Duration("timeout", 10*time.Second, "wait at most `D` for the results")
	corr := fs.String("id", "", "correlation `id` (default: random); a kiosk answers an id it saw before from memory")
	limit := fs.Duration("wait", 3*time.Second, "with all: collect retained status for at most `D`")
	pos, ok := g.parse(fs, args)
	if !ok {
		return 2
	}
	if len(pos) < 2 {
		fmt.Fprintf(g.stderr, "kioskctl cmd: want a kiosk id (or all) and a command name\n%s", usage)
		return 2
	}
	target, name := pos[0], pos[1]
	if target != "all" && !validKioskID(target) {
		fmt.Fprintf(g.stderr, "kioskctl cmd: bad kiosk id %q\n", target)
		return 2
	}
	cmdArgs, err := commandArgs(pos[2:])
	if err != nil {
		fmt.Fprintf(g.stderr, "kioskctl cmd: %v\n", err)
		return 2
	}
	if *timeout <= 0 || *limit <= 0 {
		fmt.Fprintln(g.stderr, "kioskctl cmd: --timeout and --wait must be positive")
		return 2
	}
	id := *corr
	if id == "" {
		id = randomID()
	}
	payload, err := json.Marshal(telemetry.Command{ID: id, Cmd: name, Args: cmdArgs})
	if err == nil {
		_, err = telemetry.ParseCommand(payload) // what the kiosk will check
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "kioskctl cmd: %v\n", err)
		return 2
	}

	c, err := g.connect(ctx, session{clientID: "kioskctl-" + randomID(), clean: true})
	if err != nil {
		return g.fail("%v", err)
	}
	defer c.Disconnect(100)
	ans := &answers{id: id, got: map[string]telemetry.Result{}, arrived: make(chan struct{}, 1)}
	col := newCollector()
	sub, pub := telemetry.Topic(target, telemetry.TopicCmdResult), telemetry.Topic(target, telemetry.TopicCmd)
	if target == "all" {
		sub, pub = telemetry.Topic("+", telemetry.TopicCmdResult), telemetry.TopicFleetCmd
	}
	if err := subscribe(ctx, c, ans.handle, sub); err != nil {
		return g.fail("%v", err)
	}
	statusTopic := telemetry.Topic(target, telemetry.TopicStatus)
	if target == "all" {
		statusTopic = telemetry.Topic("+", telemetry.TopicStatus)
	}
	if err := subscribe(ctx, c, col.handle, statusTopic); err != nil {
		return g.fail("%v", err)
	}
	expected := []string{target}
	if target == "all" {
		col.settle(ctx, *limit)
		expected = col.online()
	}
	if err := wait(ctx, c.Publish(pub, 1, false, payload), 15*time.Second); err != nil {
		return g.fail("publish %s: %v", pub, err)
	}
	if len(expected) == 0 {
		fmt.Fprintln(g.stderr, "kioskctl cmd: no kiosk's retained status is online; sent anyway, but kiosks run clean sessions: an offline kiosk never sees it")
	} else {
		timer := time.NewTimer(*timeout)
	waiting:
		for !ans.all(expected) {
			select {
			case <-ans.arrived:
			case <-timer.C:
				break waiting
			case <-ctx.Done():
				break waiting
			}
		}
		timer.Stop()
	}

	rep := cmdReport{ID: id, Cmd: name, Target: target, Expected: expected, Answers: []cmdAnswer{}, Missing: []string{}}
	want := map[string]bool{}
	for _, k := range expected {
		want[k] = true
	}
	ans.mu.Lock()
	rep.OK = len(expected) > 0
	for _, k := range expected {
		if r, ok := ans.got[k]; !ok {
			rep.Missing = append(rep.Missing, k)
			rep.OK = false
		} else if !r.OK {
			rep.OK = false
		}
	}
	for _, k := range ans.order {
		r := ans.got[k]
		rep.Answers = append(rep.Answers, cmdAnswer{Kiosk: k, OK: r.OK, Error: r.Error, Data: r.Data, Replayed: r.Replayed, Expected: want[k]})
	}
	ans.mu.Unlock()
	sort.Slice(rep.Answers, func(i, j int) bool { return rep.Answers[i].Kiosk < rep.Answers[j].Kiosk })
	if g.json {
		if err := writeJSON(g.stdout, rep); err != nil {
			return g.fail("%v", err)
		}
	} else {
		g.printCommand(rep, col)
	}
	if !rep.OK {
		return 1
	}
	return 0
}

func (g *globals) printCommand(rep cmdReport, col *collector) {
	fmt.Fprintf(g.stdout, "%s (id %s) to %s: %d expected, %d answered, %d did not\n",
		rep.Cmd, rep.ID, rep.Target, len(rep.Expected), len(rep.Answers), len(rep.Missing))
	tw := newTable(g.stdout)
	fmt.Fprintln(tw, "KIOSK\t"+g.paint(colPlain, "RESULT")+"\tREPLAYED\tDETAIL")
	for _, a := range rep.Answers {
		res, colour, detail := "ok", colGreen, string(a.Data)
		if !a.OK {
			res, colour, detail = "error", colRed, a.Error
		}
		if !a.Expected {
			detail = strings.TrimSpace(detail + " (not expected: status not online)")
		}
		replayed := ""
		if a.Replayed {
			replayed = "replayed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Kiosk, g.paint(colour, res), replayed, detail)
	}
	col.mu.Lock()
	for _, k := range rep.Missing {
		detail := ""
		if s := col.kiosks[k]; s != nil && s.status != nil {
			detail = fmt.Sprintf("status %s since %s", s.status.State, s.status.TS.Format(time.RFC3339))
		}
		fmt.Fprintf(tw, "%s\t%s\t\t%s\n", k, g.paint(colRed, "no answer"), detail)
	}
	col.mu.Unlock()
	tw.Flush()
}

// commandArgs builds a command's args object from k=v, k=@FILE and @FILE
// arguments, later ones overriding earlier keys. v is taken as JSON when
// it parses as JSON (numbers, true/false, null, objects, arrays, quoted
// strings), else as a string. nil when there are none.
func commandArgs(list []string) (json.RawMessage, error) {
	if len(list) == 0 {
		return nil, nil
	}
	obj := map[string]json.RawMessage{}
	for _, a := range list {
		if file, ok := strings.CutPrefix(a, "@"); ok {
			raw, err := readJSONFile(file)
			if err != nil {
				return nil, err
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(raw, &m); err != nil || m == nil {
				return nil, fmt.Errorf("%s: the args file must hold a JSON object", file)
			}
			for k, v := range m {
				obj[k] = v
			}
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("argument %q: want key=value, key=@FILE or @FILE", a)
		}
		switch file, isFile := strings.CutPrefix(v, "@"); {
		case isFile:
			raw, err := readJSONFile(file)
			if err != nil {
				return nil, err
			}
			obj[k] = raw
		case json.Valid([]byte(v)):
			obj[k] = json.RawMessage(v)
		default:
			s, _ := json.Marshal(v)
			obj[k] = s
		}
	}
	return json.Marshal(obj)
}

func readJSONFile(name string) (json.RawMessage, error) {
	if name == "" {
		return nil, errors.New("@ needs a file name")
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s: not valid JSON", name)
	}
	return json.RawMessage(b), nil
}
