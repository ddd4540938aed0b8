package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/microretail/kioskd/telemetry"
)

// quietPeriod ends a collection of retained messages: the broker sends
// them right after the SUBACK, so once none has come for this long, they
// are all in.
const quietPeriod = 300 * time.Millisecond

// collector gathers the fleet's state from retained (and live) status and
// telemetry messages. Its handler only decodes and stores; it never blocks.
type collector struct {
	mu      sync.Mutex
	kiosks  map[string]*kioskState
	arrived chan struct{} // a message came; capacity 1
}

type kioskState struct {
	status *telemetry.Status
	health *telemetry.Health
	power  *telemetry.Power
	errs   []string // payloads that did not decode
}

func newCollector() *collector {
	return &collector{kiosks: map[string]*kioskState{}, arrived: make(chan struct{}, 1)}
}

func (c *collector) handle(_ mqtt.Client, m mqtt.Message) {
	kiosk, suffix, ok := telemetry.SplitTopic(m.Topic())
	if !ok || len(m.Payload()) == 0 { // an empty payload clears a retained message
		return
	}
	var (
		st  telemetry.Status
		h   telemetry.Health
		p   telemetry.Power
		err error
	)
	switch suffix {
	case telemetry.TopicStatus:
		err = json.Unmarshal(m.Payload(), &st)
	case telemetry.TopicHealth:
		err = json.Unmarshal(m.Payload(), &h)
	case telemetry.TopicPower:
		err = json.Unmarshal(m.Payload(), &p)
	default:
		return
	}
	c.mu.Lock()
	k := c.kiosks[kiosk]
	if k == nil {
		k = &kioskState{}
		c.kiosks[kiosk] = k
	}
	switch {
	case err != nil:
		k.errs = append(k.errs, fmt.Sprintf("%s: %v", suffix, err))
	case suffix == telemetry.TopicStatus:
		k.status = &st
	case suffix == telemetry.TopicHealth:
		k.health = &h
	default:
		k.power = &p
	}
	c.mu.Unlock()
	if !m.Retained() {
		// Live reports from a busy fleet never pause; only the burst of
		// retained messages after SUBACK is what settle waits out.
		return
	}
	select {
	case c.arrived <- struct{}{}:
	default:
	}
}

// settle returns once no retained message has come for quietPeriod, or after
// limit, or when ctx ends.
func (c *collector) settle(ctx context.Context, limit time.Duration) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	quiet := time.NewTimer(min(quietPeriod, limit))
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-quiet.C:
			return
		case <-c.arrived:
			quiet.Reset(quietPeriod)
		}
	}
}

// online lists the kiosks whose retained status says online, sorted.
func (c *collector) online() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id, k := range c.kiosks {
		if k.status != nil && k.status.State == "online" {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// fleetRow is one kiosk in `kioskctl fleet`. Fields the kiosk has not
// reported are null in JSON and "-" in the table.
type fleetRow struct {
	Kiosk        string     `json:"kiosk"`
	State        string     `json:"state"` // online, offline or unknown (no status)
	Since        *time.Time `json:"since,omitempty"`
	Reason       string     `json:"reason,omitempty"`
	Boot         *uint64    `json:"boot,omitempty"`
	Version      string     `json:"version,omitempty"`
	Board        string     `json:"board,omitempty"`
	UptimeS      *int64     `json:"uptime_s"`
	PowerMode    string     `json:"power_mode,omitempty"`
	Mains        *bool      `json:"mains"`
	BatteryPct   *float64   `json:"battery_pct"`
	Outbox       *uint64    `json:"outbox"`
	Availability *float64   `json:"availability_pct"`
	DevicesDown  []string   `json:"devices_down,omitempty"` // "name:state" for every device not ok
	LastSeen     *time.Time `json:"last_seen,omitempty"`
	Stale        bool       `json:"stale"`
	Errors       []string   `json:"errors,omitempty"`
}

type fleetReport struct {
	At      time.Time  `json:"at"`
	Kiosks  []fleetRow `json:"kiosks"`
	Online  int        `json:"online"`
	Offline int        `json:"offline"`
	Stale   int        `json:"stale"`
}

// rows turns what was collected into the table, sorted by kiosk id. A
// kiosk is stale when its newest message is older than stale.
func (c *collector) rows(now time.Time, stale time.Duration) fleetReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	rep := fleetReport{At: now, Kiosks: make([]fleetRow, 0, len(c.kiosks))}
	for id, k := range c.kiosks {
		r := fleetRow{Kiosk: id, State: "unknown", Errors: k.errs}
		var newest time.Time
		seen := func(t time.Time) {
			if t.After(newest) {
				newest = t
			}
		}
		if s := k.status; s != nil {
			r.State, r.Reason, r.Version, r.Board = s.State, s.Reason, s.Version, s.Board
			r.Boot = &s.Boot
			if !s.TS.IsZero() {
				r.Since = &s.TS
			}
			seen(s.TS)
		}
		if h := k.health; h != nil {
			r.UptimeS, r.Outbox = &h.UptimeS, &h.Outbox
			pct := h.CheckoutAvailability * 100
			r.Availability = &pct
			if r.Version == "" {
				r.Version = h.Version
			}
			for name, state := range h.Devices {
				if state != "ok" {
					r.DevicesDown = append(r.DevicesDown, name+":"+state)
				}
			}
			sort.Strings(r.DevicesDown)
			seen(h.TS)
		}
		if p := k.power; p != nil {
			r.PowerMode, r.Mains = p.Mode, &p.Mains
			if p.Battery != nil {
				r.BatteryPct = &p.Battery.SoC
			}
			seen(p.TS)
		}
		if !newest.IsZero() {
			r.LastSeen = &newest
		}
		if r.State == "offline" && r.Reason == "" && r.Since != nil && newest.After(*r.Since) {
			// A Last Will carries the time the kiosk started its session, not the
			// time the kiosk went silent: it was offline since last heard.
			r.Since = &newest
		}
		r.Stale = newest.IsZero() || now.Sub(newest) > stale
		switch r.State {
		case "online":
			rep.Online++
		case "offline":
			rep.Offline++
		}
		if r.Stale {
			rep.Stale++
		}
		rep.Kiosks = append(rep.Kiosks, r)
	}
	sort.Slice(rep.Kiosks, func(i, j int) bool { return rep.Kiosks[i].Kiosk < rep.Kiosks[j].Kiosk })
	return rep
}

func fleet(ctx context.Context, g *globals, args []string) int {
	fs := g.flags("fleet")
	limit := fs.Duration("wait", 3*time.Second, "collect retained messages for at most `D`")
	stale := fs.Duration("stale", 15*time.Minute, "flag kiosks whose newest message is older than `D`")
	pos, ok := g.parse(fs, args)
	if !ok {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(g.stderr, "kioskctl fleet: unexpected argument %q\n%s", pos[0], usage)
		return 2
	}
	if *limit <= 0 || *stale <= 0 {
		fmt.Fprintln(g.stderr, "kioskctl fleet: --wait and --stale must be positive")
		return 2
	}
	col := newCollector()
	c, err := g.connect(ctx, session{clientID: "kioskctl-" + randomID(), clean: true})
	if err != nil {
		return g.fail("%v", err)
	}
	defer c.Disconnect(100)
	err = subscribe(ctx, c, col.handle, telemetry.Topic("+", telemetry.TopicStatus),
		telemetry.Topic("+", telemetry.TopicHealth), telemetry.Topic("+", telemetry.TopicPower))
	if err != nil {
		return g.fail("%v", err)
	}
	col.settle(ctx, *limit)
	rep := col.rows(clock(), *stale)
	if g.json {
		if err := writeJSON(g.stdout, rep); err != nil {
			return g.fail("%v", err)
		}
		return 0
	}
	g.printFleet(rep)
	return 0
}

func (g *globals) printFleet(rep fleetReport) {
	tw := newTable(g.stdout)
	fmt.Fprintln(tw, "KIOSK\t"+g.paint(colPlain, "STATE")+"\tSINCE\tVERSION\tBOARD\tUPTIME\tPOWER\tBATT\tOUTBOX\tAVAIL\tDEVICES\tLAST SEEN")
	for _, r := range rep.Kiosks {
		state := r.State
		colour := colAmber
		switch r.State {
		case "online":
			colour = colGreen
		case "offline":
			colour = colRed
		}
		since := "-"
		if r.Since != nil {
			since = age(rep.At.Sub(*r.Since))
			if r.Reason != "" {
				since += " (" + r.Reason + ")"
			}
		}
		uptime, batt, outbox, avail := "-", "-", "-", "-"
		if r.UptimeS != nil {
			uptime = age(time.Duration(*r.UptimeS) * time.Second)
		}
		if r.BatteryPct != nil {
			batt = fmt.Sprintf("%.0f%%", *r.BatteryPct)
		}
		if r.Outbox != nil {
			outbox = fmt.Sprint(*r.Outbox)
		}
		if r.Availability != nil {
			avail = fmt.Sprintf("%.1f%%", *r.Availability)
		}
		devices := "-"
		if r.UptimeS != nil {
			devices = "ok"
		}
		if len(r.DevicesDown) > 0 {
			devices = strings.Join(r.DevicesDown, ",")
		}
		last := "never"
		if r.LastSeen != nil {
			last = age(rep.At.Sub(*r.LastSeen)) + " ago"
		}
		if r.Stale {
			last = g.paint(colRed, last+" STALE")
		} else {
			last = g.paint(colPlain, last)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Kiosk, g.paint(colour, state), since,
			orDash(r.Version), orDash(r.Board), uptime, orDash(r.PowerMode), batt, outbox, avail, devices, last)
	}
	tw.Flush()
	fmt.Fprintf(g.stdout, "%d kiosks: %d online, %d offline, %d stale\n", len(rep.Kiosks), rep.Online, rep.Offline, rep.Stale)
}
