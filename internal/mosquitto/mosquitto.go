// Package mosquitto runs a real Mosquitto broker for a test: on a free
// loopback port, with a config generated into the test's temporary
// directory, stopped when the test ends. Where mosquitto is not installed
// the test skips, or fails under KIOSK_REQUIRE_REAL=1 (see realtest).
package mosquitto

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/microretail/kioskd/internal/realtest"
)

// Options shape the generated config.
type Options struct {
	// Config is appended to the listener line verbatim: TLS, ACL, auth
	// settings. Without it the broker allows anonymous clients.
	Config string
	// Persist keeps sessions and queued QoS 1 messages across restarts
	// in a persistence file under the broker's directory.
	Persist bool
}

// Broker is one running Mosquitto.
type Broker struct {
	Port int
	Dir  string // the broker's own directory: config, log, persistence

	t    testing.TB
	bin  string
	conf string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// URL is the broker's address for paho: tcp://127.0.0.1:PORT (or ssl://
// when the config sets up TLS).
func (b *Broker) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", b.Port) }

// TLSURL is the same address with the ssl scheme.
func (b *Broker) TLSURL() string { return fmt.Sprintf("ssl://127.0.0.1:%d", b.Port) }

// Find returns mosquitto's path, or ends the test under the realtest rule.
func Find(t testing.TB) string {
	t.Helper()
	bin := realtest.Command(t, "mosquitto", "apt-get install mosquitto", "mosquitto", "/usr/sbin/mosquitto")
	return bin
}

// Start runs a broker for the rest of the test.
func Start(t testing.TB, o Options) *Broker {
	t.Helper()
	bin := Find(t)
	dir := t.TempDir()
	port := FreePort(t)
	var conf strings.Builder
	fmt.Fprintf(&conf, "per_listener_settings false\n")
	if os.Geteuid() == 0 {
		// As root Mosquitto drops to the mosquitto user, which cannot
		// reach a test's temporary directory: its log, persistence, ACL
		// and certificates. A test broker stays the user it was started as.
		conf.WriteString("user root\n")
	}
	if o.Persist {
		fmt.Fprintf(&conf, "persistence true\npersistence_location %s/\nautosave_interval 1\n", dir)
	}
	fmt.Fprintf(&conf, "log_dest file %s\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n", filepath.Join(dir, "mosquitto.log"))
	fmt.Fprintf(&conf, "max_queued_messages 100000\nmax_inflight_messages 0\n")
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", port)
	if o.Config == "" {
		conf.WriteString("allow_anonymous true\n")
	} else {
		conf.WriteString(o.Config)
		conf.WriteString("\n")
	}
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Broker{Port: port, Dir: dir, t: t, bin: bin, conf: path}
	b.start()
	t.Cleanup(b.Stop)
	return b
}

func (b *Broker) start() {
	b.t.Helper()
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("mosquitto: %v", err)
	}
	b.mu.Lock()
	b.cmd = cmd
	b.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto did not listen on %d: %v\n%s", b.Port, err, b.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns what the broker has logged so far.
func (b *Broker) Log() string {
	out, _ := os.ReadFile(filepath.Join(b.Dir, "mosquitto.log"))
	return string(out)
}

// Stop ends the broker with SIGTERM, as a service manager would, and
// waits for it. Stopping a stopped broker does nothing.
func (b *Broker) Stop() { b.signal(syscall.SIGTERM) }

func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	cmd := b.cmd
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart stops the broker and starts it again on the same port with the
// same config, after pause (clients see the connection refused meanwhile).
func (b *Broker) Restart(pause time.Duration) {
	b.t.Helper()
	b.Stop()
	time.Sleep(pause)
	b.start()
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
