package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/internal/atomicfile"
	"github.com/microretail/kioskd/internal/wait"
)

// Ledger is what sales sync needs of the kiosk's ledger.
type Ledger interface {
	Head() uint64
	Acked() uint64
	OutboxLen() uint64
	Range(from uint64, limit int) ([]ledger.Entry, error)
	Ack(ctx context.Context, seq uint64) error
}

// Options configure a Session. Broker, KioskID and StateDir are required.
type Options struct {
	Broker   string // tcp://, ssl://, tls://, ws:// or wss://
	KioskID  string // the client id and the <id> of every topic
	Version  string
	Board    string
	TLS      TLSFiles
	Username string
	Password string

	// StateDir keeps what the session must remember across restarts:
	// the boot counter, the command memory and the fleet's desired config.
	StateDir string

	Ledger Ledger      // nil: no sales sync
	Events *events.Hub // notable events go out on kiosk/<id>/events

	// Power and Devices are sampled for tele/power and tele/health; nil
	// leaves the reporter or the field out. CanSell is sampled every
	// second to measure checkout availability.
	Power   func() Power
	Devices func() map[string]string
	CanSell func() bool

	PowerEvery        time.Duration // default 60 s on mains
	BatteryPowerEvery time.Duration // default 10 s off mains
	HealthEvery       time.Duration // default 5 min

	BatchMax   int           // entries per sales batch, default 500
	BatchBytes int           // bytes per sales batch, default 128 KiB
	AckTimeout time.Duration // resend unacknowledged batches after this, default 30 s

	Commands map[string]CommandFunc // by name; ping, sync_now and config are built in
	Config   *ConfigStore           // nil: the config command is refused

	// Started is when the process started, from which uptime and
	// checkout availability count; default: when New runs.
	Started time.Time

	// LastShutdown is the reason the previous boot gave for stopping, for
	// the birth message.
	LastShutdown string

	Log   zerolog.Logger
	Clock func() time.Time
}

func (o *Options) defaults() error {
	if o.Broker == "" || o.KioskID == "" || o.StateDir == "" {
		return errors.New("telemetry: broker, kiosk id and state dir are required")
	}
	if len(o.KioskID) > maxKioskIDBytes || strings.ContainsAny(o.KioskID, "/+#") {
		return fmt.Errorf("telemetry: kiosk id %q cannot name a topic level", o.KioskID)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Started.IsZero() {
		o.Started = o.Clock()
	}
	setDefault(&o.PowerEvery, 60*time.Second)
	setDefault(&o.BatteryPowerEvery, 10*time.Second)
	setDefault(&o.HealthEvery, 5*time.Minute)
	setDefault(&o.AckTimeout, 30*time.Second)
	if o.BatchMax <= 0 {
		o.BatchMax = 500
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 128 << 10
	}
	return nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Session is the kiosk's MQTT session. Offline is a normal state: nothing
// outside waits on it, and what must reach the fleet (sales, events) waits
// in the ledger or in a bounded queue until the broker is back.
type Session struct {
	o      Options
	log    zerolog.Logger
	client paho.Client
	boot   uint64
	start  time.Time

	connected atomic.Bool
	gen       atomic.Uint64 // bumped on every (re)connect
	lost      chan error    // the connection dropped
	setup     chan setupResult
	attempt   atomic.Uint64 // connection attempts, to match setup results
	wake      chan struct{} // sales sync has something to do
	reportNow chan struct{} // publish both reports at once
	powerNow  chan struct{} // publish tele/power at once
	otaNow    chan struct{} // publish the OTA status at once
	ota       atomic.Pointer[OTAStatus]
	cmds      chan paho.Message
	ackMax    atomic.Uint64 // the highest upto_seq the fleet has sent

	mu    sync.Mutex
	state string // connecting, connected, disconnected
	since time.Time
	err   string

	avail      *Availability
	memory     *memory
	stopped    atomic.Bool
	refusing   atomic.Bool  // a refusal is being published
	powerMains atomic.Bool  // the last power report said mains
	powerMode  atomicString // and this mode
	powerSeq   atomic.Uint64
	healthSeq  atomic.Uint64
}

// stateDirs under StateDir.
const (
	bootFile     = "boot"
	memoryFile   = "commands.json"
	shutdownFile = "shutdown"
)

// New prepares a session and counts this boot. It does not connect: Run does.
func New(o Options) (*Session, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	boot, err := countBoot(filepath.Join(o.StateDir, bootFile))
	if err != nil {
		return nil, err
	}
	mem, err := loadMemory(filepath.Join(o.StateDir, memoryFile), o.Clock)
	if err != nil {
		// Staying off the fleet would not make the memory come back; the
		// damaged file is kept aside for a look, and the kiosk goes on
		// with an empty memory.
		o.Log.Error().Err(err).Msg("command memory lost: commands sent before this boot may run again")
		mem = &memory{path: filepath.Join(o.StateDir, memoryFile), clock: o.Clock, seen: map[string]remembered{}}
	}
	if o.LastShutdown == "" {
		o.LastShutdown = lastShutdown(filepath.Join(o.StateDir, shutdownFile), boot)
	}
	tlsc, err := o.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	s := &Session{
		o: o, log: o.Log.With().Str("mqtt", o.Broker).Logger(), boot: boot, start: o.Started,
		lost: make(chan error, 1), setup: make(chan setupResult, 1), wake: make(chan struct{}, 1), reportNow: make(chan struct{}, 1), powerNow: make(chan struct{}, 1), otaNow: make(chan struct{}, 1), cmds: make(chan paho.Message, 64),
		state: "connecting", since: o.Clock(), avail: NewAvailability(o.Started), memory: mem,
	}
	s.powerMains.Store(true)
	will, _ := json.Marshal(Status{State: "offline", Boot: boot, Version: o.Version, Board: o.Board, TS: o.Clock().UTC()})
	po := paho.NewClientOptions().
		AddBroker(o.Broker).
		SetClientID(o.KioskID).
		SetUsername(o.Username).SetPassword(o.Password).
		SetProtocolVersion(4).   // MQTT 3.1.1 only: no silent second handshake as 3.1
		SetCleanSession(true).   // commands reach kiosks that are online; sales are resent from the ledger
		SetAutoReconnect(false). // Run reconnects, with backoff and jitter
		SetConnectRetry(false).
		SetConnectTimeout(10*time.Second).
		SetKeepAlive(30*time.Second).
		SetPingTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).
		SetOrderMatters(true). // handlers only hand messages on; they never block
		SetBinaryWill(Topic(o.KioskID, TopicStatus), will, 1, true).
		SetOnConnectHandler(s.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case s.lost <- err:
			default:
			}
		})
	if tlsc != nil {
		po.SetTLSConfig(tlsc)
	}
	s.client = paho.NewClient(po)
	return s, nil
}

// countBoot reads the boot counter, adds one and writes it back durably.
func countBoot(path string) (uint64, error) {
	var n uint64
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		n, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			// atomicfile never leaves a torn counter; garbage here is
			// outside damage, and must not keep the kiosk off the fleet.
			// Count again from 0: the birth's ts still orders boots.
			n = 0
		}
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("telemetry: boot counter: %w", err)
	}
	n++
	if err := atomicfile.Write(path, []byte(strconv.FormatUint(n, 10)+"\n"), 0o640); err != nil {
		return 0, fmt.Errorf("telemetry: boot counter: %w", err)
	}
	return n, nil
}

// lastShutdown reads the reason the previous boot recorded as it stopped,
// and removes it, so that a boot that ends without one (a crash, a power
// cut, SIGKILL) is reported as unclean by the next.
func lastShutdown(path string, boot uint64) string {
	b, err := os.ReadFile(path)
	_ = os.Remove(path)
	switch {
	case err == nil:
		return strings.TrimSpace(string(b))
	case boot > 1:
		return "unclean: the previous boot recorded no reason for stopping"
	}
	return ""
}

// Boot is this boot's number, counted across restarts.
func (s *Session) Boot() uint64 { return s.boot }

// Connected reports whether the session is up now.
func (s *Session) Connected() bool { return s.connected.Load() }

// State is the session as the till's status bar shows it.
func (s *Session) State() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]any{"state": s.state, "broker": s.o.Broker, "since": s.since.UTC().Format(time.RFC3339)}
	if s.err != "" && s.state != "connected" {
		m["error"] = s.err
	}
	if s.o.Ledger != nil {
		m["outbox"] = s.o.Ledger.OutboxLen()
	}
	return m
}

func (s *Session) setState(state string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != state {
		s.state, s.since = state, s.o.Clock()
	}
	s.err = ""
	if err != nil {
		s.err = err.Error()
	}
}

// Run keeps the session up until ctx ends, reconnecting with exponential
// backoff and jitter, and runs the reporters, the sales sync, the event
// forwarder and the command worker. It returns when ctx is done; call
// Stop after it to say goodbye.
func (s *Session) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, fn := range []func(context.Context){s.syncLoop, s.commandLoop, s.reportLoop, s.eventLoop, s.availabilityLoop} {
		wg.Add(1)
		go func() { defer wg.Done(); fn(ctx) }()
	}
	s.connectLoop(ctx)
	wg.Wait()
}

func (s *Session) connectLoop(ctx context.Context) {
	b := wait.Backoff{Min: time.Second, Max: 2 * time.Minute}
	retry := func(what string, err error) bool {
		s.connected.Store(false)
		s.setState("disconnected", err)
		d := b.Next()
		s.log.Warn().Err(err).Dur("retry_in", d).Msg(what)
		return wait.After(ctx, d)
	}
	for ctx.Err() == nil {
		// Whatever an earlier connection left behind is stale now; a
		// connection still open after a failure is closed first, so
		// Connect never meets "already connected".
		s.hangUp()
		drain(s.lost)
		drain(s.setup)
		attempt := s.attempt.Add(1)
		s.setState("connecting", nil)
		// paho bounds the handshake by its connect timeout; only ctx
		// cuts it shorter.
		tok := s.client.Connect()
		select {
		case <-ctx.Done():
			return
		case <-tok.Done():
		}
		if err := tok.Error(); err != nil {
			if !retry("mqtt connect failed", err) {
				return
			}
			continue
		}
		// onConnect subscribes and publishes the birth; wait for it, or
		// for the connection to drop meanwhile.
		var err error
	setup:
		for {
			select {
			case <-ctx.Done():
				return
			case err = <-s.lost:
				break setup
			case r := <-s.setup:
				if r.attempt == attempt {
					err = r.err
					break setup
				}
			case <-time.After(setupTimeout):
				err = errors.New("session setup timed out")
				break setup
			}
		}
		if err == nil && !s.client.IsConnectionOpen() {
			err = errors.New("connection closed during setup")
		}
		if err != nil {
			s.hangUp()
			if !retry("mqtt session setup failed", err) {
				return
			}
			continue
		}
		b.Reset()
		s.gen.Add(1)
		s.connected.Store(true)
		s.setState("connected", nil)
		s.log.Info().Uint64("boot", s.boot).Msg("mqtt connected")
		s.poke()
		select { // the fleet table shows a fresh row at once
		case s.reportNow <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return
		case err := <-s.lost:
			if !retry("mqtt connection lost", err) {
				return
			}
		}
	}
}

// setupTimeout bounds the wait for onConnect: a subscribe and a birth,
// each bounded by 10 s in onConnect itself.
const setupTimeout = 30 * time.Second

// hangUp closes a connection that is open, sending DISCONNECT (so the
// broker does not publish the will for a connection being replaced), and
// waits briefly for paho to finish, so the next Connect does not meet
// "already connected".
func (s *Session) hangUp() {
	if !s.client.IsConnected() {
		return
	}
	s.client.Disconnect(250)
	for deadline := time.Now().Add(time.Second); s.client.IsConnected() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// setupResult is onConnect's outcome for one connection attempt.
type setupResult struct {
	attempt uint64
	err     error
}

func drain[T any](c chan T) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// onConnect runs in paho's goroutine after every connect: it subscribes
// (a clean session forgets subscriptions) and publishes the birth, then
// tells connectLoop how that went.
func (s *Session) onConnect(c paho.Client) {
	attempt := s.attempt.Load()
	id := s.o.KioskID
	subs := map[string]byte{Topic(id, TopicCmd): 1, TopicFleetCmd: 1}
	if s.o.Ledger != nil {
		subs[Topic(id, TopicSalesAck)] = 1
	}
	err := waitToken(context.Background(), c.SubscribeMultiple(subs, s.route), 10*time.Second)
	switch {
	case err != nil:
		err = fmt.Errorf("subscribe: %w", err)
	case s.stopped.Load():
		// Stop has said goodbye: a birth now would outlive it.
		err = errors.New("stopped")
	default:
		birth, _ := json.Marshal(Status{State: "online", Boot: s.boot, Version: s.o.Version, Board: s.o.Board,
			TS: s.o.Clock().UTC(), LastShutdown: s.o.LastShutdown})
		if err = waitToken(context.Background(), c.Publish(Topic(id, TopicStatus), 1, true, birth), 10*time.Second); err != nil {
			err = fmt.Errorf("birth: %w", err)
		}
	}
	select { // a late result of an earlier attempt must not take the slot
	case <-s.setup:
	default:
	}
	select {
	case s.setup <- setupResult{attempt, err}:
	default:
	}
}

// route hands a message to the goroutine that owns its work. It never
// blocks paho's router.
func (s *Session) route(_ paho.Client, m paho.Message) {
	_, suffix, _ := SplitTopic(m.Topic())
	switch {
	case suffix == TopicSalesAck:
		a, err := ParseSalesAck(m.Payload())
		if err == nil && a.UptoSeq > s.o.Ledger.Head() {
			err = fmt.Errorf("the fleet acknowledged up to seq %d, but this kiosk recorded only %d", a.UptoSeq, s.o.Ledger.Head())
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("sales ack refused")
			return
		}
		for {
			cur := s.ackMax.Load()
			if a.UptoSeq <= cur || s.ackMax.CompareAndSwap(cur, a.UptoSeq) {
				break
			}
		}
		s.poke()
	case suffix == TopicCmd || m.Topic() == TopicFleetCmd:
		if len(m.Payload()) == 0 {
			return // someone clearing a retained command: nothing to answer
		}
		if m.Retained() {
			// Commands are never retained: a retained one would run again
			// on every kiosk at every connect, once its id is forgotten.
			c, _ := ParseCommand(m.Payload())
			s.refuse(Result{ID: c.ID, OK: false, Error: "refused: a retained command (publish commands without the retain flag, and clear this one)"})
			return
		}
		select {
		case s.cmds <- m:
		default:
			// The worker is far behind; say so rather than queue without bound.
			c, _ := ParseCommand(m.Payload())
			s.refuse(Result{ID: c.ID, OK: false, Error: "busy: too many commands queued; try again"})
		}
	}
}

// refuse answers a command off the router, one refusal at a time: a flood
// of them is logged, not answered without bound.
func (s *Session) refuse(r Result) {
	if !s.refusing.CompareAndSwap(false, true) {
		s.log.Warn().Str("id", r.ID).Str("error", r.Error).Msg("command refused without an answer")
		return
	}
	go func() {
		defer s.refusing.Store(false)
		s.publishResult(r)
	}()
}

func (s *Session) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// SyncNow asks sales sync to run at once.
func (s *Session) SyncNow() { s.poke() }

// Stop says goodbye: a retained "offline" status with the reason, then a
// clean disconnect, so the broker does not send the will. It waits at
// most until ctx ends.
func (s *Session) Stop(ctx context.Context, reason string) {
	if s.stopped.Swap(true) {
		return
	}
	if err := atomicfile.Write(filepath.Join(s.o.StateDir, shutdownFile), []byte(reason+"\n"), 0o640); err != nil {
		s.log.Warn().Err(err).Msg("cannot record the shutdown reason")
	}
	if s.client.IsConnectionOpen() {
		// The fleet's shutdown event, then the retained goodbye, on one
		// connection at QoS 1, so in that order; only the goodbye is
		// waited for, the event must not take its time.
		data, _ := json.Marshal(map[string]string{"reason": reason})
		ev, _ := json.Marshal(Event{TS: s.o.Clock().UTC(), Type: "shutdown", Data: data})
		_ = within(ctx, func() error { s.client.Publish(Topic(s.o.KioskID, TopicEvents), 1, false, ev); return nil })
		b, _ := json.Marshal(Status{State: "offline", Boot: s.boot, Version: s.o.Version, Board: s.o.Board,
			TS: s.o.Clock().UTC(), Reason: reason})
		// On a stalled link paho's Publish itself blocks for its write
		// timeout before there is a token to wait on: the budget must
		// hold all the same. Unsaid, the broker's will says offline.
		if err := within(ctx, func() error {
			return waitToken(ctx, s.client.Publish(Topic(s.o.KioskID, TopicStatus), 1, true, b), 2*time.Second)
		}); err != nil {
			s.log.Warn().Err(err).Msg("offline status not acknowledged")
		}
		_ = within(ctx, func() error { s.client.Disconnect(250); return nil })
	}
	s.connected.Store(false)
	s.setState("disconnected", nil)
}

// within runs fn, returning its error, or ctx's once ctx ends first
// (fn then finishes in the background).
func within(ctx context.Context, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitToken waits for a paho token, the timeout or ctx, whichever first.
func waitToken(ctx context.Context, t paho.Token, timeout time.Duration) error {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-tm.C:
		return errors.New("timed out")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publish sends one message if the session is up; QoS 0 telemetry is
// simply skipped while offline.
func (s *Session) publish(suffix string, qos byte, retained bool, v any) (paho.Token, error) {
	// The connection, not the session's setup, decides: a command that
	// arrives while the session subscribes still gets its answer.
	if !s.client.IsConnectionOpen() {
		return nil, errors.New("offline")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.client.Publish(Topic(s.o.KioskID, suffix), qos, retained, b), nil
}
