package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/telemetry"
)

// buildKioskctl compiles ./cmd/kioskctl into dir and returns its path.
// The console is part of this work: until its `sales ingest`
// exists the harness waits for it, polling once a minute for up to
// patience.
func buildKioskctl(dir string, patience time.Duration) (string, error) {
	bin, err := filepath.Abs(filepath.Join(dir, "kioskctl"))
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(patience)
	for {
		out, err := exec.Command("go", "build", "-o", bin, "./cmd/kioskctl").CombinedOutput()
		if err == nil {
			help, _ := exec.Command(bin, "sales", "ingest", "--help").CombinedOutput()
			if bytes.Contains(help, []byte("sales ingest")) {
				return bin, nil
			}
			err = errors.New("kioskctl has no `sales ingest` yet")
		} else {
			err = fmt.Errorf("build ./cmd/kioskctl: %v\n%s", err, out)
		}
		if time.Now().After(deadline) {
			return "", err
		}
		fmt.Fprintf(os.Stderr, "waiting for kioskctl: %v; trying again in a minute\n", firstLine(err))
		time.Sleep(time.Minute)
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// ingest is a running `kioskctl sales ingest`.
type ingest struct {
	cmd  *exec.Cmd
	data string
	log  string
	done chan error
}

// startIngest runs the fleet's ingest against b, storing into data, and
// returns once it acknowledges a probe batch: from then on it is
// subscribed and every batch a kiosk sends reaches it.
func startIngest(bin string, b *broker, data, scratch string) (*ingest, error) {
	logPath := filepath.Join(scratch, "ingest.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(bin, "--broker", b.url(), "sales", "ingest", "--data", data)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	in := &ingest{cmd: cmd, data: data, log: logPath, done: make(chan error, 1)}
	go func() { in.done <- cmd.Wait() }()
	if err := in.probe(b, scratch); err != nil {
		in.stop()
		return nil, fmt.Errorf("the ingest never acknowledged a probe batch: %w\n%s", err, in.tail())
	}
	return in, nil
}

// probe sends a one-sale batch from a kiosk of its own, again every half
// second, until the ingest acknowledges it (it re-acks duplicates).
func (in *ingest) probe(b *broker, scratch string) error {
	l, err := ledger.Open(filepath.Join(scratch, "probe-ledger"), ledger.Options{KioskID: "probe", Location: time.UTC})
	if err != nil {
		return err
	}
	defer l.Close()
	if l.Head() == 0 {
		if _, err := l.Append(context.Background(), sale("probe")); err != nil {
			return err
		}
	}
	es, err := l.Range(1, 1)
	if err != nil {
		return err
	}
	batch, err := json.Marshal(telemetry.SalesBatch{FromSeq: 1, ToSeq: 1, Entries: es})
	if err != nil {
		return err
	}
	acked := make(chan struct{}, 1)
	c, err := dial(b, "bench-probe", nil)
	if err != nil {
		return err
	}
	defer c.Disconnect(100)
	if err := await(c.Subscribe(telemetry.Topic("probe", telemetry.TopicSalesAck), 1, func(paho.Client, paho.Message) {
		select {
		case acked <- struct{}{}:
		default:
		}
	})); err != nil {
		return err
	}
	deadline := time.After(30 * time.Second)
	for {
		if err := await(c.Publish(telemetry.Topic("probe", telemetry.TopicSales), 1, false, batch)); err != nil {
			return err
		}
		select {
		case <-acked:
			return nil
		case err := <-in.done:
			in.done <- err
			return fmt.Errorf("kioskctl exited: %v", err)
		case <-deadline:
			return errors.New("timed out")
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// stop interrupts the ingest, as an operator's Ctrl-C would, and waits
// for it to finish the batch in hand.
func (in *ingest) stop() error {
	_ = in.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-in.done:
		return err
	case <-time.After(15 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.done
		return errors.New("the ingest did not stop on SIGINT")
	}
}

// tail is the end of the ingest's log, for error messages.
func (in *ingest) tail() string {
	b, _ := os.ReadFile(in.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// salesCounts asks `kioskctl sales report --json` how many entries the
// ingest stored for each kiosk (run it after stop: the store is locked
// while the ingest runs).
func salesCounts(bin, data string) (map[string]int64, error) {
	out, err := exec.Command(bin, "--json", "sales", "report", "--data", data).Output()
	if err != nil {
		return nil, fmt.Errorf("kioskctl sales report: %w", err)
	}
	var rep struct {
		Kiosks []struct {
			Kiosk   string `json:"kiosk"`
			Entries int64  `json:"entries"`
		} `json:"kiosks"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("kioskctl sales report: %w", err)
	}
	counts := map[string]int64{}
	for _, k := range rep.Kiosks {
		counts[k.Kiosk] += k.Entries // a row per kiosk and currency
	}
	return counts, nil
}

// timeFleet runs `kioskctl fleet` (args added) and returns how long it took
// from exec to exit, and its output.
func timeFleet(bin string, b *broker, args ...string) (time.Duration, []byte, error) {
	cmd := exec.Command(bin, append([]string{"--broker", b.url()}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, nil, fmt.Errorf("kioskctl %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return d, out.Bytes(), nil
}

// dial connects a plain MQTT 3.1.1 client; handler gets every message its
// subscriptions deliver when they name no handler of their own.
func dial(b *broker, id string, handler paho.MessageHandler) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker(b.url()).SetClientID(id).SetCleanSession(true).
		SetOrderMatters(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	if handler != nil {
		o.SetDefaultPublishHandler(handler)
	}
	c := paho.NewClient(o)
	if err := await(c.Connect()); err != nil {
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	return c, nil
}

// await waits for a paho token, at most 30 s.
func await(t paho.Token) error {
	if !t.WaitTimeout(30 * time.Second) {
		return errors.New("mqtt: no answer in 30s")
	}
	return t.Error()
}
