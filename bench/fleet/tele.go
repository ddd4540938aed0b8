package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/telemetry"
)

// The telemetry a kiosk sends in a day at the default cadences
// (telemetry.Options: power every 60 s on mains and 10 s on battery,
// health every 5 min), and paho's keepalive of 30 s: with nothing coming
// back for QoS 0 telemetry, paho pings whenever 30 s pass without a packet
// received, so up to one PINGREQ and PINGRESP (2 bytes each) every 30 s.
const (
	day             = 24 * time.Hour
	powerPerDay     = int(day / (60 * time.Second))
	batteryPerDay   = int(day / (10 * time.Second))
	healthPerDay    = int(day / (5 * time.Minute))
	pingsPerDay     = int(day / (30 * time.Second))
	pingBytes       = 2 + 2
	wireOverhead    = 52 + 22 + 52 // per MQTT packet: IPv4+TCP (timestamps) and TLS 1.3 record headers, and the peer's bare ACK
	tlsHandshakeEst = 6000         // a TLS 1.3 handshake with a client certificate chain, both ways
)

// The digits the counters in a report gain over a day that a short run
// does not reach: power's seq to 4 digits, health's seq to 3 and
// uptime_s to 5. Added to each report's measured size as an allowance.
const (
	powerGrowth  = 4
	healthGrowth = 3 + 5
)

// teleKind is what the subscriber saw of one topic.
type teleKind struct {
	n, bytes int
}

func (k teleKind) mean() float64 {
	if k.n == 0 {
		return 0
	}
	return float64(k.bytes) / float64(k.n)
}

// teleResult is one kiosk's telemetry measured over a run, and its day.
type teleResult struct {
	kiosk      string
	kinds      map[string]teleKind // by topic suffix
	wire       int64               // MQTT bytes both ways through the proxy, the whole run
	published  int64               // of which PUBLISH packets from the kiosk
	setup      int64               // the rest: CONNECT, SUBSCRIBE, acks, DISCONNECT
	perDay     int                 // MQTT bytes a day at the default cadences
	wirePerDay int                 // the same with TCP/IP and TLS framing, estimated
}

// publishSize is the size of the PUBLISH packet that carried m: the fixed
// header (1 byte and the remaining length's 1–4), the topic (2-byte length
// and the name), a packet id at QoS 1 and 2, and the payload.
func publishSize(topic string, qos byte, payload int) int {
	rest := 2 + len(topic) + payload
	if qos > 0 {
		rest += 2
	}
	n := 1 + 1
	for v := rest; v >= 128; v >>= 7 {
		n++
	}
	return n + rest
}

// telemetryDay runs two kiosks side by side for run, one on mains and
// one on battery the whole time, each with five devices and the till up,
// reporting power every second and health every 5 s (the defaults' 1:5
// ratio; the session's reporter ticks once a second, so nothing shorter is
// possible). A subscriber on kiosk/<id>/# sizes each PUBLISH; a proxy
// between each kiosk and the broker counts every byte both ways. The day
// is extrapolated from the mean size of each report.
func telemetryDay(b *broker, scratch string, run time.Duration) ([]teleResult, error) {
	kiosks := []struct {
		id      string
		battery bool
	}{{"tele-mains", false}, {"tele-battery", true}}
	var mu sync.Mutex
	res := make([]teleResult, len(kiosks))
	for i, k := range kiosks {
		res[i] = teleResult{kiosk: k.id, kinds: map[string]teleKind{}}
	}
	sub, err := dial(b, "bench-tele-sub", func(_ paho.Client, m paho.Message) {
		id, suffix, ok := telemetry.SplitTopic(m.Topic())
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range res {
			if res[i].kiosk == id {
				k := res[i].kinds[suffix]
				k.n++
				k.bytes += publishSize(m.Topic(), m.Qos(), len(m.Payload()))
				res[i].kinds[suffix] = k
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer sub.Disconnect(100)
	for _, k := range kiosks {
		if err := await(sub.Subscribe(telemetry.Topic(k.id, "#"), 1, nil)); err != nil {
			return nil, err
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sessions []*telemetry.Session
	var proxies []*proxy
	defer func() {
		for _, p := range proxies {
			p.close()
		}
	}()
	for _, k := range kiosks {
		p, err := startProxy(b.addr())
		if err != nil {
			cancel()
			return nil, err
		}
		proxies = append(proxies, p)
		s, err := telemetry.New(telemetry.Options{
			Broker: "tcp://" + p.addr(), KioskID: k.id, Version: "1.4.2", Board: "rpi4b",
			StateDir: filepath.Join(scratch, k.id),
			Power:    func() telemetry.Power { return samplePower(k.battery) },
			Devices:  sampleDevices, CanSell: func() bool { return true },
			PowerEvery: time.Second, BatteryPowerEvery: time.Second, HealthEvery: 5 * time.Second,
			Log: zerolog.Nop(),
		})
		if err != nil {
			cancel()
			return nil, err
		}
		sessions = append(sessions, s)
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	time.Sleep(run) // the run's length is the measurement, not a wait for something
	cancel()
	wg.Wait()
	var stops sync.WaitGroup
	for _, s := range sessions {
		stops.Add(1)
		go func() {
			defer stops.Done()
			stop, cancelStop := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancelStop()
			s.Stop(stop, "bench done")
		}()
	}
	stops.Wait()
	// The subscriber has every message once the proxy has seen the kiosk's
	// last byte and the broker has forwarded it: wait for the offline
	// status of each kiosk's clean stop.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		all := true
		for i := range res {
			all = all && res[i].kinds[telemetry.TopicStatus].n >= 2
		}
		mu.Unlock()
		if all {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("telemetry: the kiosks' offline status never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range res {
		proxies[i].close()
		r := &res[i]
		r.wire = proxies[i].up.Load() + proxies[i].down.Load()
		for _, k := range r.kinds {
			r.published += int64(k.bytes)
		}
		r.setup = r.wire - r.published
		power := r.kinds[telemetry.TopicPower]
		health := r.kinds[telemetry.TopicHealth]
		if power.n == 0 || health.n == 0 {
			return nil, fmt.Errorf("telemetry: %s sent %d power and %d health reports in %v", r.kiosk, power.n, health.n, run)
		}
		nPower := powerPerDay
		if kiosks[i].battery {
			nPower = batteryPerDay
		}
		// The setup (connect, subscribe, birth's ack, goodbye) and the
		// birth and goodbye statuses happen once a day or so; a kiosk
		// that reconnects more often pays them again.
		once := int(r.setup) + r.kinds[telemetry.TopicStatus].bytes
		r.perDay = once + nPower*(int(power.mean()+0.5)+powerGrowth) +
			healthPerDay*(int(health.mean()+0.5)+healthGrowth) + pingsPerDay*pingBytes
		packets := nPower + healthPerDay + 2*pingsPerDay
		r.wirePerDay = r.perDay + packets*wireOverhead + tlsHandshakeEst
	}
	return res, nil
}

// samplePower is a kiosk's power report: on mains with the battery full,
// or on battery part way down.
func samplePower(onBattery bool) telemetry.Power {
	if onBattery {
		return telemetry.Power{Mains: false, Mode: "battery",
			Battery: &telemetry.Battery{Volts: 12.41, Amps: -2.137, SoC: 63.5, RuntimeS: 9120}}
	}
	return telemetry.Power{Mains: true, Mode: "mains",
		Battery: &telemetry.Battery{Volts: 13.62, Amps: 0.412, SoC: 100, RuntimeS: 0}}
}

// sampleDevices are the five devices of a full kiosk, all well.
func sampleDevices() map[string]string {
	return map[string]string{"printer": "ok", "scanner": "ok", "nfc": "ok", "battery": "ok", "mains": "ok"}
}

// proxy forwards TCP connections to the broker and counts the bytes each
// way.
type proxy struct {
	ln       net.Listener
	target   string
	up, down atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(u, c, &p.up)
		go p.pipe(c, u, &p.down)
	}
}

func (p *proxy) pipe(dst, src net.Conn, n *atomic.Int64) {
	defer p.wg.Done()
	m, _ := io.Copy(dst, src)
	n.Add(m)
	// One side closed: close both, so the other pipe ends too.
	dst.Close()
	src.Close()
}

// close stops accepting and waits for the connections to end on their own,
// as they do once a kiosk disconnects: the pipe forwards the kiosk's last
// bytes (its DISCONNECT) before it closes the broker's side. Cutting them
// first would make the broker see a dropped client and send its will.
// Whatever is still open after a few seconds is closed.
func (p *proxy) close() {
	p.ln.Close()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(5 * time.Second):
	}
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	<-done
}
