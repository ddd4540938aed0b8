// Package max17048 drives Maxim's (now Analog Devices') MAX17048 and
// MAX17049 fuel gauges: the state of charge of a one- or two-cell lithium
// battery, from its voltage alone (the ModelGauge algorithm), with alerts
// for a low or changing charge and a voltage window. On a kiosk's battery
// backup it lets the till warn before the battery runs out.
//
// Datasheet: MAX17048/MAX17049 3µA 1-Cell/2-Cell Fuel Gauge with
// ModelGauge, 19-6171 Rev 7 (November 2016).
//
// The gauge is powered from the battery. With none fitted it does not
// answer at all, which callers see as ErrNoBattery; fitting one resets it,
// as does a brownout of the cell, and the reset returns CONFIG (with the
// alert threshold) to its power-on value and sets STATUS.RI. Sense checks
// RI and configures the gauge again.
//
// Notes beyond the datasheet:
//   - RCOMP stays at its power-on value, 0x97: the kiosk has no battery
//     temperature to compensate with.
//   - Writing the power-on-reset command (0x5400 to CMD) makes the chip
//     reset before it acknowledges the last byte, so the write reports a
//     NACK (Adafruit's CircuitPython driver relies on it). This package
//     never sends it.
package max17048
