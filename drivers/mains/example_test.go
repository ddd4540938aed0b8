package mains_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/mains"
)

func Example() {
	// An X1200's PLD line, high while the supply is OK. On a kiosk it is
	// the GPIO6 pin from the board's GPIO registry.
	line := emu.NewPin("GPIO6", 6, gpio.High)
	m, err := mains.New(line, &mains.Opts{ActiveHigh: true, Debounce: 5 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Halt()
	fmt.Println(m, "present:", m.Present(), "polling:", m.Polling())

	line.Bounce(gpio.Low, 5) // the adapter is pulled; the detector chatters
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	present, err := m.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("present:", present)
	// Output:
	// mains(GPIO6(emu)) present: true polling: false
	// present: false
}

// The X728 drives the line the other way: high on power loss.
func Example_x728() {
	line := emu.NewPin("GPIO6", 6, gpio.Low).NoEdges()
	m, err := mains.New(line, &mains.Opts{ActiveHigh: false, Debounce: 5 * time.Millisecond, Poll: time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Halt()
	line.Drive(gpio.High)
	present, err := m.Wait(context.Background())
	fmt.Println("present:", present, err, "polling:", m.Polling())
	// Output:
	// present: false <nil> polling: true
}
