package pca9685_test

import (
	"fmt"
	"log"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/pca9685"
)

func Example() {
	bus := emu.NewBus("i2c-1", 1)
	chip := pca9685.NewEmulator()
	bus.Attach(0x40, chip)

	lights, err := pca9685.New(bus, 0x40, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer lights.Halt()
	// The receipt-slot light at a quarter, the card-reader ring full on,
	// in one transaction.
	if err := lights.SetDuties(0, []uint16{pca9685.MaxDuty / 4, pca9685.MaxDuty}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(lights, lights.Frequency())
	fmt.Println(chip.Duty(0), chip.Duty(1), chip.Duty(2))
	// Output:
	// PCA9685{i2c-1, 0x40} 1.017kHz
	// 0.25 1 0
}

// A brownout resets the chip and the lights go dark; the next write finds
// the chip reset and reloads every channel.
func Example_reset() {
	bus := emu.NewBus("i2c-1", 1)
	chip := pca9685.NewEmulator()
	bus.Attach(0x40, chip)
	lights, err := pca9685.New(bus, 0x40, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := lights.SetDuty(0, pca9685.MaxDuty/2); err != nil {
		log.Fatal(err)
	}

	bus.Reset(0x40)
	fmt.Printf("after the brownout: MODE1 0x%02x, LED0 %v\n", chip.Register(0x00), chip.Duty(0))

	if err := lights.SetDuty(1, pca9685.MaxDuty); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after the next write: MODE1 0x%02x, LED0 %v, LED1 %v\n", chip.Register(0x00), chip.Duty(0), chip.Duty(1))
	// Output:
	// after the brownout: MODE1 0x11, LED0 0
	// after the next write: MODE1 0x20, LED0 0.5, LED1 1
}
