package ina219_test

import (
	"fmt"
	"log"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/ina219"
	"periph.io/x/conn/v3/physic"
)

// A Waveshare UPS HAT: an INA219 at 0x42 with a 0.1 Ω shunt on two cells.
func Example() {
	bus := emu.NewBus("i2c-1", 1)
	chip := ina219.NewEmulator(ina219.INA219, 100*physic.MilliOhm)
	chip.SetBus(8 * physic.Volt)
	chip.SetCurrent(-500 * physic.MilliAmpere) // discharging
	bus.Attach(0x42, chip)

	ups, err := ina219.New(bus, 0x42, &ina219.DefaultOpts)
	if err != nil {
		log.Fatal(err)
	}
	defer ups.Halt()
	r, err := ups.Sense()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ups)
	fmt.Println(r.Bus, r.Shunt, r.Current, r.Power)
	// Output:
	// INA219{i2c-1(66)}
	// 8V -50mV -500mA 4W
}

// A brownout resets the chip; the next Sense programs it again.
func ExampleDev_Recalibrations() {
	bus := emu.NewBus("i2c-1", 1)
	chip := ina219.NewEmulator(ina219.INA226, 2*physic.MilliOhm)
	chip.SetBus(12 * physic.Volt)
	chip.SetCurrent(10 * physic.Ampere)
	bus.Attach(0x40, chip)

	dev, err := ina219.New(bus, 0x40, &ina219.Opts{Variant: ina219.INA226, Shunt: 2 * physic.MilliOhm, MaxCurrent: 15 * physic.Ampere})
	if err != nil {
		log.Fatal(err)
	}
	bus.Reset(0x40)
	r, err := dev.Sense()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Current, r.Power, dev.Recalibrations())
	fmt.Printf("calibration 0x%04x\n", chip.Register(0x05))
	// Output:
	// 10A 120W 1
	// calibration 0x1400
}
