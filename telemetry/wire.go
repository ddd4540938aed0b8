package telemetry

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/microretail/kioskd/firmware/ledger"
)

// The topic contract, as DESIGN.md lists it. Every kiosk topic is
// kiosk/<id>/<suffix>; fleet/cmd reaches every kiosk.
const (
	TopicStatus     = "status"
	TopicPower      = "tele/power"
	TopicHealth     = "tele/health"
	TopicEvents     = "events"
	TopicSales      = "sales"
	TopicSalesAck   = "sales/ack"
	TopicCmd        = "cmd"
	TopicCmdResult  = "cmd/result"
	TopicOTA        = "ota"
	TopicFleetCmd   = "fleet/cmd"
	topicKioskRoot  = "kiosk/"
	maxKioskIDBytes = 64
)

// Topic names a kiosk's topic: Topic("k1", TopicSales) is "kiosk/k1/sales".
func Topic(kiosk, suffix string) string { return topicKioskRoot + kiosk + "/" + suffix }

// SplitTopic is the inverse of Topic: the kiosk id and the suffix, or
// ok=false for a topic outside kiosk/<id>/….
func SplitTopic(topic string) (kiosk, suffix string, ok bool) {
	rest, ok := strings.CutPrefix(topic, topicKioskRoot)
	if !ok {
		return "", "", false
	}
	kiosk, suffix, ok = strings.Cut(rest, "/")
	if !ok || kiosk == "" || suffix == "" {
		return "", "", false
	}
	return kiosk, suffix, true
}

// Status is the retained message on kiosk/<id>/status: the birth, the
// Last Will and the clean stop's last word.
type Status struct {
	State   string    `json:"state"` // "online" or "offline"
	Boot    uint64    `json:"boot"`
	Version string    `json:"version,omitempty"`
	Board   string    `json:"board,omitempty"`
	TS      time.Time `json:"ts"`
	// Reason says why a kiosk went offline on purpose ("stop", "reboot",
	// "shutdown: …"); a Last Will has none, as the broker sends it.
	Reason string `json:"reason,omitempty"`
	// LastShutdown is the reason the previous boot gave, in a birth.
	LastShutdown string `json:"last_shutdown,omitempty"`
}

// Battery is the battery block of tele/power and the till's status.
type Battery struct {
	Volts    float64 `json:"volts"`
	Amps     float64 `json:"amps"`
	SoC      float64 `json:"soc"`
	RuntimeS int64   `json:"runtime_s"`
	// RuntimeSource says what the runtime estimate came from ("shunt",
	// "gauge", either "+voltage curve"); RuntimeNote a fallback or a
	// disagreement between the gauges.
	RuntimeSource string `json:"runtime_source,omitempty"`
	RuntimeNote   string `json:"runtime_note,omitempty"`
}

// OTAStatus is kiosk/<id>/ota (QoS 1, retained): the kiosk's update job.
// Progress is the download's percent, 0-100.
type OTAStatus struct {
	TS       time.Time `json:"ts"`
	Job      string    `json:"job"`
	Version  string    `json:"version"`
	State    string    `json:"state"`
	Progress float64   `json:"progress"`
	Error    string    `json:"error,omitempty"`
	// Running is the version the kiosk runs now.
	Running string `json:"running,omitempty"`
}

// Power is kiosk/<id>/tele/power.
type Power struct {
	TS    time.Time `json:"ts"`
	Seq   uint64    `json:"seq"`
	Mains bool      `json:"mains"`
	Mode  string    `json:"mode"`
	// MainsSource is "line" while the mains-detect line is trusted, or
	// "battery trend" while it is stuck or unreadable.
	MainsSource string   `json:"mains_source,omitempty"`
	Battery     *Battery `json:"battery,omitempty"`
}

// Health is kiosk/<id>/tele/health.
type Health struct {
	TS                   time.Time         `json:"ts"`
	Seq                  uint64            `json:"seq"`
	UptimeS              int64             `json:"uptime_s"`
	Boot                 uint64            `json:"boot"`
	CheckoutAvailability float64           `json:"checkout_availability"`
	Devices              map[string]string `json:"devices"`
	Outbox               uint64            `json:"outbox"`
	DiskFree             uint64            `json:"disk_free"`
	CPUTempC             *float64          `json:"cpu_temp_c"` // null where the board has no sensor
	Version              string            `json:"version,omitempty"`
	Config               uint64            `json:"config_version"`
}

// Event is one message on kiosk/<id>/events.
type Event struct {
	TS   time.Time       `json:"ts"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
}

// SalesBatch is one message on kiosk/<id>/sales: the entries from FromSeq
// to ToSeq, in order and with no gaps.
type SalesBatch struct {
	FromSeq uint64         `json:"from_seq"`
	ToSeq   uint64         `json:"to_seq"`
	Entries []ledger.Entry `json:"entries"`
}

// SalesAck is the ingest's answer on kiosk/<id>/sales/ack: everything up
// to and including UptoSeq is stored at the fleet.
type SalesAck struct {
	UptoSeq uint64 `json:"upto_seq"`
}

// Command is one message on kiosk/<id>/cmd or fleet/cmd.
type Command struct {
	ID   string          `json:"id"`
	Cmd  string          `json:"cmd"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Result is a kiosk's answer on kiosk/<id>/cmd/result, carrying the
// command's correlation id.
type Result struct {
	ID    string          `json:"id"`
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	// Kiosk says who answered, so a console listening to many kiosks
	// need not parse the topic.
	Kiosk string `json:"kiosk,omitempty"`
	// Replayed is true when the answer came from the kiosk's memory of a
	// command it had already run.
	Replayed bool `json:"replayed,omitempty"`
}

// Limits on what a command may carry. A command id is an operator's
// correlation id, remembered for dedupe; args are small JSON objects.
const (
	MaxCommandBytes = 256 << 10 // a config command carries a whole catalog
	MaxCommandID    = 128
)

// ErrMalformed wraps every reason a payload is refused.
var ErrMalformed = errors.New("malformed")

// ParseCommand reads a command payload strictly: a JSON object with a
// non-empty id and command name; args, when present, must be an object.
// The id may come back even with an error, so the refusal can carry it.
func ParseCommand(b []byte) (Command, error) {
	var c Command
	if len(b) > MaxCommandBytes {
		return c, fmt.Errorf("%w: command is %d bytes, at most %d", ErrMalformed, len(b), MaxCommandBytes)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		// Salvage the id for the refusal, if the payload has one.
		var probe struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(b, &probe)
		return Command{ID: clip(probe.ID)}, fmt.Errorf("%w: command: %v", ErrMalformed, err)
	}
	switch {
	case c.ID == "":
		return c, fmt.Errorf("%w: command has no id", ErrMalformed)
	case len(c.ID) > MaxCommandID:
		c.ID = clip(c.ID)
		return c, fmt.Errorf("%w: command id longer than %d bytes", ErrMalformed, MaxCommandID)
	case c.Cmd == "":
		return c, fmt.Errorf("%w: command %q has no cmd", ErrMalformed, c.ID)
	}
	if a := strings.TrimSpace(string(c.Args)); a != "" && a != "null" && !strings.HasPrefix(a, "{") {
		return c, fmt.Errorf("%w: command %q: args must be an object", ErrMalformed, c.ID)
	}
	return c, nil
}

func clip(id string) string {
	if len(id) > MaxCommandID {
		return id[:MaxCommandID]
	}
	return id
}

// ParseSalesAck reads an ack strictly.
func ParseSalesAck(b []byte) (SalesAck, error) {
	var a SalesAck
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(&a); err != nil {
		return a, fmt.Errorf("%w: sales ack: %v", ErrMalformed, err)
	}
	return a, nil
}

// ParseSalesBatch reads a batch and checks it is whole: entries in order
// from FromSeq to ToSeq with no gaps, each self-consistent (ledger.Entry's
// own checks) and all from one kiosk.
func ParseSalesBatch(b []byte) (SalesBatch, error) {
	var s SalesBatch
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%w: sales batch: %v", ErrMalformed, err)
	}
	if len(s.Entries) == 0 || s.FromSeq == 0 || s.ToSeq < s.FromSeq || uint64(len(s.Entries)) != s.ToSeq-s.FromSeq+1 {
		return s, fmt.Errorf("%w: sales batch %d..%d holds %d entries", ErrMalformed, s.FromSeq, s.ToSeq, len(s.Entries))
	}
	for i, e := range s.Entries {
		if e.Seq != s.FromSeq+uint64(i) {
			return s, fmt.Errorf("%w: sales batch %d..%d: entry %d has seq %d", ErrMalformed, s.FromSeq, s.ToSeq, i, e.Seq)
		}
		if e.KioskID != s.Entries[0].KioskID {
			return s, fmt.Errorf("%w: sales batch mixes kiosks %q and %q", ErrMalformed, s.Entries[0].KioskID, e.KioskID)
		}
	}
	return s, nil
}
