package mosquitto_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/microretail/kioskd/internal/mosquitto"
	"github.com/microretail/kioskd/internal/realtest"
	"github.com/microretail/kioskd/telemetry"
)

// patience bounds every wait for a message that must arrive. A message that
// must NOT arrive is never waited for: each check sends a control message
// after it, on a path the broker delivers in order, and asserts that
// nothing forbidden came before the control.
const patience = 10 * time.Second

// msg is one delivered message, reduced to what the checks compare.
type msg struct{ topic, payload string }

func (m msg) String() string { return fmt.Sprintf("%s %q", m.topic, m.payload) }

// inbox collects what one client receives, in delivery order.
type inbox chan msg

func (in inbox) handler(_ mqtt.Client, m mqtt.Message) {
	in <- msg{m.Topic(), string(m.Payload())}
}

// until reads the inbox until control arrives and returns what came before
// it. The control never arriving fails the test.
func (in inbox) until(t *testing.T, control msg) []msg {
	t.Helper()
	var before []msg
	deadline := time.After(patience)
	for {
		select {
		case m := <-in:
			if m == control {
				return before
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("control %v never arrived (received before: %v)", control, before)
		}
	}
}

// forbidden marks the payload of every message a check expects the broker
// to drop.
const forbidden = "forbidden"

// clean asserts that control arrives and nothing forbidden came before it
// (other messages, such as retained ones, may).
func (in inbox) clean(t *testing.T, control msg) {
	t.Helper()
	for _, m := range in.until(t, control) {
		if strings.Contains(m.payload, forbidden) {
			t.Errorf("received %v", m)
		}
	}
}

// only asserts that control arrives with nothing else before it.
func (in inbox) only(t *testing.T, control msg) {
	t.Helper()
	if before := in.until(t, control); len(before) > 0 {
		t.Fatalf("received %v before the control %v; expected nothing else", before, control)
	}
}

// broker is the shipped config running with a test PKI.
type broker struct {
	*mosquitto.Broker
	pki string
}

func startShipped(t *testing.T, kiosks ...string) *broker {
	t.Helper()
	mosquitto.Find(t) // skip (or fail) before minting anything
	pki := mosquitto.PKI(t, kiosks...)
	return &broker{Broker: mosquitto.Start(t, mosquitto.Shipped(t, pki)), pki: pki}
}

// files are the TLS files of a certificate minted into dir, trusting that
// dir's CA; name "" gives the CA alone (server authentication only).
func files(dir, name string) telemetry.TLSFiles {
	f := telemetry.TLSFiles{CA: filepath.Join(dir, "ca.pem")}
	if name != "" {
		f.Cert = filepath.Join(dir, name+".pem")
		f.Key = filepath.Join(dir, name+".key")
	}
	return f
}

// dial connects one MQTT 3.1.1 client; tweak adjusts the options.
func dial(t *testing.T, url, id string, f telemetry.TLSFiles, in inbox, tweak func(*mqtt.ClientOptions)) (mqtt.Client, error) {
	t.Helper()
	c, _, err := dialSession(t, url, id, f, in, tweak)
	return c, err
}

// dialSession is dial that also says whether the broker resumed a session.
func dialSession(t *testing.T, url, id string, f telemetry.TLSFiles, in inbox, tweak func(*mqtt.ClientOptions)) (mqtt.Client, bool, error) {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).
		SetProtocolVersion(4).SetCleanSession(true).SetOrderMatters(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(patience)
	if !f.Empty() {
		cfg, err := f.Config()
		if err != nil {
			t.Fatal(err)
		}
		o.SetTLSConfig(cfg)
	}
	if in != nil {
		o.SetDefaultPublishHandler(in.handler)
	}
	if tweak != nil {
		tweak(o)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect().(*mqtt.ConnectToken)
	if !tok.WaitTimeout(patience + time.Second) {
		return nil, false, fmt.Errorf("connect %s: no answer", id)
	}
	if err := tok.Error(); err != nil {
		return nil, false, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, tok.SessionPresent(), nil
}

// client connects as the holder of certificate name, or fails the test.
func (b *broker) client(t *testing.T, name, id string, in inbox) mqtt.Client {
	t.Helper()
	c, err := dial(t, b.TLSURL(), id, files(b.pki, name), in, nil)
	if err != nil {
		t.Fatalf("%s (certificate %s) cannot connect: %v\n%s", id, name, err, b.Log())
	}
	return c
}

func sub(t *testing.T, c mqtt.Client, in inbox, filters ...string) {
	t.Helper()
	for _, f := range filters {
		tok := c.Subscribe(f, 1, in.handler)
		if !tok.WaitTimeout(patience) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
}

// pub publishes at QoS 1 and waits for the PUBACK, so the broker has
// handled the message (delivered or dropped it) before pub returns.
func pub(t *testing.T, c mqtt.Client, topic, payload string, retained bool) msg {
	t.Helper()
	tok := c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(patience) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
	return msg{topic, payload}
}

func newInbox() inbox { return make(inbox, 1000) }

// TestShippedACL runs deploy/mosquitto/mosquitto.conf and deploy/mosquitto/acl
// as shipped, with certificates from deploy/mosquitto/mkcerts.sh, and checks
// who may do what.
func TestShippedACL(t *testing.T) {
	b := startShipped(t, "kA", "kB")

	t.Run("kiosk uses its own topics and hears fleet commands", func(t *testing.T) {
		aIn, opIn := newInbox(), newInbox()
		a := b.client(t, "kA", "kA", aIn)
		op := b.client(t, "operator", "op-own", opIn)
		sub(t, a, aIn, "kiosk/kA/#", "fleet/cmd")
		sub(t, op, opIn, "kiosk/kA/events")

		ev := pub(t, a, "kiosk/kA/events", `{"type":"mains_lost"}`, false)
		aIn.only(t, ev)
		opIn.only(t, ev)
		aIn.only(t, pub(t, op, "fleet/cmd", `{"id":"f1","cmd":"ping"}`, false))
	})

	t.Run("kiosk cannot publish on another kiosk's topics", func(t *testing.T) {
		bIn, opIn, ingIn := newInbox(), newInbox(), newInbox()
		a := b.client(t, "kA", "kA", nil)
		kb := b.client(t, "kB", "kB", bIn)
		op := b.client(t, "operator", "op-forge", opIn)
		ing := b.client(t, "ingest", "ingest-forge", ingIn)
		sub(t, kb, bIn, "kiosk/kB/#")
		sub(t, op, opIn, "kiosk/#")
		sub(t, ing, ingIn, "kiosk/+/sales")

		for _, topic := range []string{
			"kiosk/kB/sales", "kiosk/kB/events", "kiosk/kB/tele/power",
			"kiosk/kB/cmd", "kiosk/kB/cmd/result", "kiosk/kB/sales/ack", "kiosk/kB/ota",
		} {
			pub(t, a, topic, forbidden+": kA posing as kB", false)
		}
		pub(t, a, "kiosk/kB/status", `{"state":"offline","note":"`+forbidden+`"}`, true)
		// kA's certificate is its identity: a user name in CONNECT changes nothing.
		posing, err := dial(t, b.TLSURL(), "kA-posing", files(b.pki, "kA"), nil, func(o *mqtt.ClientOptions) {
			o.SetUsername("operator").SetPassword("operator")
		})
		if err != nil {
			t.Fatalf("kA with a user name cannot connect: %v", err)
		}
		pub(t, posing, "kiosk/kB/cmd", forbidden+": kA posing as the operator", false)
		pub(t, posing, "fleet/cmd", forbidden+": kA posing as the operator", false)

		opIn.only(t, pub(t, a, "kiosk/kA/events", "control", false))
		ingIn.only(t, pub(t, a, "kiosk/kA/sales", "control", false))
		bIn.only(t, pub(t, op, "kiosk/kB/cmd", "control", false))

		// No forged retained status waits for the next subscriber either.
		lateIn := newInbox()
		late := b.client(t, "operator", "op-late", lateIn)
		sub(t, late, lateIn, "kiosk/kB/status")
		lateIn.only(t, pub(t, kb, "kiosk/kB/status", `{"state":"online"}`, false))
	})

	t.Run("kiosk cannot read another kiosk's commands", func(t *testing.T) {
		aIn := newInbox()
		kb := b.client(t, "kB", "kB", nil)
		pub(t, kb, "kiosk/kB/status", `{"state":"online","note":"`+forbidden+` to kA"}`, true)
		op := b.client(t, "operator", "op-read", nil)
		a := b.client(t, "kA", "kA", aIn)
		// Subscribing is always granted; what is delivered is checked.
		sub(t, a, aIn, "kiosk/kB/cmd", "kiosk/+/cmd", "kiosk/#", "#", "$share/spy/kiosk/kB/cmd")

		pub(t, op, "kiosk/kB/cmd", forbidden+": kB's command", false)
		pub(t, kb, "kiosk/kB/sales", forbidden+": kB's sales", false)
		// Retained messages of kA's own from earlier steps may come too.
		aIn.clean(t, pub(t, op, "kiosk/kA/cmd", "control", false))
		pub(t, kb, "kiosk/kB/status", "", true) // clear the retained status
	})

	t.Run("kiosk cannot command the fleet", func(t *testing.T) {
		bIn := newInbox()
		kb := b.client(t, "kB", "kB", bIn)
		a := b.client(t, "kA", "kA", nil)
		op := b.client(t, "operator", "op-fleet", nil)
		sub(t, kb, bIn, "fleet/cmd", "kiosk/+/cmd")

		pub(t, a, "fleet/cmd", forbidden+": kA commanding the fleet", false)
		pub(t, a, "kiosk/kB/cmd", forbidden+": kA commanding kB", false)
		bIn.only(t, pub(t, op, "fleet/cmd", `{"id":"ok","cmd":"ping"}`, false))
	})

	t.Run("a client without the fleet's certificate cannot connect", func(t *testing.T) {
		otherCA := t.TempDir()
		mosquitto.MkCerts(t, "ca", otherCA)
		mosquitto.MkCerts(t, "kiosk", otherCA, "kA") // the right CN, the wrong CA
		// It trusts the fleet's broker, so any refusal is the broker's.
		foreign := files(b.pki, "")
		foreign.Cert, foreign.Key = filepath.Join(otherCA, "kA.pem"), filepath.Join(otherCA, "kA.key")

		for _, c := range []struct {
			name  string
			url   string
			files telemetry.TLSFiles
			tweak func(*mqtt.ClientOptions)
		}{
			{"no certificate", b.TLSURL(), files(b.pki, ""), nil},
			{"no certificate, operator's user name", b.TLSURL(), files(b.pki, ""), func(o *mqtt.ClientOptions) {
				o.SetUsername("operator").SetPassword("operator")
			}},
			{"plain MQTT on the TLS port", b.URL(), telemetry.TLSFiles{}, nil},
			{"certificate from another CA", b.TLSURL(), foreign, nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				if _, err := dial(t, c.url, "stranger", c.files, nil, c.tweak); err == nil {
					t.Fatal("connected")
				}
			})
		}
		// The same dial with the fleet's certificate gets in.
		if _, err := dial(t, b.TLSURL(), "kA", files(b.pki, "kA"), nil, nil); err != nil {
			t.Fatalf("kA cannot connect: %v", err)
		}
	})

	t.Run("operator commands kiosks but cannot pose as one", func(t *testing.T) {
		aIn, ingIn := newInbox(), newInbox()
		a := b.client(t, "kA", "kA", aIn)
		op := b.client(t, "operator", "op-cmd", nil)
		ing := b.client(t, "ingest", "ingest-op", ingIn)
		sub(t, a, aIn, "kiosk/kA/#")
		sub(t, ing, ingIn, "kiosk/+/sales")

		pub(t, op, "kiosk/kA/sales/ack", forbidden+`: {"upto_seq":999999}`, false)
		pub(t, op, "kiosk/kA/status", forbidden+": the operator posing as kA", false)
		aIn.only(t, pub(t, op, "kiosk/kA/cmd", `{"id":"c1","cmd":"ping"}`, false))

		// The kiosk pattern would give the operator kiosk/operator/#; the
		// ACL denies it, so the operator cannot feed the ingest sales.
		pub(t, op, "kiosk/operator/sales", forbidden+": the operator's own sales", false)
		pub(t, op, "kiosk/kA/sales", forbidden+": the operator posing as kA", false)
		ingIn.only(t, pub(t, a, "kiosk/kA/sales", "control", false))
	})

	t.Run("ingest reads sales, also shared, and acks, nothing more", func(t *testing.T) {
		aIn, ingIn, sharedIn, opIn := newInbox(), newInbox(), newInbox(), newInbox()
		a := b.client(t, "kA", "kA", aIn)
		op := b.client(t, "operator", "op-ing", opIn)
		ing := b.client(t, "ingest", "ingest-1", ingIn)
		shared := b.client(t, "ingest", "ingest-2", sharedIn)
		sub(t, a, aIn, "kiosk/kA/cmd", "kiosk/kA/sales/ack")
		sub(t, op, opIn, "kiosk/#", "fleet/cmd")
		sub(t, ing, ingIn, "kiosk/+/sales", "kiosk/+/sales/ack", "kiosk/+/cmd", "kiosk/+/status", "fleet/cmd", "kiosk/ingest/#")
		sub(t, shared, sharedIn, "$share/ingest/kiosk/+/sales")

		pub(t, op, "fleet/cmd", `{"id":"f2","cmd":"ping","note":"`+forbidden+` to the ingest"}`, false)
		pub(t, op, "kiosk/kA/cmd", `{"id":"c2","cmd":"ping","note":"`+forbidden+` to the ingest"}`, false)
		pub(t, a, "kiosk/kA/status", forbidden+" to the ingest", false)
		batch := pub(t, a, "kiosk/kA/sales", `{"from_seq":1,"to_seq":2,"entries":[]}`, false)
		ingIn.only(t, batch)
		sharedIn.only(t, batch)

		// It acknowledges; it can neither command nor pose as a kiosk.
		pub(t, ing, "kiosk/kA/cmd", forbidden+": the ingest commanding kA", false)
		pub(t, ing, "fleet/cmd", forbidden+": the ingest commanding the fleet", false)
		pub(t, ing, "kiosk/ingest/sales", forbidden+": the ingest's own sales", false)
		ack := pub(t, ing, "kiosk/kA/sales/ack", `{"upto_seq":2}`, false)
		// Shared workers learn the fleet's mark from each other's acks.
		ingIn.only(t, ack)
		// kA first hears the operator's command, then the ack.
		if before := aIn.until(t, ack); len(before) != 1 || before[0].topic != "kiosk/kA/cmd" || strings.Contains(before[0].payload, "the ingest commanding") {
			t.Errorf("before the ack kA received %v; want only the operator's command", before)
		}
		for _, m := range opIn.until(t, pub(t, op, "kiosk/kA/cmd", "control", false)) {
			if strings.Contains(m.payload, "the ingest") && strings.Contains(m.payload, forbidden+":") {
				t.Errorf("the operator saw %v", m)
			}
		}
	})

	t.Run("shared ingest workers split the sales", func(t *testing.T) {
		const batches = 20
		in := newInbox()
		a := b.client(t, "kA", "kA", nil)
		for i := range 2 {
			w := b.client(t, "ingest", fmt.Sprintf("ingest-w%d", i), in)
			sub(t, w, in, "$share/split/kiosk/+/sales")
		}
		for i := range batches {
			pub(t, a, "kiosk/kA/sales", fmt.Sprintf("batch %d", i), false)
		}
		seen := map[string]int{}
		deadline := time.After(patience)
		for len(seen) < batches {
			select {
			case m := <-in:
				seen[m.payload]++
				if seen[m.payload] > 1 {
					t.Fatalf("%v delivered to two workers of one share group", m)
				}
			case <-deadline:
				t.Fatalf("the workers got %d of %d batches", len(seen), batches)
			}
		}
	})

	t.Run("a kiosk taking over another's client id gets none of its commands", func(t *testing.T) {
		persist := func(o *mqtt.ClientOptions) { o.SetCleanSession(false) }
		// kB's session: a persistent subscription to its commands.
		owner, err := dial(t, b.TLSURL(), "kB-session", files(b.pki, "kB"), nil, persist)
		if err != nil {
			t.Fatal(err)
		}
		sub(t, owner, newInbox(), "kiosk/kB/cmd")
		owner.Disconnect(100)
		op := b.client(t, "operator", "op-takeover", nil)
		pub(t, op, "kiosk/kB/cmd", forbidden+": queued for kB while it was away", false)

		// kA connects with kB's client id, asking to resume that session.
		// Mosquitto 2.0 lets it, subscriptions and all; what keeps kB's
		// commands from kA is the read check on each delivery.
		aIn := newInbox()
		thief, resumed, err := dialSession(t, b.TLSURL(), "kB-session", files(b.pki, "kA"), aIn, persist)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("session resumed by another kiosk: %v", resumed)
		sub(t, thief, aIn, "kiosk/kA/cmd")
		pub(t, op, "kiosk/kB/cmd", forbidden+": kB's command", false)
		aIn.only(t, pub(t, op, "kiosk/kA/cmd", "control", false))
	})

	t.Run("a kiosk's Last Will cannot speak for another kiosk", func(t *testing.T) {
		opIn := newInbox()
		op := b.client(t, "operator", "op-will", opIn)
		sub(t, op, opIn, "kiosk/+/status")

		// Each connection is cut without a DISCONNECT, so the broker sends
		// its will: the forged one first and, once the broker has dealt
		// with it, the genuine one.
		cut := func(id, willTopic, will string) {
			t.Helper()
			var mu sync.Mutex
			var conn net.Conn
			_, err := dial(t, b.TLSURL(), id, files(b.pki, "kA"), nil, func(o *mqtt.ClientOptions) {
				o.SetWill(willTopic, will, 1, false)
				o.SetCustomOpenConnectionFn(func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
					c, err := tls.Dial("tcp", u.Host, o.TLSConfig)
					if err != nil {
						return nil, err
					}
					mu.Lock()
					conn = c
					mu.Unlock()
					return c, nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			conn.Close()
			mu.Unlock()
			// The close is in the broker's socket before these publishes
			// are sent, and Mosquitto handles every ready socket in each
			// pass of its event loop: once they are acknowledged, the
			// broker has sent or dropped the will.
			for range 2 {
				pub(t, op, "kiosk/kA/cmd", "barrier", false)
			}
		}
		cut("kA-forger", "kiosk/kB/status", `{"state":"offline","note":"`+forbidden+`"}`)
		cut("kA", "kiosk/kA/status", `{"state":"offline"}`)
		opIn.clean(t, msg{"kiosk/kA/status", `{"state":"offline"}`})
	})
}

// TestShippedRendering checks what Shipped changes in the shipped config:
// the certificate and ACL paths and the listener, nothing else.
func TestShippedRendering(t *testing.T) {
	pki := t.TempDir()
	o := mosquitto.Shipped(t, pki)
	for _, want := range []string{
		"cafile " + pki + "/ca.pem", "certfile " + pki + "/server.pem", "keyfile " + pki + "/server.key",
		"acl_file " + pki + "/acl", "require_certificate true", "use_identity_as_username true",
		"allow_anonymous false", "persistence true",
	} {
		if !strings.Contains(o.Config, "\n"+want+"\n") {
			t.Errorf("rendered config lacks %q", want)
		}
	}
	for line := range strings.Lines(o.Config) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "listener") || strings.Contains(line, "/etc/mosquitto") {
			t.Errorf("rendered config keeps %q", line)
		}
	}
	if !o.Persist {
		t.Error("the shipped config persists; the test broker should too")
	}
	acl, err := os.ReadFile(filepath.Join(pki, "acl"))
	if err != nil || !strings.Contains(string(acl), "pattern readwrite kiosk/%u/#") {
		t.Errorf("the shipped acl was not copied: %v", err)
	}
}

// TestMkCerts checks the certificates mkcerts.sh makes and the names it
// refuses.
func TestMkCerts(t *testing.T) {
	sh := realtest.Command(t, "sh", "a POSIX shell", "sh")
	realtest.Command(t, "openssl", "apt-get install openssl", "openssl")
	script := mosquitto.ShippedFile(t, "mkcerts.sh")
	dir := filepath.Join(t.TempDir(), "pki")
	run := func(args ...string) (string, error) {
		out, err := exec.Command(sh, append([]string{script}, args...)...).CombinedOutput()
		return string(out), err
	}
	for _, args := range [][]string{
		{"ca", dir}, {"server", dir, "broker.example", "127.0.0.1", "::1"},
		{"kiosk", dir, "karachi-burns-road-07"}, {"operator", dir, "alice"}, {"ingest", dir},
	} {
		if out, err := run(args...); err != nil {
			t.Fatalf("mkcerts.sh %v: %v\n%s", args, err, out)
		}
	}

	ca := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil || !ca.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem: %v", err)
	}
	for _, c := range []struct {
		file, cn string
		usage    x509.ExtKeyUsage
	}{
		{"server", "broker.example", x509.ExtKeyUsageServerAuth},
		{"karachi-burns-road-07", "karachi-burns-road-07", x509.ExtKeyUsageClientAuth},
		{"operator-alice", "operator-alice", x509.ExtKeyUsageClientAuth},
		{"ingest", "ingest", x509.ExtKeyUsageClientAuth},
	} {
		raw, err := os.ReadFile(filepath.Join(dir, c.file+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(raw)
		if block == nil {
			t.Fatalf("%s.pem: no PEM block", c.file)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != c.cn {
			t.Errorf("%s.pem: CN %q, want %q", c.file, cert.Subject.CommonName, c.cn)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: ca, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Errorf("%s.pem does not verify for %v: %v", c.file, c.usage, err)
		}
		if cert.PublicKeyAlgorithm != x509.ECDSA {
			t.Errorf("%s.pem: key %v, want ECDSA", c.file, cert.PublicKeyAlgorithm)
		}
		fi, err := os.Stat(filepath.Join(dir, c.file+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s.key: mode %v; want it private", c.file, fi.Mode())
		}
	}
	server, _ := os.ReadFile(filepath.Join(dir, "server.pem"))
	block, _ := pem.Decode(server)
	cert, _ := x509.ParseCertificate(block.Bytes)
	for _, host := range []string{"broker.example", "127.0.0.1", "::1"} {
		if err := cert.VerifyHostname(host); err != nil {
			t.Errorf("server.pem: %v", err)
		}
	}

	for _, c := range []struct {
		args []string
		why  string
	}{
		{[]string{"ca", dir}, "exists"},
		{[]string{"kiosk", dir, "karachi-burns-road-07"}, "exists"},
		{[]string{"kiosk", dir, "operator"}, "reserved"},
		{[]string{"kiosk", dir, "operator-bob"}, "reserved"},
		{[]string{"kiosk", dir, "ingest"}, "reserved"},
		{[]string{"kiosk", dir, "a/b"}, "bad kiosk id"},
		{[]string{"kiosk", dir, "k+1"}, "bad kiosk id"},
		{[]string{"kiosk", dir, "-k1"}, "bad kiosk id"},
		{[]string{"kiosk", dir, strings.Repeat("k", 65)}, "bad kiosk id"},
		{[]string{"kiosk", dir, ""}, "bad kiosk id"},
		{[]string{"kiosk", t.TempDir(), "k1"}, "no CA"},
		{[]string{"server", dir, "bad host"}, "bad host"},
		{[]string{"mint", dir}, "usage"},
	} {
		out, err := run(c.args...)
		if err == nil || !strings.Contains(out, c.why) {
			t.Errorf("mkcerts.sh %q: %v, %q; want a refusal saying %q", c.args, err, out, c.why)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "operator.pem")); !os.IsNotExist(err) {
		t.Error("a refused kiosk left files behind")
	}
}
