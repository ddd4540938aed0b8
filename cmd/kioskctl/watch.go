package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/microretail/kioskd/telemetry"
)

// watchLine is one message of `kioskctl watch --json`.
type watchLine struct {
	TS       time.Time       `json:"ts"` // when the console received it
	Kiosk    string          `json:"kiosk"`
	Topic    string          `json:"topic"` // the suffix after kiosk/<id>/
	Retained bool            `json:"retained,omitempty"`
	Payload  json.RawMessage `json:"payload"`
}

// watchBuffer is how many messages wait for the terminal before the tail
// drops some (and says so) rather than stall the MQTT client.
const watchBuffer = 4096

func watch(ctx context.Context, g *globals, args []string) int {
	fs := g.flags("watch")
	pos, ok := g.parse(fs, args)
	if !ok {
		return 2
	}
	if len(pos) > 1 {
		fmt.Fprintf(g.stderr, "kioskctl watch: one kiosk id at most\n%s", usage)
		return 2
	}
	topic := telemetry.Topic("+", "#")
	if len(pos) == 1 {
		if !validKioskID(pos[0]) {
			fmt.Fprintf(g.stderr, "kioskctl watch: bad kiosk id %q\n", pos[0])
			return 2
		}
		topic = telemetry.Topic(pos[0], "#")
	}
	lines := make(chan watchLine, watchBuffer)
	var dropped atomic.Int64
	handler := func(_ mqtt.Client, m mqtt.Message) {
		kiosk, suffix, ok := telemetry.SplitTopic(m.Topic())
		if !ok {
			return
		}
		l := watchLine{TS: clock(), Kiosk: kiosk, Topic: suffix, Retained: m.Retained(), Payload: compact(suffix, m.Payload())}
		select {
		case lines <- l:
		default:
			dropped.Add(1)
		}
	}
	var connects atomic.Int64
	c, err := g.connect(ctx, session{clientID: "kioskctl-" + randomID(), clean: true,
		onConnect: func(c mqtt.Client) {
			// Every reconnect subscribes again; the first subscription is
			// made (and checked) below.
			if connects.Add(1) > 1 {
				c.Subscribe(topic, 1, handler)
			}
		},
		onLost: func(err error) { fmt.Fprintf(g.stderr, "kioskctl watch: connection lost (%v), reconnecting\n", err) },
	})
	if err != nil {
		return g.fail("%v", err)
	}
	defer c.Disconnect(100)
	if err := subscribe(ctx, c, handler, topic); err != nil {
		return g.fail("%v", err)
	}
	fmt.Fprintf(g.stderr, "kioskctl watch: watching %s on %s (interrupt to stop)\n", topic, g.broker)
	enc := json.NewEncoder(g.stdout)
	for {
		select {
		case <-ctx.Done():
			return 0
		case l := <-lines:
			if n := dropped.Swap(0); n > 0 {
				fmt.Fprintf(g.stderr, "kioskctl watch: %d messages dropped (output too slow)\n", n)
			}
			var err error
			if g.json {
				err = enc.Encode(l)
			} else {
				ret := ""
				if l.Retained {
					ret = " (retained)"
				}
				_, err = fmt.Fprintf(g.stdout, "%s  %s  %s%s  %s\n", l.TS.Format("15:04:05.000"), l.Kiosk, l.Topic, ret, l.Payload)
			}
			if err != nil {
				return g.fail("%v", err)
			}
		}
	}
}

// compact makes a payload one line of JSON: sales batches shrink to
// {"from_seq","to_seq","count"}, payloads that are not JSON become strings.
func compact(suffix string, p []byte) json.RawMessage {
	if suffix == telemetry.TopicSales {
		var b struct {
			From    uint64            `json:"from_seq"`
			To      uint64            `json:"to_seq"`
			Entries []json.RawMessage `json:"entries"`
		}
		if json.Unmarshal(p, &b) == nil {
			out, _ := json.Marshal(map[string]uint64{"from_seq": b.From, "to_seq": b.To, "count": uint64(len(b.Entries))})
			return out
		}
	}
	var buf bytes.Buffer
	if json.Compact(&buf, p) == nil && json.Valid(buf.Bytes()) {
		return buf.Bytes()
	}
	out, _ := json.Marshal(string(p))
	return out
}

// validKioskID accepts what can be one level of a topic.
func validKioskID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r == '/' || r == '+' || r == '#' {
			return false
		}
	}
	return true
}
