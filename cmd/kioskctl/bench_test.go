package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/microretail/kioskd/internal/mosquitto"
	"github.com/microretail/kioskd/telemetry"
)

// BenchmarkIngest500: one kiosk's backlog in batches of 500, published
// as fast as the broker takes them, to the last ack. Reports sales/s.
func BenchmarkIngest500(b *testing.B) {
	br := mosquitto.Start(b, mosquitto.Options{})
	const per = 500
	batches := 40
	payloads := make([][]byte, batches)
	for i := range payloads {
		p, err := json.Marshal(batch("k1", uint64(i*per+1), uint64((i+1)*per)))
		if err != nil {
			b.Fatal(err)
		}
		payloads[i] = p
	}
	for n := range b.N {
		b.StopTimer()
		ctx, cancel := context.WithCancel(context.Background())
		errs := &syncBuffer{}
		done := make(chan int, 1)
		go func() {
			done <- runContext(ctx, []string{"sales", "ingest", "--broker", br.URL(), "--data", b.TempDir(), "--client-id", fmt.Sprint("bench-", n)}, &syncBuffer{}, errs)
		}()
		for !strings.Contains(errs.String(), `"subscribed"`) {
			time.Sleep(5 * time.Millisecond)
		}
		o := mqtt.NewClientOptions().AddBroker(br.URL()).SetClientID(fmt.Sprint("k1-", n))
		c := mqtt.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
		acked := make(chan struct{})
		last := uint64(batches * per)
		c.Subscribe(telemetry.Topic("k1", telemetry.TopicSalesAck), 1, func(_ mqtt.Client, m mqtt.Message) {
			if a, _ := telemetry.ParseSalesAck(m.Payload()); a.UptoSeq == last {
				close(acked)
			}
		}).Wait()
		b.StartTimer()
		start := time.Now()
		var toks []mqtt.Token
		for _, p := range payloads {
			toks = append(toks, c.Publish(telemetry.Topic("k1", telemetry.TopicSales), 1, false, p))
		}
		for _, tok := range toks {
			tok.Wait()
		}
		<-acked
		b.ReportMetric(float64(batches*per)/time.Since(start).Seconds(), "sales/s")
		b.StopTimer()
		c.Disconnect(50)
		cancel()
		<-done
	}
}

// BenchmarkFleet1000: `kioskctl fleet` over 1,000 kiosks' retained
// messages, from connect to the printed table.
func BenchmarkFleet1000(b *testing.B) {
	br := mosquitto.Start(b, mosquitto.Options{})
	o := mqtt.NewClientOptions().AddBroker(br.URL()).SetClientID("sim")
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	now := time.Now()
	var toks []mqtt.Token
	for i := range 1000 {
		id := fmt.Sprintf("k%04d", i)
		st, _ := json.Marshal(telemetry.Status{State: "online", Boot: 1, Version: "1.0.0", Board: "rpi4b", TS: now})
		h, _ := json.Marshal(telemetry.Health{TS: now, UptimeS: 100, CheckoutAvailability: 0.99, Devices: map[string]string{"printer": "ok"}})
		p, _ := json.Marshal(telemetry.Power{TS: now, Mode: "mains", Mains: true, Battery: &telemetry.Battery{SoC: 90}})
		toks = append(toks, c.Publish(telemetry.Topic(id, telemetry.TopicStatus), 1, true, st),
			c.Publish(telemetry.Topic(id, telemetry.TopicHealth), 0, true, h), c.Publish(telemetry.Topic(id, telemetry.TopicPower), 0, true, p))
	}
	for _, tok := range toks {
		tok.Wait()
	}
	c.Disconnect(100) // the retained messages are in once the broker has the DISCONNECT
	b.ResetTimer()
	for range b.N {
		code, out, errs := cli("--broker", br.URL(), "fleet")
		if code != 0 || !strings.Contains(out, "1000 kiosks: 1000 online") {
			b.Fatalf("%d %s %s", code, out[max(0, len(out)-200):], errs)
		}
	}
}
