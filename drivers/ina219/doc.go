// Package ina219 drives TI's INA219 and INA226 current, voltage and power
// monitors: a shunt resistor in the supply, the chip measuring the voltage
// across it and the bus voltage, and computing current and power from a
// calibration the driver programs. Waveshare's UPS HATs carry an INA219
// with a 0.1 Ω shunt on the battery, so the kiosk knows whether it runs on
// mains or battery and how fast it drains.
//
// Datasheets:
//   - INA219 Zerø-Drift, Bidirectional Current/Power Monitor With I2C
//     Interface, SBOS448G (August 2008, revised December 2015).
//   - INA226 High-Side or Low-Side Measurement, Bi-Directional Current and
//     Power Monitor with I2C Compatible Interface, SBOS547B (June 2011,
//     revised September 2024).
//
// Both lose their configuration and calibration on a power-on reset, which
// a dip in their supply causes even when the Pi rides it out. The
// calibration register then reads 0 and so do current and power; Sense
// detects this the way Linux's drivers/hwmon/ina2xx.c does and programs the
// chip again.
//
// Errata and datasheet gaps:
//   - The INA219's CNVR bit is documented as cleared by reading the power
//     register; a user on TI's E2E forum (thread 647053) saw it clear on a
//     read of the bus voltage register instead. The driver reads the bus
//     register first and power last, which works either way, and relies on
//     CNVR only after it has written the configuration.
//   - The INA219 has no ID register: New resets it and checks the
//     configuration reads back its power-on value, 0x399F.
package ina219
