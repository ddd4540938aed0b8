// Package kioskd builds and runs the kioskd binary on the sim board for the
// benchmark harnesses, as systemd would run it on a kiosk.
package kioskd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Build compiles ./cmd/kioskd into dir/name and returns its absolute path.
func Build(dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/kioskd").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: %v\n%s", err, out)
	}
	return bin, nil
}

// Proc is a running kioskd.
type Proc struct {
	Addr string     // the till's listen address
	Done chan error // receives the exit once
	cmd  *exec.Cmd
}

// Start execs bin on the sim board with its till on a free loopback port,
// plus args, its output discarded.
func Start(bin string, args ...string) (*Proc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"--board", "sim", "--http", addr}, args...)...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Addr: addr, Done: make(chan error, 1), cmd: cmd}
	go func() { p.Done <- cmd.Wait() }()
	return p, nil
}

// Stop sends SIGTERM and waits for the clean exit kioskd promises.
func (p *Proc) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.Done:
		return err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		return errors.New("kioskd did not stop on SIGTERM")
	}
}

// Kill ends kioskd as a power cut would, and waits for it.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.Done
}
