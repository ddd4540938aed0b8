// Package lighting runs the stall's lights as scenes. A scene is a level
// per channel; changing scene fades from the levels now to the new ones.
// The till and the power policy pick scenes: open when trading, dim, battery
// on backup power, night when closed, and off.
//
// Levels are perceived brightness in percent. They are mapped to PWM duty
// through the CIE 1931 lightness curve, so 50% looks half as bright, and a
// fade looks even rather than rushing at the dark end. A channel wired to a
// MOSFET on a plain GPIO line is on at any level above zero.
package lighting

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/firmware/events"
)

// MaxDuty is full on, as a PWM duty out of 4096 (the PCA9685's 12 bits,
// with 4096 meaning its full-on bit).
const MaxDuty = 4096

// Output is what the lights are wired to: a PWM board or a GPIO strip.
type Output interface {
	// Channels is how many channels it drives.
	Channels() int
	// Set drives every channel at once; duties[i] is 0..MaxDuty.
	Set(duties []uint16) error
}

// Scene names every kiosk has. Config may add more.
const (
	Open    = "open"
	Dim     = "dim"
	Battery = "battery"
	Night   = "night"
	Off     = "off"
)

// DefaultScenes are the levels used when the config gives none: three
// channels (canopy, counter, sign) as a typical stall wires them.
func DefaultScenes() map[string][]int {
	return map[string][]int{
		Open:    {100, 100, 100},
		Dim:     {50, 40, 60},
		Battery: {30, 20, 0},
		Night:   {0, 10, 0},
		Off:     {0, 0, 0},
	}
}

// ErrUnknownScene is returned for a scene the config does not define.
var ErrUnknownScene = errors.New("lighting: unknown scene")

// Options configures the lights.
type Options struct {
	Scenes map[string][]int // percent per channel; missing channels are off
	Fade   time.Duration    // default fade between scenes; 0 is a cut
	Start  string           // the scene at power-on (default off)
	Logger zerolog.Logger
	Events *events.Hub // may be nil
	Clock  func() time.Time
}

// CheckScenes reports scenes that cannot be shown: a level outside 0-100,
// or one of the five standard scenes missing.
func CheckScenes(scenes map[string][]int) error {
	var errs []error
	for _, n := range []string{Open, Dim, Battery, Night, Off} {
		if _, ok := scenes[n]; !ok {
			errs = append(errs, fmt.Errorf("scene %q is missing", n))
		}
	}
	for n, lv := range scenes {
		for i, v := range lv {
			if v < 0 || v > 100 {
				errs = append(errs, fmt.Errorf("scene %q channel %d: level %d is not 0-100", n, i, v))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lighting: %w", err)
	}
	return nil
}

// Lights holds the scene and the fade in progress. It is safe for
// concurrent use; Device drives the output from it.
type Lights struct {
	opts Options
	log  zerolog.Logger
	wake chan struct{}

	mu        sync.Mutex
	scene     string
	from, to  []float64 // percent per channel
	fadeStart time.Time
	fadeLen   time.Duration
	now       []float64 // levels last written to the output; nil before the first write
}

// New returns lights showing opts.Start (off by default) at once.
func New(opts Options) (*Lights, error) {
	if opts.Scenes == nil {
		opts.Scenes = DefaultScenes()
	}
	if err := CheckScenes(opts.Scenes); err != nil {
		return nil, err
	}
	if opts.Start == "" {
		opts.Start = Off
	}
	if _, ok := opts.Scenes[opts.Start]; !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownScene, opts.Start)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	l := &Lights{opts: opts, log: opts.Logger.With().Str("component", "lighting").Logger(), wake: make(chan struct{}, 1), scene: opts.Start}
	l.to = l.levels(opts.Start)
	l.from = l.to
	return l, nil
}

// levels returns a scene's levels, padded to the widest scene.
func (l *Lights) levels(scene string) []float64 {
	width := 0
	for _, lv := range l.opts.Scenes {
		width = max(width, len(lv))
	}
	out := make([]float64, width)
	for i, v := range l.opts.Scenes[scene] {
		out[i] = float64(v)
	}
	return out
}

// Scenes lists the scene names, sorted.
func (l *Lights) Scenes() []string {
	n := make([]string, 0, len(l.opts.Scenes))
	for k := range l.opts.Scenes {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Scene is the scene shown or being faded to.
func (l *Lights) Scene() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.scene
}

// SetScene fades to scene over the default fade.
func (l *Lights) SetScene(scene string) error { return l.FadeTo(scene, l.opts.Fade) }

// FadeTo fades to scene over d, starting from wherever the lights are now,
// even part way through another fade.
func (l *Lights) FadeTo(scene string, d time.Duration) error {
	if _, ok := l.opts.Scenes[scene]; !ok {
		return fmt.Errorf("%w %q (have %v)", ErrUnknownScene, scene, l.Scenes())
	}
	now := l.opts.Clock()
	l.mu.Lock()
	l.from = l.levelsAtLocked(now)
	l.to = l.levels(scene)
	l.fadeStart, l.fadeLen = now, max(d, 0)
	prev := l.scene
	l.scene = scene
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	if prev != scene {
		l.log.Info().Str("scene", scene).Dur("fade", d).Msg("lights")
		if l.opts.Events != nil {
			l.opts.Events.Publish(events.Lights, map[string]any{"scene": scene, "from": prev, "fade_ms": d.Milliseconds()})
		}
	}
	return nil
}

// Levels returns the level of each channel at time now, in percent.
func (l *Lights) Levels(now time.Time) []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.levelsAtLocked(now)
}

func (l *Lights) levelsAtLocked(now time.Time) []float64 {
	f := 1.0
	if l.fadeLen > 0 {
		f = math.Min(1, math.Max(0, float64(now.Sub(l.fadeStart))/float64(l.fadeLen)))
	}
	out := make([]float64, len(l.to))
	for i := range out {
		out[i] = l.from[i] + (l.to[i]-l.from[i])*f
	}
	return out
}

// fading reports whether a fade is still in progress at now.
func (l *Lights) fading(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fadeLen > 0 && now.Sub(l.fadeStart) < l.fadeLen
}

// Duty maps a perceived brightness in percent to PWM duty out of MaxDuty,
// through CIE 1931 lightness (L* = percent).
func Duty(percent float64) uint16 {
	switch {
	case percent <= 0:
		return 0
	case percent >= 100:
		return MaxDuty
	}
	var y float64
	if percent > 8 {
		y = math.Pow((percent+16)/116, 3)
	} else {
		y = percent / 903.3
	}
	d := uint16(math.Round(y * MaxDuty))
	return max(d, 1) // a level above zero is never dark
}

// Frame is how often a fade is redrawn: 50 per second looks smooth and is
// a few percent of a 100 kHz bus.
const Frame = 20 * time.Millisecond

// Refresh is how often steady lights are written again, so a PWM board
// that browned out and lost its registers comes back within a second.
const Refresh = time.Second

// Device drives out from the lights under supervision. open finds the
// output; it is called again after the output fails.
func (l *Lights) Device(open func(ctx context.Context) (Output, error)) *Device {
	return &Device{lights: l, open: open}
}

// Device is the lights' output as a supervised device.
type Device struct {
	lights *Lights
	open   func(ctx context.Context) (Output, error)
	out    Output
}

// Open implements devices.Device.
func (d *Device) Open(ctx context.Context) error {
	out, err := d.open(ctx)
	if err != nil {
		return err
	}
	d.out = out
	return nil
}

// Step implements devices.Device: it writes the levels for now, then waits
// for the next frame, the next refresh, or a new scene.
func (d *Device) Step(ctx context.Context) error {
	l := d.lights
	now := l.opts.Clock()
	lv := l.Levels(now)
	duties := make([]uint16, d.out.Channels())
	for i := range duties {
		if i < len(lv) {
			duties[i] = Duty(lv[i])
		}
	}
	if err := d.out.Set(duties); err != nil {
		return err
	}
	l.mu.Lock()
	l.now = lv
	l.mu.Unlock()
	wait := Refresh
	if l.fading(now) {
		wait = Frame
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-l.wake:
	case <-t.C:
	}
	return nil
}

// Close implements devices.Device. An output that is an io.Closer (a
// driver with a Halt behind it) is closed.
func (d *Device) Close() error {
	out := d.out
	d.out = nil
	if c, ok := out.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Shown returns the levels last written to the output, in percent.
func (l *Lights) Shown() []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]float64(nil), l.now...)
}
