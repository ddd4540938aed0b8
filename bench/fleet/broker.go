package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// broker is a real mosquitto on a free loopback port, with a config of the
// harness's own in its directory.
type broker struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan error
}

// brokerConf is a plain single-machine mosquitto: anonymous clients on one
// loopback listener, the broker's defaults otherwise (max_inflight_messages
// 20, max_queued_messages 1000, no persistence).
const brokerConf = `per_listener_settings false
allow_anonymous true
log_dest file %s
log_type error
log_type warning
log_type notice
listener %d 127.0.0.1
`

// startBroker finds mosquitto on PATH (or in /usr/sbin, where Debian puts
// it), writes its config into dir and runs it until Stop.
func startBroker(dir string) (*broker, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			return nil, fmt.Errorf("mosquitto not found (apt-get install mosquitto mosquitto-clients): %w", err)
		}
		bin = "/usr/sbin/mosquitto"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, brokerConf, filepath.Join(dir, "mosquitto.log"), port), 0o600); err != nil {
		return nil, err
	}
	b := &broker{dir: dir, port: port, cmd: exec.Command(bin, "-c", conf), done: make(chan error, 1)}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", b.addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return b, nil
		}
		select {
		case werr := <-b.done:
			return nil, fmt.Errorf("mosquitto exited: %v\n%s", werr, b.log())
		default:
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, fmt.Errorf("mosquitto did not listen on %d: %v\n%s", port, err, b.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *broker) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

// url is the broker as paho and kioskctl name it.
func (b *broker) url() string { return "tcp://" + b.addr() }

func (b *broker) log() string {
	out, _ := os.ReadFile(filepath.Join(b.dir, "mosquitto.log"))
	return string(out)
}

// stop ends the broker with SIGTERM and waits for it.
func (b *broker) stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// raiseFileLimit lifts the soft limit on open files to the hard one, for
// this process and the mosquitto it starts: a thousand kiosks are a
// thousand sockets at each end.
func raiseFileLimit(need uint64) error {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	if r.Cur < need {
		return fmt.Errorf("open-file limit %d is below the %d this run needs; raise the hard limit (ulimit -Hn)", r.Cur, need)
	}
	return nil
}

// cpuTime is the CPU time (user and system) process pid has used so far,
// from /proc; 0 where there is no /proc.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th, in clock ticks
	// (100 a second on Linux).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}
