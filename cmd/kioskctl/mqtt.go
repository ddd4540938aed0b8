package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/mattn/go-isatty"
	"github.com/microretail/kioskd/telemetry"
)

// clock is the console's wall clock; tests may replace it.
var clock = time.Now

// globals are the flags every MQTT command shares, and where output goes.
type globals struct {
	broker             string
	tls                telemetry.TLSFiles
	username, password string
	json               bool

	stdout, stderr io.Writer
	color          bool // stdout is a terminal and NO_COLOR is unset
}

func newGlobals(stdout, stderr io.Writer) *globals {
	g := &globals{stdout: stdout, stderr: stderr}
	if f, ok := stdout.(*os.File); ok && os.Getenv("NO_COLOR") == "" {
		g.color = isatty.IsTerminal(f.Fd())
	}
	return g
}

// register adds the global flags to fs. Commands register them on their
// own flag sets too, so they may come after the command.
func (g *globals) register(fs *flag.FlagSet) {
	if g.broker == "" {
		g.broker = "tcp://127.0.0.1:1883"
	}
	fs.StringVar(&g.broker, "broker", g.broker, "MQTT broker `URL`")
	fs.StringVar(&g.tls.CA, "tls-ca", g.tls.CA, "CA certificate `file` (PEM)")
	fs.StringVar(&g.tls.Cert, "tls-cert", g.tls.Cert, "client certificate `file` (PEM)")
	fs.StringVar(&g.tls.Key, "tls-key", g.tls.Key, "client key `file` (PEM)")
	fs.StringVar(&g.username, "username", g.username, "MQTT user name")
	fs.StringVar(&g.password, "password", g.password, "MQTT password")
	fs.BoolVar(&g.json, "json", g.json, "machine-readable output")
}

// flags makes a command's flag set, with the global flags on it.
func (g *globals) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("kioskctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	return fs
}

// parse parses a command's arguments, flags and positional arguments in
// any order ("--" ends the flags). A bad flag is reported with the usage
// and exit code 2.
func (g *globals) parse(fs *flag.FlagSet, args []string) ([]string, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			fmt.Fprintf(g.stderr, "%s: %v\n%s", fs.Name(), err, usage)
			return nil, false
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), true
		}
		if len(rest) == 0 {
			return pos, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// fail prints a kioskctl error and returns exit code 1.
func (g *globals) fail(format string, args ...any) int {
	fmt.Fprintf(g.stderr, "kioskctl: "+format+"\n", args...)
	return 1
}

// session describes one MQTT connection of the console.
type session struct {
	clientID string
	clean    bool
	manual   bool // acknowledge received messages by hand (msg.Ack)
	// onConnect runs on every (re)connect, in its own goroutine: the
	// place to subscribe, so subscriptions survive reconnects.
	onConnect func(mqtt.Client)
	onLost    func(error)
	// fallback gets messages no subscription's handler matches: on a
	// persistent session the broker may send queued ones before the
	// connect handler has subscribed again.
	fallback mqtt.MessageHandler
}

// connect opens s to the broker and waits for the CONNACK, or ctx. It
// fails at once when the broker cannot be reached, with a reason; after
// that the client reconnects by itself.
func (g *globals) connect(ctx context.Context, s session) (mqtt.Client, error) {
	u, err := url.Parse(g.broker)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--broker %q: want tcp://HOST:PORT or ssl://HOST:PORT", g.broker)
	}
	o := mqtt.NewClientOptions().AddBroker(g.broker).SetClientID(s.clientID).SetCleanSession(s.clean).
		SetAutoReconnect(true).SetMaxReconnectInterval(10 * time.Second).SetConnectTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second).SetOrderMatters(true).SetAutoAckDisabled(s.manual).SetWriteTimeout(10 * time.Second)
	if !g.tls.Empty() {
		switch u.Scheme {
		case "ssl", "tls", "mqtts", "tcps", "wss":
		default:
			return nil, fmt.Errorf("--tls-* given but --broker %s is not a TLS URL (use ssl://%s)", g.broker, u.Host)
		}
		c, err := g.tls.Config()
		if err != nil {
			return nil, err
		}
		o.SetTLSConfig(c)
	}
	if g.username != "" {
		o.SetUsername(g.username)
		o.SetPassword(g.password)
	}
	if s.onConnect != nil {
		o.SetOnConnectHandler(s.onConnect)
	}
	if s.fallback != nil {
		o.SetDefaultPublishHandler(s.fallback)
	}
	if s.onLost != nil {
		o.SetConnectionLostHandler(func(_ mqtt.Client, err error) { s.onLost(err) })
	}
	c := mqtt.NewClient(o)
	if err := wait(ctx, c.Connect(), 15*time.Second); err != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("connect to %s: %w", g.broker, err)
	}
	return c, nil
}

// wait waits for a paho token, ctx or d, whichever ends first.
func wait(ctx context.Context, t mqtt.Token, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return errors.New("timed out")
	}
}

// subscribe subscribes to topics at QoS 1 with h and waits for the
// SUBACK, failing when the broker refused any of them (an ACL, say).
func subscribe(ctx context.Context, c mqtt.Client, h mqtt.MessageHandler, topics ...string) error {
	return subscribeQoS(ctx, c, h, 1, topics...)
}

func subscribeQoS(ctx context.Context, c mqtt.Client, h mqtt.MessageHandler, qos byte, topics ...string) error {
	filters := map[string]byte{}
	for _, t := range topics {
		filters[t] = qos
	}
	tok := c.SubscribeMultiple(filters, h)
	if err := wait(ctx, tok, 15*time.Second); err != nil {
		return fmt.Errorf("subscribe %s: %w", strings.Join(topics, ", "), err)
	}
	for t, code := range tok.(*mqtt.SubscribeToken).Result() {
		if code >= 0x80 {
			return fmt.Errorf("subscribe %s: refused by the broker (check the ACL)", t)
		}
	}
	return nil
}

// randomID is a fresh id for a client or a command.
func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
