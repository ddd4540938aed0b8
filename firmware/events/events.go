// Package events carries what happens at the kiosk to whoever listens: the
// till page over server-sent events, and later the fleet. Scans, card taps,
// device health and power changes are published here as they happen.
//
// The hub keeps the most recent events in a ring, numbered, so a listener
// that reconnects (the page after a network blip, an SSE client with
// Last-Event-ID) picks up what it missed. Publishing never blocks: a
// listener that falls more than its buffer behind is cut off and must
// reconnect and replay, rather than stall the scanner or the card reader.
package events

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Event types published by the kiosk.
const (
	DeviceOK       = "device_ok"       // a device answers and reads sensibly
	DeviceDegraded = "device_degraded" // a device answers, but some operations fail
	DeviceOffline  = "device_offline"  // a device does not answer; it is retried with backoff
	CardTap        = "card_tap"        // an NFC card entered the reader's field
	MainsLost      = "mains_lost"      // the mains-detect line says mains is gone
	MainsRestored  = "mains_restored"  // the mains-detect line says mains is back
	MainsLine      = "mains_line"      // the mains-detect line was found stuck (the battery's trend stands in), or works again
	Power          = "power"           // the power mode changed: battery, low, critical, shutdown, mains
	Lights         = "lights"          // the lighting scene changed
	PaperOut       = "paper_out"       // the receipt printer ran out of paper; receipts wait
	PrinterStatus  = "printer"         // the receipt printer's state changed (cover, near end, back in service)
	Receipt        = "receipt"         // a receipt job moved: queued, printed, in doubt
	Scan           = "scan"            // a barcode scanner read a code
	Sale           = "sale"            // an entry was recorded: a sale, refund, top-up or sign-up
	Cart           = "cart"            // the cart on the counter changed
	Till           = "till"            // the till opened or closed for the day
	Closing        = "closing"         // the kiosk is about to shut down: finish the sale on the counter, start no new one
)

// Event is one thing that happened. Data is marshalled to JSON as is.
type Event struct {
	ID   uint64    `json:"id"`
	Type string    `json:"type"`
	Time time.Time `json:"ts"`
	Data any       `json:"data,omitempty"`
}

// Hub fans events out to listeners. It is safe for concurrent use.
type Hub struct {
	clock func() time.Time

	mu    sync.Mutex
	next  uint64
	ring  []Event
	start int // index of the oldest event in ring once it is full
	subs  map[*Sub]struct{}
	shut  bool
}

// DefaultRing is how many recent events a hub keeps for replay.
const DefaultRing = 256

// NewHub returns a hub keeping the last ring events (DefaultRing if <= 0).
func NewHub(ring int, clock func() time.Time) *Hub {
	if ring <= 0 {
		ring = DefaultRing
	}
	if clock == nil {
		clock = time.Now
	}
	return &Hub{clock: clock, next: 1, ring: make([]Event, 0, ring), subs: map[*Sub]struct{}{}}
}

// Publish records an event and hands it to every listener. It never
// blocks; it returns the event as published.
func (h *Hub) Publish(typ string, data any) Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := Event{ID: h.next, Type: typ, Time: h.clock(), Data: data}
	h.next++
	if len(h.ring) < cap(h.ring) {
		h.ring = append(h.ring, e)
	} else {
		h.ring[h.start] = e
		h.start = (h.start + 1) % len(h.ring)
	}
	for s := range h.subs {
		select {
		case s.c <- e:
		default:
			s.cutLocked(h)
		}
	}
	return e
}

// Recent returns the kept events with an ID above after, oldest first.
func (h *Hub) Recent(after uint64) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.recentLocked(after)
}

func (h *Hub) recentLocked(after uint64) []Event {
	var out []Event
	for i := range h.ring {
		e := h.ring[(h.start+i)%len(h.ring)]
		if e.ID > after {
			out = append(out, e)
		}
	}
	return out
}

// Sub is one listener.
type Sub struct {
	c      chan Event
	cut    atomic.Bool
	closed bool // under the hub's lock
}

// C delivers events in order. It is closed when the listener falls behind
// or unsubscribes.
func (s *Sub) C() <-chan Event { return s.c }

// Lagged reports whether the hub cut the listener off for falling behind.
func (s *Sub) Lagged() bool { return s.cut.Load() }

func (s *Sub) cutLocked(h *Hub) {
	s.cut.Store(true)
	delete(h.subs, s)
	if !s.closed {
		s.closed = true
		close(s.c)
	}
}

// Subscribe returns a listener that first receives the kept events with
// an ID above after (0 for none, if replay is false), then everything
// published from now. buf bounds how far it may fall behind.
func (h *Hub) Subscribe(after uint64, replay bool, buf int) *Sub {
	h.mu.Lock()
	defer h.mu.Unlock()
	var backlog []Event
	if replay {
		if after >= h.next {
			// The client saw ids this hub never gave: kioskd restarted
			// and numbers events afresh. Everything kept is news to it.
			after = 0
		}
		backlog = h.recentLocked(after)
	}
	if buf < len(backlog)+16 {
		buf = len(backlog) + 16
	}
	s := &Sub{c: make(chan Event, buf)}
	for _, e := range backlog {
		s.c <- e
	}
	if h.shut {
		s.closed = true
		close(s.c)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

// Close ends every listener's stream, so a server shutting down is not
// held up by open event streams. Publishing still records events.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.shut = true
	for s := range h.subs {
		delete(h.subs, s)
		if !s.closed {
			s.closed = true
			close(s.c)
		}
	}
}

// Unsubscribe stops deliveries to s and closes its channel.
func (h *Hub) Unsubscribe(s *Sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
	if !s.closed {
		s.closed = true
		close(s.c)
	}
}

// MarshalSSE renders e as one server-sent event.
func (e Event) MarshalSSE() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+len(e.Type)+40)
	out = append(out, "id: "...)
	out = strconv.AppendUint(out, e.ID, 10)
	out = append(out, "\nevent: "...)
	out = append(out, e.Type...)
	out = append(out, "\ndata: "...)
	out = append(out, b...)
	out = append(out, "\n\n"...)
	return out, nil
}

// writeTimeout bounds one write to an event stream.
const writeTimeout = 10 * time.Second

// Heartbeat is how often an idle event stream sends a comment, so proxies
// and the browser keep it open and a dead client is noticed.
const Heartbeat = 15 * time.Second

// ServeHTTP streams events as server-sent events (GET /api/events). A
// client that reconnects with Last-Event-ID, or asks ?after=N, first gets
// the kept events it missed; ?replay=1 replays everything kept.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	after, replay := uint64(0), false
	for _, v := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, `{"error":"events: after / Last-Event-ID must be an event id"}`, http.StatusBadRequest)
			return
		}
		after, replay = n, true
	}
	if r.URL.Query().Get("replay") == "1" {
		replay = true
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sub := h.Subscribe(after, replay, 64)
	defer h.Unsubscribe(sub)
	// The server's write timeout is for requests; a stream lives on, but a
	// client that stops reading must not hold a write, and the handler,
	// for ever: every write gets its own deadline.
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// Tell the client how soon to come back if the stream drops.
	if err := write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	beat := time.NewTicker(Heartbeat)
	defer beat.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-beat.C:
			err = write([]byte(": heartbeat\n\n"))
		case e, ok := <-sub.C():
			if !ok {
				return // cut off for lagging, or shutting down: the client reconnects with Last-Event-ID
			}
			b, merr := e.MarshalSSE()
			if merr != nil {
				continue
			}
			err = write(b)
		}
		if err != nil {
			return
		}
	}
}
