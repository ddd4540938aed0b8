// Package logind asks systemd-logind, over the D-Bus system bus, to power
// the board off or reboot it, and holds the delay inhibitor lock that gives
// kioskd time to flush the sales ledger when something else shuts it down.
//
// kioskd runs unprivileged, so logind checks every request with polkit;
// deploy/polkit/50-kioskd.rules grants the kioskd user what it needs.
package logind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// The logind manager object.
const (
	dest    = "org.freedesktop.login1"
	path    = dbus.ObjectPath("/org/freedesktop/login1")
	manager = "org.freedesktop.login1.Manager"
)

// callTimeout bounds the calls that take no context (the inhibit and
// subscribe calls); godbus has no default timeout and libdbus uses 25 s.
const callTimeout = 25 * time.Second

// ErrDenied reports that polkit refused the request: kioskd is not
// authorized, or only would be after interactive authentication, which a
// service cannot give. The rules in deploy/polkit/50-kioskd.rules fix it.
var ErrDenied = errors.New("not authorized by polkit")

// deniedNames are the D-Bus errors logind answers with when polkit says no
// (AccessDenied) or asks for a password (InteractiveAuthorizationRequired,
// returned for interactive=false calls).
var deniedNames = map[string]bool{
	"org.freedesktop.DBus.Error.AccessDenied":                     true,
	"org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": true,
}

// Conn is a private connection to the system bus, talking to logind.
type Conn struct {
	bus     *dbus.Conn
	obj     dbus.BusObject
	signals *shutdownSignals
}

// Connect connects to the system bus. ctx bounds the connection handshake
// only; once connected, the Conn lives until Close.
func Connect(ctx context.Context) (*Conn, error) {
	sig := &shutdownSignals{}
	bus, err := dbus.SystemBusPrivate(dbus.WithSignalHandler(sig))
	if err != nil {
		return nil, fmt.Errorf("logind: connect to the system bus: %w", err)
	}
	return handshake(ctx, bus, sig, "the system bus")
}

// ConnectAddress is Connect for the bus at a D-Bus address such as
// "unix:path=/run/dbus/system_bus_socket"; tests use it with a private bus.
func ConnectAddress(ctx context.Context, addr string) (*Conn, error) {
	sig := &shutdownSignals{}
	bus, err := dbus.Dial(addr, dbus.WithSignalHandler(sig))
	if err != nil {
		return nil, fmt.Errorf("logind: connect to %s: %w", addr, err)
	}
	return handshake(ctx, bus, sig, addr)
}

// handshake authenticates a dialled connection and says Hello, closing it
// if ctx ends first: godbus's own handshake takes no context, and
// dbus.WithContext would tie the connection's whole life to ctx.
func handshake(ctx context.Context, bus *dbus.Conn, sig *shutdownSignals, what string) (*Conn, error) {
	stop := context.AfterFunc(ctx, func() { _ = bus.Close() })
	err := bus.Auth(nil)
	if err == nil {
		err = bus.Hello()
	}
	if !stop() {
		err = ctx.Err() // the handshake was cut short, or finished too late
	}
	if err != nil {
		_ = bus.Close()
		return nil, fmt.Errorf("logind: connect to %s: %w", what, err)
	}
	return &Conn{bus: bus, obj: bus.Object(dest, path), signals: sig}, nil
}

// Close closes the connection and the channels from PrepareForShutdown. A
// Lock is a file descriptor of its own: it stays held until Release.
func (c *Conn) Close() error {
	if err := c.bus.Close(); err != nil {
		return fmt.Errorf("logind: close: %w", err)
	}
	return nil
}

// Lock is a logind inhibitor lock, held while its file descriptor is open.
type Lock struct {
	mu sync.Mutex
	f  *os.File
}

// InhibitDelay takes a "delay" inhibitor lock: logind, before it shuts
// down (what "shutdown") or sleeps, sends PrepareForShutdown and waits for
// the lock to be released, or for InhibitDelayMaxSec (5 s by default).
// who and why are shown by systemd-inhibit --list.
func (c *Conn) InhibitDelay(what, who, why string) (*Lock, error) {
	if !c.bus.SupportsUnixFDs() {
		return nil, errors.New("logind: inhibit delay lock: the bus connection cannot pass file descriptors")
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var fd dbus.UnixFD
	err := c.obj.CallWithContext(ctx, manager+".Inhibit", 0, what, who, why, "delay").Store(&fd)
	if err != nil {
		return nil, fmt.Errorf("logind: inhibit delay lock: %w", classify(err))
	}
	if fd < 0 {
		return nil, fmt.Errorf("logind: inhibit delay lock: invalid file descriptor %d", fd)
	}
	return &Lock{f: os.NewFile(uintptr(fd), "logind-inhibit")}, nil
}

// Release closes the lock's file descriptor, letting a pending shutdown
// go ahead. It is safe to call twice, and on a nil Lock.
func (l *Lock) Release() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("logind: release inhibitor lock: %w", err)
	}
	return nil
}

// PrepareForShutdown subscribes to logind's PrepareForShutdown signal. The
// channel receives true when a shutdown or reboot begins (flush, then
// Release the delay lock) and false when it was cancelled. It holds one
// value and keeps the latest: a reader that falls behind sees the current
// state, never a stale one, and godbus's dispatch never waits for it. The
// channel is closed when the Conn is closed or the bus connection is lost.
func (c *Conn) PrepareForShutdown() (<-chan bool, error) {
	ch := make(chan bool, 1)
	if !c.signals.add(ch) {
		return nil, errors.New("logind: subscribe to PrepareForShutdown: connection closed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	err := c.bus.AddMatchSignalContext(ctx,
		dbus.WithMatchSender(dest),
		dbus.WithMatchObjectPath(path),
		dbus.WithMatchInterface(manager),
		dbus.WithMatchMember("PrepareForShutdown"))
	if err != nil {
		c.signals.remove(ch)
		return nil, fmt.Errorf("logind: subscribe to PrepareForShutdown: %w", classify(err))
	}
	return ch, nil
}

// PowerOff asks logind to power the board off, without interactive
// authentication.
func (c *Conn) PowerOff(ctx context.Context) error {
	if err := c.call(ctx, "PowerOff"); err != nil {
		return fmt.Errorf("logind: power off: %w", err)
	}
	return nil
}

// Reboot asks logind to reboot the board, without interactive
// authentication.
func (c *Conn) Reboot(ctx context.Context) error {
	if err := c.call(ctx, "Reboot"); err != nil {
		return fmt.Errorf("logind: reboot: %w", err)
	}
	return nil
}

// call calls a Manager method taking the single argument interactive=false.
func (c *Conn) call(ctx context.Context, method string) error {
	return classify(c.obj.CallWithContext(ctx, manager+"."+method, 0, false).Store())
}

// verbs maps each power verb to its logind method.
var verbs = map[string]string{"poweroff": "PowerOff", "reboot": "Reboot"}

// Systemctl runs "systemctl poweroff" or "systemctl reboot", for when there
// is no logind connection. Any other verb is an error.
func Systemctl(ctx context.Context, verb string) error {
	if err := systemctl(ctx, verb); err != nil {
		return fmt.Errorf("logind: %w", err)
	}
	return nil
}

func systemctl(ctx context.Context, verb string) error {
	if _, ok := verbs[verb]; !ok {
		return fmt.Errorf("systemctl %q: want poweroff or reboot", verb)
	}
	out, err := exec.CommandContext(ctx, "systemctl", verb).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return fmt.Errorf("systemctl %s: %w: %s", verb, err, bytes.TrimSpace(out))
	}
	return nil
}

// PowerAction powers off ("poweroff") or reboots ("reboot") the board: via
// logind when c is not nil, else, or when logind fails, via systemctl. The
// error, when both fail, gives both causes; errors.Is finds ErrDenied when
// polkit refused the logind call.
func PowerAction(ctx context.Context, c *Conn, verb string) error {
	method, ok := verbs[verb]
	if !ok {
		return fmt.Errorf("logind: power action %q: want poweroff or reboot", verb)
	}
	lerr := errors.New("no logind connection")
	if c != nil {
		if lerr = c.call(ctx, method); lerr == nil {
			return nil
		}
		lerr = fmt.Errorf("%s: %w", method, lerr)
	}
	serr := systemctl(ctx, verb)
	if serr == nil {
		return nil
	}
	return fmt.Errorf("logind: %s: %w; fallback %w", verb, lerr, serr)
}

// classify names the D-Bus error in err's text (godbus prints only the
// message) and marks polkit refusals with ErrDenied.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var name string
	var ev dbus.Error
	var ep *dbus.Error
	switch {
	case errors.As(err, &ev):
		name = ev.Name
	case errors.As(err, &ep) && ep != nil:
		name = ep.Name
	default:
		return err
	}
	if deniedNames[name] {
		return fmt.Errorf("%w: %w (%s)", ErrDenied, err, name)
	}
	return fmt.Errorf("%w (%s)", err, name)
}

// shutdownSignals is the connection's signal handler: it hands each
// PrepareForShutdown to the subscribed channels, never blocking godbus's
// dispatch goroutine, which is the only sender.
type shutdownSignals struct {
	mu     sync.Mutex
	closed bool
	subs   []chan bool
}

// DeliverSignal implements dbus.SignalHandler.
func (s *shutdownSignals) DeliverSignal(iface, member string, sig *dbus.Signal) {
	if iface != manager || member != "PrepareForShutdown" || sig.Path != path || len(sig.Body) != 1 {
		return
	}
	start, ok := sig.Body[0].(bool)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, ch := range s.subs {
		keepLatest(ch, start)
	}
}

// keepLatest puts v in ch (capacity 1), replacing a value nobody read yet.
// With a single sender the loop ends: at worst a reader empties ch between
// the two selects.
func keepLatest(ch chan bool, v bool) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// Terminate implements dbus.Terminator: godbus calls it when the
// connection closes.
func (s *shutdownSignals) Terminate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, ch := range s.subs {
		close(ch)
	}
	s.subs = nil
}

func (s *shutdownSignals) add(ch chan bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.subs = append(s.subs, ch)
	return true
}

func (s *shutdownSignals) remove(ch chan bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.subs {
		if c == ch {
			s.subs = append(s.subs[:i], s.subs[i+1:]...)
			close(ch)
			return
		}
	}
}
