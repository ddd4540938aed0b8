// Command till measures the till page as the kiosk's screen runs it, in a
// real headless Chromium against kioskd on the sim board:
//
//   - page weight: the bytes of GET /, everything the page needs;
//
//   - start to till: from exec of kioskd to the catalog drawn on screen;
//
//   - scan to screen: from an emulated scan (POST /api/sim/scan, which
//     types the code on the emulated keyboard-wedge scanner) to the till
//     page's DOM showing it, p50/p99/max over -scans reads. The page learns
//     of scans over server-sent events; for comparison, the same reads are
//     timed as a page polling /api/state every -poll would see them.
//
//     go run ./bench/till [-scans 300] [-starts 5] [-dir bench/out]
//
// Without Chromium it says so and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/microretail/kioskd/bench/internal/kioskd"
	"github.com/microretail/kioskd/internal/browser"
)

func main() {
	scans := flag.Int("scans", 300, "scans timed")
	starts := flag.Int("starts", 5, "cold starts timed")
	poll := flag.Duration("poll", 500*time.Millisecond, "the polling page's interval, for comparison")
	dir := flag.String("dir", "bench/out", "scratch `dir`")
	flag.Parse()
	exe, err := browser.Find()
	if err != nil {
		fmt.Println("bench/till: skipped:", err)
		return
	}
	if err := run(exe, *dir, *scans, *starts, *poll); err != nil {
		fmt.Fprintln(os.Stderr, "bench/till:", err)
		os.Exit(1)
	}
}

// codes are the sim catalog's barcodes, scanned in turn.
var codes = []string{"8964000100011", "8964000100035", "8964000100042", "8964000100059", "8964000100073",
	"8964000100080", "8964000100097", "8964000100103"}

func run(exe, dir string, scans, starts int, poll time.Duration) error {
	bin, err := kioskd.Build(dir, "kioskd-till")
	if err != nil {
		return err
	}
	cfg := filepath.Join(dir, "till-bench.toml")
	// Every read counts: the same product is scanned many times over.
	if err := os.WriteFile(cfg, []byte("[scanner]\nrepeat = \"0s\"\n"), 0o644); err != nil {
		return err
	}

	ctx, cancel := browser.Start(context.Background(), browser.Options{Exec: exe})
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		return fmt.Errorf("starting %s: %w", exe, err)
	}

	var startup []time.Duration
	for i := range starts {
		d, err := startToTill(ctx, bin, cfg, filepath.Join(dir, fmt.Sprintf("till-start-%d", i)))
		if err != nil {
			return err
		}
		startup = append(startup, d)
	}

	data := filepath.Join(dir, "till-scan")
	_ = os.RemoveAll(data)
	k, err := kioskd.Start(bin, "--config", cfg, "--data", data, "--kiosk-id", "bench")
	if err != nil {
		return err
	}
	defer k.Stop()
	if err := waitListening(k, 10*time.Second); err != nil {
		return err
	}
	weight, err := pageWeight(k.Addr)
	if err != nil {
		return err
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+k.Addr+"/"),
		chromedp.WaitVisible(chromedp.CSS(".tile"))); err != nil {
		return err
	}
	sse, render, err := scanLatencies(ctx, scans, 0)
	if err != nil {
		return err
	}
	polled, _, err := scanLatencies(ctx, scans/5, poll)
	if err != nil {
		return err
	}
	// The emulated wedge types 13 digits and Enter, press and release, a
	// key every 4 ms, as a USB keyboard-wedge scanner does: 56 ms before
	// the code is complete and anything can act on it.
	const typing = 14 * 4 * time.Millisecond
	afterEnter := make([]time.Duration, len(sse))
	for i, d := range sse {
		afterEnter[i] = max(d-typing, 0)
	}

	fmt.Printf("page weight: %d bytes (%.1f KB), one request, no external assets\n", weight, float64(weight)/1024)
	fmt.Printf("kioskd start to rendered till (%d cold starts, empty ledger): %s\n", starts, summary(startup))
	fmt.Printf("scan to screen over SSE, from the first keystroke (%d scans): %s\n", len(sse), summary(sse))
	fmt.Printf("  less the wedge's %v of typing, from the code complete: %s\n", typing, summary(afterEnter))
	fmt.Printf("  of which the page, from the scan event arriving to the DOM showing it: %s\n", summary(render))
	fmt.Printf("scan to screen polling /api/state every %v, from the first keystroke (%d scans, for comparison): %s\n", poll, len(polled), summary(polled))
	return nil
}

func summary(ds []time.Duration) string {
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("p50 %s, p99 %s, max %s", ms(q(0.50)), ms(q(0.99)), ms(ds[len(ds)-1]))
}

// measureJS times one scan in the page, from the POST that makes the
// emulated scanner start typing the code. With poll 0 it waits for the
// SSE-driven #flash to carry the code, and also notes when a second event
// stream in the same page received the scan event, which splits the time
// into kioskd's part (typing included) and the page's. With a poll
// interval it polls /api/state the way a page without a push channel
// would, and waits for the cart's item count to move.
const measureJS = `(async (code, poll) => {
	const flash = document.querySelector('#flash');
	const items = async () => (await (await fetch('/api/state')).json()).cart.items;
	const before = poll ? await items() : 0;
	flash.dataset.code = '';
	let arrived = 0;
	const es = poll ? null : new EventSource('/api/events');
	if (es) {
		es.addEventListener('scan', (m) => { if (JSON.parse(m.data).data.code === code) arrived = performance.now(); });
		await new Promise((resolve) => es.addEventListener('open', resolve, {once: true}));
	}
	const seen = poll
		? new Promise((resolve) => { const t = setInterval(async () => { if (await items() !== before) { clearInterval(t); resolve(); } }, poll); })
		: new Promise((resolve) => {
			const mo = new MutationObserver(() => { if (flash.dataset.code === code) { mo.disconnect(); resolve(); } });
			mo.observe(flash, {attributes: true, attributeFilter: ['data-code']});
		});
	const t0 = performance.now();
	fetch('/api/sim/scan', {method: 'POST', body: JSON.stringify({code})});
	await seen;
	const t1 = performance.now();
	if (es) es.close();
	return [t1 - t0, arrived ? t1 - arrived : -1];
})`

// scanLatencies returns, per scan, the time from the emulated scanner
// starting to type the code to the screen showing it, and the part of it
// after the scan event reached the browser (-1 when polling).
func scanLatencies(ctx context.Context, n int, poll time.Duration) (total, page []time.Duration, err error) {
	for i := range n {
		code := codes[i%len(codes)]
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ms, err := chromedp.Run(sctx, chromedp.Evaluate[[2]float64](
			fmt.Sprintf("%s(%q, %d)", measureJS, code, poll.Milliseconds()), chromedp.EvalAwaitPromise))
		cancel()
		if err != nil {
			return nil, nil, fmt.Errorf("scan %d: %w", i, err)
		}
		total = append(total, time.Duration(ms[0]*float64(time.Millisecond)))
		page = append(page, time.Duration(ms[1]*float64(time.Millisecond)))
		if i%50 == 49 {
			// Keep the cart small, as a real one is.
			if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`fetch('/api/cart/clear', {method: 'POST'})`, chromedp.EvalAwaitPromise)); err != nil {
				return nil, nil, err
			}
		}
	}
	return total, page, nil
}

// startToTill times one cold start: exec of kioskd to the catalog on the
// screen. The browser keeps loading the till URL until kioskd answers, as
// the kiosk's Chromium does when it comes up first.
func startToTill(ctx context.Context, bin, cfg, data string) (time.Duration, error) {
	_ = os.RemoveAll(data)
	t0 := time.Now()
	k, err := kioskd.Start(bin, "--config", cfg, "--data", data, "--kiosk-id", "bench")
	if err != nil {
		return 0, err
	}
	defer k.Stop()
	if err := waitListening(k, 10*time.Second); err != nil {
		return 0, err
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, chromedp.Navigate("http://"+k.Addr+"/"), chromedp.WaitVisible(chromedp.CSS(".tile"))); err != nil {
		return 0, fmt.Errorf("till not rendered: %w", err)
	}
	return time.Since(t0), nil
}

// waitListening waits for the till's port to accept connections.
func waitListening(k *kioskd.Proc, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", k.Addr); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-k.Done:
			return fmt.Errorf("kioskd exited: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	return errors.New("kioskd did not listen in time")
}

func pageWeight(addr string) (int, error) {
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return len(b), err
}
