package max17048_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/max17048"
	"periph.io/x/conn/v3/physic"
)

func Example() {
	bus := emu.NewBus("i2c-1", 1)
	gauge := max17048.NewEmulator(1)
	gauge.SetCell(3850 * physic.MilliVolt)
	gauge.SetSOC(76.5)
	gauge.SetRate(-4.16)
	bus.Attach(max17048.Addr, gauge)

	dev, err := max17048.New(bus, max17048.Addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	r, err := dev.Sense()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(dev)
	fmt.Println(r.Cell, r.SOC, r.Rate, r.Status, r.Alert)

	gauge.SetSOC(9.5) // below DefaultOpts' 10 %
	if r, err = dev.Sense(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.SOC, r.Status, r.Alert)
	if err := dev.ClearAlert(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// MAX17048{i2c-1(54)}
	// 3.850V 76.50% -4.16%/h none false
	// 9.50% HD true
}

// Without a battery the gauge is unpowered and does not answer.
func ExampleNew_noBattery() {
	bus := emu.NewBus("i2c-1", 1)
	gauge := max17048.NewEmulator(1)
	gauge.SetBattery(false)
	bus.Attach(max17048.Addr, gauge)

	_, err := max17048.New(bus, max17048.Addr, nil)
	fmt.Println(errors.Is(err, max17048.ErrNoBattery))
	// Output: true
}
