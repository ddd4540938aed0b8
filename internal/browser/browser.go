// Package browser drives the till page in a real headless Chromium through
// the DevTools protocol (chromedp), for the browser tests and the
// scan-to-screen benchmark. It also records every request the page makes,
// so tests can prove the till never leaves the kiosk.
package browser

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"sync"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Names are the executables tried, in order: Debian's chromium first.
var Names = []string{"chromium", "chromium-browser", "google-chrome"}

// Install says how to get one.
const Install = "apt-get install chromium"

// Find returns the path of a Chromium, or an error saying none is on PATH.
func Find() (string, error) {
	for _, n := range Names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("browser: no Chromium on PATH (tried %v; %s)", Names, Install)
}

// Options sets up the browser.
type Options struct {
	Exec          string // the Chromium binary
	Width, Height int    // the window: the kiosk's screen; default 1024x600
}

// Start launches a headless Chromium and opens one tab. cancel closes the
// browser and waits for it to exit.
func Start(ctx context.Context, o Options) (context.Context, context.CancelFunc) {
	if o.Width == 0 {
		o.Width, o.Height = 1024, 600
	}
	flags := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(o.Exec),
		chromedp.WindowSize(o.Width, o.Height),
		chromedp.NoSandbox, // CI and this VM run as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"), // the scan beep
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, flags...)
	bctx, cancelTab := chromedp.NewContext(actx)
	return bctx, func() { cancelTab(); cancelAlloc() }
}

// Requests records the URL of every request the page makes.
type Requests struct {
	mu   sync.Mutex
	urls []string
}

// Watch starts recording the requests of the tab in ctx, starting the
// browser if it is not yet. Call it before the first navigation.
func Watch(ctx context.Context) (*Requests, error) {
	r := &Requests{}
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			r.mu.Lock()
			r.urls = append(r.urls, e.Request.URL)
			r.mu.Unlock()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("browser: %w", err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		return nil, fmt.Errorf("browser: enabling network events: %w", err)
	}
	return r, nil
}

// All returns the URLs requested so far.
func (r *Requests) All() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.urls...)
}

// Foreign returns the requests that left the machine: any URL whose host
// is not a loopback address or localhost. data: and blob: URLs stay in the
// page and are not counted.
func (r *Requests) Foreign() []string {
	var out []string
	for _, raw := range r.All() {
		u, err := url.Parse(raw)
		if err != nil {
			out = append(out, raw)
			continue
		}
		switch u.Scheme {
		case "data", "blob", "about":
			continue
		}
		switch u.Hostname() {
		case "127.0.0.1", "::1", "localhost":
			continue
		}
		out = append(out, raw)
	}
	return out
}
