package cards

import (
	"context"
	"errors"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/pn532"
)

// counting is an I2C bus that counts what crosses the wire.
type counting struct {
	i2c.Bus
	txs, bytes int
}

func (c *counting) Tx(addr uint16, w, r []byte) error {
	c.txs++
	c.bytes += len(w) + len(r)
	return c.Bus.Tx(addr, w, r)
}

// BenchmarkPollEmptyField is one poll of the reader on an empty field, the
// reader loop's steady state. Besides CPU time it reports the bus traffic
// per poll and the share of a 100 kHz bus the loop takes at one poll per
// 150 ms: the shunt and gauge share the same wires.
func BenchmarkPollEmptyField(b *testing.B) {
	bus := &counting{Bus: emu.NewBus("bench", 1)}
	bus.Bus.(*emu.Bus).Attach(pn532.Addr, pn532.NewEmulator())
	d, err := pn532.New(bus, pn532.Addr, &pn532.DefaultOpts)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	bus.txs, bus.bytes = 0, 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Poll(ctx); !errors.Is(err, pn532.ErrNoCard) {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	txs, bytes := float64(bus.txs)/float64(b.N), float64(bus.bytes)/float64(b.N)
	// Each transaction: start, address byte and ACK (9 clocks), a repeated
	// start and address where it both writes and reads, stop; each byte 9 clocks.
	clocks := txs*(9+2) + bytes*9
	busTime := clocks / float64(100*physic.KiloHertz/physic.Hertz)
	b.ReportMetric(txs, "tx/poll")
	b.ReportMetric(bytes, "bytes/poll")
	b.ReportMetric(busTime*1e3, "bus-ms/poll")
	b.ReportMetric(100*busTime/0.150, "%bus@150ms")
}
