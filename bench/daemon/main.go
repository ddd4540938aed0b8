// Command daemon measures the kioskd binary as a kiosk runs it: the cold
// start, from exec to the first 200 on /healthz, with 1M entries in the
// ledger (after a SIGKILL, with the WAL still to replay; after a clean stop;
// and with the page cache dropped, where the machine allows it), and the
// latency of HTTP checkouts from one client.
//
//	go run ./bench/daemon [-entries 1000000] [-checkouts 5000] [-dir bench/out]
//
// The 1M-entry ledger is built once in DIR/cold and reused by later runs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/microretail/kioskd/bench/internal/kioskd"
	"github.com/microretail/kioskd/firmware/ledger"
)

func main() {
	entries := flag.Uint64("entries", 1_000_000, "ledger size for the cold start")
	checkouts := flag.Int("checkouts", 5000, "checkouts timed over HTTP")
	dir := flag.String("dir", "bench/out", "scratch `dir`")
	flag.Parse()
	if err := run(*dir, *entries, *checkouts); err != nil {
		fmt.Fprintln(os.Stderr, "bench/daemon:", err)
		os.Exit(1)
	}
}

func run(dir string, entries uint64, checkouts int) error {
	bin, err := kioskd.Build(dir, "kioskd")
	if err != nil {
		return err
	}
	cold := filepath.Join(dir, "cold")
	head, err := populate(filepath.Join(cold, "ledger"), entries)
	if err != nil {
		return err
	}

	fmt.Printf("kioskd cold start to /healthz 200, %d entries in the ledger, %s\n\n", head, time.Now().Format(time.DateOnly))
	fmt.Println("| case | runs | median | max |")
	fmt.Println("|---|---:|---:|---:|")
	// After a SIGKILL the WAL holds up to a memtable of unflushed entries.
	if err := killMidRun(bin, cold); err != nil {
		return err
	}
	if err := startRow("after a SIGKILL (WAL replay)", bin, cold, 1, false); err != nil {
		return err
	}
	if err := startRow("after a clean stop, warm page cache", bin, cold, 5, false); err != nil {
		return err
	}
	if dropCaches() == nil {
		if err := startRow("after a clean stop, page cache dropped", bin, cold, 5, true); err != nil {
			return err
		}
	} else {
		fmt.Println("| page cache dropped | – | not allowed on this machine | |")
	}

	fresh := filepath.Join(dir, "http")
	_ = os.RemoveAll(fresh)
	defer os.RemoveAll(fresh)
	return httpCheckouts(bin, fresh, checkouts)
}

// populate builds a ledger of n entries, or keeps one already built, and
// returns its size.
func populate(dir string, n uint64) (uint64, error) {
	if l, err := ledger.Open(dir, ledger.Options{ReadOnly: true}); err == nil {
		head := l.Head()
		l.Close()
		if head >= n {
			fmt.Fprintf(os.Stderr, "reusing %s: %d entries\n", dir, head)
			return head, nil
		}
	}
	_ = os.RemoveAll(dir)
	fmt.Fprintf(os.Stderr, "building a ledger of %d entries in %s\n", n, dir)
	l, err := ledger.Open(dir, ledger.Options{KioskID: "bench-cold"})
	if err != nil {
		return 0, err
	}
	defer l.Close()
	start := time.Now()
	var next atomic.Uint64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > n {
					return
				}
				_, err := l.Append(context.Background(), ledger.Draft{
					Kind: ledger.KindSale, Payment: ledger.PaymentCash, IdempotencyKey: fmt.Sprintf("cold-%d", i),
					Lines: []ledger.Line{{SKU: "CHAI", Name: "Doodh patti chai", Qty: 2, Price: 8000}},
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	fmt.Fprintf(os.Stderr, "built in %s\n", time.Since(start).Round(time.Second))
	return l.Head(), nil
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

// start execs kioskd and returns how long until /healthz first answers 200.
func start(bin, data string) (*kioskd.Proc, time.Duration, error) {
	t0 := time.Now()
	d, err := kioskd.Start(bin, "--data", data, "--kiosk-id", "bench-cold")
	if err != nil {
		return nil, 0, err
	}
	for time.Since(t0) < 60*time.Second {
		resp, err := client.Get("http://" + d.Addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d, time.Since(t0), nil
			}
		}
		select {
		case err := <-d.Done:
			return nil, 0, fmt.Errorf("kioskd exited: %v", err)
		case <-time.After(200 * time.Microsecond):
		}
	}
	d.Kill()
	return nil, 0, errors.New("kioskd never became ready")
}

// killMidRun sells on the big ledger, then SIGKILLs kioskd, leaving a WAL
// to replay.
func killMidRun(bin, data string) error {
	d, _, err := start(bin, data)
	if err != nil {
		return err
	}
	for i := range 20_000 {
		body := fmt.Sprintf(`{"payment":"cash","idempotency_key":"kill-%d-%d","lines":[{"sku":"CHAI","qty":1}]}`, time.Now().UnixNano(), i)
		resp, err := client.Post("http://"+d.Addr+"/api/checkout", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
	}
	d.Kill()
	return nil
}

func startRow(name, bin, data string, runs int, drop bool) error {
	var times []time.Duration
	for range runs {
		if drop {
			if err := dropCaches(); err != nil {
				return err
			}
		}
		d, took, err := start(bin, data)
		if err != nil {
			return err
		}
		times = append(times, took)
		if err := d.Stop(); err != nil {
			return err
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	fmt.Printf("| %s | %d | %s | %s |\n", name, runs, times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
	return nil
}

func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200)
}

// httpCheckouts times checkouts from one client over a kept-alive connection.
func httpCheckouts(bin, data string, n int) error {
	d, _, err := start(bin, data)
	if err != nil {
		return err
	}
	defer d.Stop()
	post := func(i int) (time.Duration, error) {
		body := fmt.Sprintf(`{"payment":"cash","idempotency_key":"http-%d","lines":[{"sku":"CHAI","qty":2},{"sku":"SAMOSA","qty":3}]}`, i)
		t0 := time.Now()
		resp, err := client.Post("http://"+d.Addr+"/api/checkout", "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("checkout %d: %s", i, resp.Status)
		}
		return time.Since(t0), nil
	}
	for i := range 200 { // warm up
		if _, err := post(-1 - i); err != nil {
			return err
		}
	}
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := range n {
		took, err := post(i)
		if err != nil {
			return err
		}
		lat = append(lat, took)
	}
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[int(float64(len(lat)-1)*p)].Round(time.Microsecond) }
	fmt.Printf("\nHTTP checkout, one client, %d checkouts of 2 lines each, every one synced before its 200\n\n", n)
	fmt.Println("| p50 | p90 | p99 | p99.9 | max | checkouts/s |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|")
	fmt.Printf("| %s | %s | %s | %s | %s | %.0f |\n", pct(0.5), pct(0.9), pct(0.99), pct(0.999),
		lat[len(lat)-1].Round(time.Microsecond), float64(n)/elapsed.Seconds())
	return nil
}
