package events

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHubReplayAndLag(t *testing.T) {
	h := NewHub(4, func() time.Time { return time.Unix(0, 0) })
	for i := 0; i < 6; i++ {
		h.Publish(CardTap, map[string]int{"n": i})
	}
	got := h.Recent(0)
	if len(got) != 4 || got[0].ID != 3 || got[3].ID != 6 {
		t.Fatalf("ring kept %v, want ids 3..6", got)
	}
	if r := h.Recent(5); len(r) != 1 || r[0].ID != 6 {
		t.Fatalf("Recent(5) = %v", r)
	}

	s := h.Subscribe(4, true, 1)
	for _, want := range []uint64{5, 6} {
		if e := <-s.C(); e.ID != want {
			t.Fatalf("replayed %d, want %d", e.ID, want)
		}
	}
	h.Publish(DeviceOK, nil)
	if e := <-s.C(); e.ID != 7 || e.Type != DeviceOK {
		t.Fatalf("live event %+v", e)
	}
	// Fill the listener's buffer (at least 16) and one more: it is cut off.
	for i := 0; i < 40; i++ {
		h.Publish(DeviceOK, nil)
	}
	n := 0
	for range s.C() {
		n++
	}
	if !s.Lagged() || n == 40 {
		t.Fatalf("a stalled listener was not cut off: lagged=%v, got %d", s.Lagged(), n)
	}
	h.Unsubscribe(s) // after a cut: must not panic
}

func TestMarshalSSE(t *testing.T) {
	e := Event{ID: 42, Type: CardTap, Time: time.Unix(1700000000, 0).UTC(), Data: map[string]string{"uid": "04a22b91"}}
	b, err := e.MarshalSSE()
	if err != nil {
		t.Fatal(err)
	}
	want := "id: 42\nevent: card_tap\ndata: {\"id\":42,\"type\":\"card_tap\",\"ts\":\"2023-11-14T22:13:20Z\",\"data\":{\"uid\":\"04a22b91\"}}\n\n"
	if string(b) != want {
		t.Fatalf("got %q\nwant %q", b, want)
	}
	if strings.Count(string(b), "\n\n") != 1 {
		t.Fatal("an event must end with exactly one blank line")
	}
}

func TestServeSSE(t *testing.T) {
	h := NewHub(0, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	h.Publish(DeviceOK, map[string]string{"name": "nfc"})
	h.Publish(DeviceOffline, map[string]string{"name": "nfc"})

	// A client coming back after event 1 gets event 2, then live ones.
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Last-Event-ID", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	next := func() string {
		t.Helper()
		var ev []string
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\n" {
				if len(ev) > 0 && !strings.HasPrefix(ev[0], "retry:") {
					return strings.Join(ev, "")
				}
				ev = nil
				continue
			}
			ev = append(ev, line)
		}
	}
	if got := next(); !strings.HasPrefix(got, "id: 2\nevent: device_offline\n") {
		t.Fatalf("replay: %q", got)
	}
	go h.Publish(CardTap, map[string]string{"uid": "04a22b91"})
	if got := next(); !strings.HasPrefix(got, "id: 3\nevent: card_tap\n") || !strings.Contains(got, `"uid":"04a22b91"`) {
		t.Fatalf("live: %q", got)
	}

	bad, err := http.Get(srv.URL + "?after=x")
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Fatalf("after=x: %d", bad.StatusCode)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	h := NewHub(0, nil)
	s := h.Subscribe(0, false, 0)
	h.Close()
	if _, ok := <-s.C(); ok {
		t.Fatal("a listener's stream stayed open after Close")
	}
	late := h.Subscribe(0, false, 0)
	if _, ok := <-late.C(); ok {
		t.Fatal("a listener after Close got an open stream")
	}
	h.Publish(CardTap, nil) // must not panic on closed streams
	h.Unsubscribe(s)
}

// TestReplayAfterRestart: a page that saw event 500 from the kioskd before
// a restart reconnects with Last-Event-ID 500 to a hub numbering afresh;
// it gets everything kept instead of nothing.
func TestReplayAfterRestart(t *testing.T) {
	h := NewHub(0, nil)
	h.Publish(MainsLost, nil)
	h.Publish(CardTap, nil)
	s := h.Subscribe(500, true, 0)
	if got := len(s.C()); got != 2 {
		t.Fatalf("replayed %d events, want the 2 kept", got)
	}
}
