package main

import (
	"fmt"
	"os"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/firmware/sim"
)

// hardware is where a board's buses and lines come from: the kernel's
// devices on a real board, the emulators on the sim board.
type hardware interface {
	I2C(name string) (i2c.Bus, error)
	Line(name string) (gpio.PinIO, error)
	Close() error
}

// openHardware returns the hardware for a profile. On a real board,
// periph.io's host drivers find /dev/i2c-N and the GPIO character
// devices; a board where they fail still runs, with those devices offline.
func openHardware(p boards.Profile, world *sim.World) hardware {
	if p.IsSim() {
		return simHardware{world}
	}
	return &hostHardware{buses: map[string]i2c.BusCloser{}}
}

type simHardware struct{ *sim.World }

func (simHardware) Close() error { return nil }

// hostHardware opens the kernel's devices through periph.io, lazily, so a
// bus that is missing at start (i2c not enabled in config.txt) is retried
// with its devices.
type hostHardware struct {
	once    sync.Once
	initErr error

	mu    sync.Mutex
	buses map[string]i2c.BusCloser
}

func (h *hostHardware) init() error {
	h.once.Do(func() {
		if _, err := host.Init(); err != nil {
			h.initErr = fmt.Errorf("periph host drivers: %w", err)
		}
	})
	return h.initErr
}

// I2C opens a bus by its device path ("/dev/i2c-1") once and shares it:
// the chips on one bus take turns through one file.
func (h *hostHardware) I2C(name string) (i2c.Bus, error) {
	if err := h.init(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.buses[name]; ok {
		return b, nil
	}
	if _, err := os.Stat(name); err != nil {
		return nil, fmt.Errorf("i2c bus %s: %w (enable it with dtparam=i2c_arm=on in config.txt)", name, err)
	}
	b, err := i2creg.Open(name)
	if err != nil {
		return nil, fmt.Errorf("i2c bus %s: %w", name, err)
	}
	h.buses[name] = b
	return b, nil
}

func (h *hostHardware) Line(name string) (gpio.PinIO, error) {
	if err := h.init(); err != nil {
		return nil, err
	}
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, fmt.Errorf("gpio line %s: no GPIO chip offers it (is this the right board?)", name)
	}
	return p, nil
}

func (h *hostHardware) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for n, b := range h.buses {
		_ = b.Close()
		delete(h.buses, n)
	}
	return nil
}
