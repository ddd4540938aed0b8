package telemetry

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/microretail/kioskd/firmware/events"
)

// reportLoop publishes tele/power and tele/health at their cadences: power
// more often off mains, where the fleet watches the battery run down.
func (s *Session) reportLoop(ctx context.Context) {
	var nextPower, nextHealth time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.reportNow: // just connected: fresh rows for the fleet table
			nextPower, nextHealth = time.Time{}, time.Time{}
			s.publishOTA()
		case <-s.otaNow:
			s.publishOTA()
			continue
		case <-s.powerNow:
			nextPower = time.Time{}
		case <-tick.C:
		}
		now := s.o.Clock()
		if s.o.Power != nil {
			if p := s.o.Power(); p.Mains != s.powerMains.Load() || p.Mode != s.powerMode.Load() {
				// Mains came or went, or the power mode changed: the
				// fleet hears at once (and the cadence switches).
				nextPower = time.Time{}
			}
		}
		// Due times advance by the cadence from when they were due, not
		// from when the tick ran, so the reports do not drift a tick late.
		if s.o.Power != nil && !now.Before(nextPower) && s.publishPower() {
			every := s.o.PowerEvery
			if !s.powerMains.Load() {
				every = s.o.BatteryPowerEvery
			}
			nextPower = due(nextPower, now, every)
		}
		if !now.Before(nextHealth) && s.publishHealth() {
			nextHealth = due(nextHealth, now, s.o.HealthEvery)
		}
	}
}

// due is the next time a report is due after one due at last was sent at
// now: last+every, or now+every when that has already passed.
func due(last, now time.Time, every time.Duration) time.Time {
	if next := last.Add(every); next.After(now) {
		return next
	}
	return now.Add(every)
}

// SetOTA records the update job's status and publishes it on
// kiosk/<id>/ota (QoS 1, retained) now, or after the next connect. It
// never blocks.
func (s *Session) SetOTA(st OTAStatus) {
	if st.TS.IsZero() {
		st.TS = s.o.Clock().UTC()
	}
	s.ota.Store(&st)
	select {
	case s.otaNow <- struct{}{}:
	default:
	}
}

func (s *Session) publishOTA() {
	if st := s.ota.Load(); st != nil {
		_, _ = s.publish(TopicOTA, 1, true, st)
	}
}

// PowerChanged asks for a tele/power report at once, without waiting for
// the next tick: the power mode changed, and a mode that lasts less than
// a second (critical, on the way to shutdown) must still reach the fleet.
// It never blocks.
func (s *Session) PowerChanged() {
	select {
	case s.powerNow <- struct{}{}:
	default:
	}
}

// Report publishes both reports now, within ctx: the last word before a
// shutdown, so the fleet sees the mode and charge it ended on.
func (s *Session) Report(ctx context.Context) {
	_ = within(ctx, func() error {
		s.publishPower()
		s.publishHealth()
		return nil
	})
}

func (s *Session) publishPower() bool {
	if s.o.Power == nil {
		return false
	}
	p := s.o.Power()
	s.powerMains.Store(p.Mains)
	s.powerMode.Store(p.Mode)
	p.TS, p.Seq = s.o.Clock().UTC(), s.powerSeq.Add(1)
	_, err := s.publish(TopicPower, 0, true, p)
	return err == nil
}

func (s *Session) publishHealth() bool {
	_, err := s.publish(TopicHealth, 0, true, s.health())
	return err == nil
}

// health is the kiosk's health report as tele/health carries it.
func (s *Session) health() Health {
	now := s.o.Clock()
	if s.o.CanSell != nil {
		s.avail.Observe(s.o.CanSell(), now)
	}
	h := Health{
		TS: now.UTC(), Seq: s.healthSeq.Add(1), UptimeS: int64(now.Sub(s.start) / time.Second), Boot: s.boot,
		CheckoutAvailability: s.avail.Fraction(now), Version: s.o.Version,
		DiskFree: diskFree(s.o.StateDir), CPUTempC: cpuTemp(),
	}
	if s.o.Devices != nil {
		h.Devices = s.o.Devices()
	}
	if s.o.Ledger != nil {
		h.Outbox = s.o.Ledger.OutboxLen()
	}
	if s.o.Config != nil {
		h.Config = s.o.Config.Version()
	}
	return h
}

func diskFree(dir string) uint64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}

// cpuTemp reads the SoC temperature the Pi's thermal zone reports in
// millidegrees; nil where there is none.
func cpuTemp() *float64 {
	b, err := os.ReadFile("/sys/class/thermal/thermal_zone0/temp")
	if err != nil {
		return nil
	}
	m, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil
	}
	c := float64(m) / 1000
	return &c
}

// notable are the hub's events the fleet hears about; the rest (scans,
// cart edits, sales, which go by sales sync) stay on the counter.
var notable = map[string]bool{
	events.MainsLost: true, events.MainsRestored: true, events.PaperOut: true, events.PrinterStatus: true,
	events.DeviceOffline: true, events.DeviceDegraded: true, events.DeviceOK: true, events.Lights: true,
	events.Till: true, events.Power: true, events.MainsLine: true, events.Closing: true,
}

// maxPendingEvents bounds the events kept while offline; past it the
// oldest go, and the fleet is told how many.
const maxPendingEvents = 1000

// eventLoop forwards notable events at QoS 1, one at a time, each
// waiting for its PUBACK; while offline they queue (bounded) and go out
// after the reconnect.
func (s *Session) eventLoop(ctx context.Context) {
	if s.o.Events == nil {
		return
	}
	sub := s.o.Events.Subscribe(0, false, 256)
	defer s.o.Events.Unsubscribe(sub)
	var pending []Event
	dropped := 0
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C():
			if !ok {
				// Cut off for lagging: resubscribe and carry on; what
				// was missed is counted as dropped.
				s.o.Events.Unsubscribe(sub)
				sub = s.o.Events.Subscribe(0, false, 256)
				dropped++
				continue
			}
			if !notable[e.Type] {
				continue
			}
			data, _ := json.Marshal(e.Data)
			pending = append(pending, Event{TS: e.Time.UTC(), Type: e.Type, Data: data})
			if len(pending) > maxPendingEvents {
				dropped += len(pending) - maxPendingEvents
				pending = pending[len(pending)-maxPendingEvents:]
			}
		case <-retry.C:
		}
		if dropped > 0 && s.connected.Load() {
			data, _ := json.Marshal(map[string]int{"count": dropped})
			pending = append([]Event{{TS: s.o.Clock().UTC(), Type: "events_dropped", Data: data}}, pending...)
			dropped = 0
		}
		for len(pending) > 0 && s.connected.Load() {
			tok, err := s.publish(TopicEvents, 1, false, pending[0])
			if err == nil {
				err = waitToken(ctx, tok, 10*time.Second)
			}
			if err != nil {
				break
			}
			pending = pending[1:]
		}
	}
}

// availabilityLoop samples CanSell every second.
func (s *Session) availabilityLoop(ctx context.Context) {
	if s.o.CanSell == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.avail.Observe(s.o.CanSell(), s.o.Clock())
		}
	}
}

// Availability measures the fraction of uptime during which the till
// could take a sale. Each observation covers the time since the one
// before; time before the first observation counts as down, since the
// till was not yet up to sell.
type Availability struct {
	mu    sync.Mutex
	start time.Time
	last  time.Time
	up    time.Duration
}

// NewAvailability starts measuring at start.
func NewAvailability(start time.Time) *Availability {
	return &Availability{start: start, last: start}
}

// Observe records whether the till could sell at now, for the time
// since the last observation.
func (a *Availability) Observe(canSell bool, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !now.After(a.last) {
		return
	}
	if canSell {
		a.up += now.Sub(a.last)
	}
	a.last = now
}

// Fraction is up time over uptime up to the last observation, 0 to 1; 0
// before any time has passed.
func (a *Availability) Fraction(time.Time) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	total := a.last.Sub(a.start)
	if total <= 0 {
		return 0
	}
	return float64(a.up) / float64(total)
}

// atomicString is a string read and written from several goroutines.
type atomicString struct{ p atomic.Pointer[string] }

func (a *atomicString) Load() string {
	if p := a.p.Load(); p != nil {
		return *p
	}
	return ""
}

func (a *atomicString) Store(s string) { a.p.Store(&s) }
