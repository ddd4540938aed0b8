package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/telemetry"
)

// fleetSim is many kiosks' telemetry sessions in this one process.
type fleetSim struct {
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	sessions []*telemetry.Session
}

func newFleetSim() *fleetSim {
	f := &fleetSim{}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f
}

func kioskID(i int) string { return fmt.Sprintf("k%04d", i+1) }

// start creates and runs a session for each of ids (ledgers[i] may be
// nil), creating them concurrently: each New persists its boot counter.
func (f *fleetSim) start(b *broker, scratch string, ids []string, ledgers []*ledger.Ledger) error {
	ss := make([]*telemetry.Session, len(ids))
	err := each(len(ids), 32, func(i int) (err error) {
		o := telemetry.Options{
			Broker: b.url(), KioskID: ids[i], Version: "1.4.2", Board: "rpi4b",
			StateDir: filepath.Join(scratch, "fleet", ids[i]),
			Power:    func() telemetry.Power { return samplePower(i%10 == 3) },
			Devices:  sampleDevices, CanSell: func() bool { return true },
			Log: zerolog.Nop(),
		}
		if i < len(ledgers) && ledgers[i] != nil {
			o.Ledger = ledgers[i]
		}
		ss[i], err = telemetry.New(o)
		return err
	})
	if err != nil {
		return err
	}
	for _, s := range ss {
		f.sessions = append(f.sessions, s)
		f.wg.Add(1)
		go func() { defer f.wg.Done(); s.Run(f.ctx) }()
	}
	return nil
}

// stop ends every session and says each kiosk's goodbye, all at once.
func (f *fleetSim) stop() {
	f.cancel()
	f.wg.Wait()
	var wg sync.WaitGroup
	for _, s := range f.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s.Stop(ctx, "bench done")
		}()
	}
	wg.Wait()
}

// healthWatch counts the kiosks whose tele/health has arrived.
type healthWatch struct {
	c    paho.Client
	mu   sync.Mutex
	seen map[string]bool
}

func watchHealth(b *broker) (*healthWatch, error) {
	h := &healthWatch{seen: map[string]bool{}}
	c, err := dial(b, "bench-fleet-watch", nil)
	if err != nil {
		return nil, err
	}
	h.c = c
	err = await(c.Subscribe("kiosk/+/"+telemetry.TopicHealth, 0, func(_ paho.Client, m paho.Message) {
		if id, _, ok := telemetry.SplitTopic(m.Topic()); ok {
			h.mu.Lock()
			h.seen[id] = true
			h.mu.Unlock()
		}
	}))
	if err != nil {
		c.Disconnect(100)
		return nil, err
	}
	return h, nil
}

// count is how many of ids have reported health.
func (h *healthWatch) count(ids []string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, id := range ids {
		if h.seen[id] {
			n++
		}
	}
	return n
}

// fleetTimes are `kioskctl fleet` runs against the whole fleet.
type fleetTimes struct {
	json, human []time.Duration
	rows        int
}

// timeFleetRenders runs `kioskctl fleet --json` and the human table runs
// times each, alternating, and checks that every run lists exactly the
// kiosks ids, online.
func timeFleetRenders(bin string, b *broker, runs int, ids []string) (fleetTimes, error) {
	var ft fleetTimes
	for range runs {
		d, out, err := timeFleet(bin, b, "--json", "fleet")
		if err != nil {
			return ft, err
		}
		var rep struct {
			Kiosks []json.RawMessage `json:"kiosks"`
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			return ft, fmt.Errorf("kioskctl --json fleet: %w", err)
		}
		if len(rep.Kiosks) != len(ids) {
			return ft, fmt.Errorf("kioskctl --json fleet listed %d kiosks, want %d", len(rep.Kiosks), len(ids))
		}
		ft.json = append(ft.json, d)
		ft.rows = len(rep.Kiosks)

		d, out, err = timeFleet(bin, b, "fleet")
		if err != nil {
			return ft, err
		}
		// One row per kiosk, its id first and its state next.
		rows := map[string]bool{}
		for line := range bytes.Lines(out) {
			if f := strings.Fields(string(line)); len(f) > 1 && slices.Contains(ids, f[0]) && f[1] == "online" {
				rows[f[0]] = true
			}
		}
		if len(rows) != len(ids) {
			return ft, fmt.Errorf("kioskctl fleet printed %d of the %d kiosks as online rows:\n%.2000s", len(rows), len(ids), out)
		}
		ft.human = append(ft.human, d)
	}
	return ft, nil
}

// chatter publishes live telemetry at the rate a fleet of ids sends it at
// the default cadences: each kiosk's tele/power every 60 s (every 10 s for
// the ones on battery, as samplePower has them) and tele/health every
// 5 min, all sent here as power reports, QoS 0 and retained as a session
// sends them, spread evenly in time as a real fleet's are. (The simulated
// sessions all started together, so theirs come in bursts a minute apart.)
// It returns the rate and a func that stops it.
func chatter(b *broker, ids []string) (float64, func(), error) {
	c, err := dial(b, "bench-chatter", nil)
	if err != nil {
		return 0, nil, err
	}
	rate := 0.0
	for i := range ids {
		if i%10 == 3 {
			rate += 1.0 / 10
		} else {
			rate += 1.0 / 60
		}
		rate += 1.0 / 300
	}
	every := time.Duration(float64(time.Second) / rate)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			i := n % len(ids)
			p := samplePower(i%10 == 3)
			p.TS, p.Seq = time.Now().UTC(), uint64(n/len(ids)+1)
			payload, _ := json.Marshal(p)
			c.Publish(telemetry.Topic(ids[i], telemetry.TopicPower), 0, true, payload)
		}
	}()
	return rate, func() { close(done); <-stopped; c.Disconnect(100) }, nil
}

// clearRetained removes what earlier parts of the run left retained for
// kiosks (status and telemetry), so that the fleet table lists the
// simulated fleet alone.
func clearRetained(b *broker, kiosks ...string) error {
	c, err := dial(b, "bench-clear", nil)
	if err != nil {
		return err
	}
	defer c.Disconnect(100)
	for _, k := range kiosks {
		for _, suffix := range []string{telemetry.TopicStatus, telemetry.TopicPower, telemetry.TopicHealth} {
			if err := await(c.Publish(telemetry.Topic(k, suffix), 1, true, []byte{})); err != nil {
				return err
			}
		}
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
