package lighting

import (
	"fmt"

	"periph.io/x/conn/v3/gpio"

	"github.com/microretail/kioskd/drivers/pca9685"
)

// Strip is one LED strip switched by a MOSFET on a GPIO line: on at any
// level above zero, off at zero.
type Strip struct {
	Pin        gpio.PinOut
	ActiveHigh bool // the level that turns the strip on
}

// Channels implements Output.
func (s *Strip) Channels() int { return 1 }

// Set implements Output.
func (s *Strip) Set(duties []uint16) error {
	on := len(duties) > 0 && duties[0] > 0
	if err := s.Pin.Out(gpio.Level(on == s.ActiveHigh)); err != nil {
		return fmt.Errorf("lighting: strip on %s: %w", s.Pin, err)
	}
	return nil
}

// Close turns the strip off.
func (s *Strip) Close() error { return s.Set(nil) }

// PWMBoard is a PCA9685 board driving up to 16 channels.
type PWMBoard struct{ Dev *pca9685.Dev }

// Channels implements Output.
func (b PWMBoard) Channels() int { return pca9685.Channels }

// Set implements Output: every channel in one bus transaction.
func (b PWMBoard) Set(duties []uint16) error { return b.Dev.SetDuties(0, duties) }

// Close switches every channel off and puts the board to sleep.
func (b PWMBoard) Close() error { return b.Dev.Halt() }
