// Package pca9685 drives the NXP PCA9685, a 16-channel, 12-bit PWM LED
// controller on I2C. The kiosk dims its lights with it: the receipt-slot
// light, the card-reader ring, the status bar.
//
// Datasheet: NXP "PCA9685 16-channel, 12-bit PWM Fm+ I2C-bus LED
// controller", Product data sheet, Rev. 4, 16 April 2015. Section numbers
// in this package refer to it.
//
// # Identity
//
// The chip has no ID register. New takes it for a PCA9685 when the read-only
// parts of its register map read as the datasheet says they must: MODE2
// bits 7:5 are 0 (Table 6), PRE_SCALE is never below 3 (7.3.5) and the
// write-only ALL_LED_OFF_H reads 0 (Table 4). A different chip at the same
// address can still pass; the All Call and Sub Call addresses cannot be
// probed without disturbing every other PCA9685 on the bus.
//
// # Resets
//
// A brownout or a software reset returns MODE1 to 0x11 (SLEEP and ALLCALL
// set, AI clear), PRE_SCALE to 0x1E and every channel to full off: the
// lights go dark and stay dark. Dev reads MODE1 back after each write and,
// when it is not what it programmed, sets the chip up again and reloads
// every channel from the duties it last set.
//
// # Known problems
//
// NXP publishes no errata for the part; what the field knows:
//   - The internal oscillator is nominally 25 MHz but boards measure from
//     about 23 MHz to 27 MHz (Adafruit PWM Servo Driver library, PR #72), so
//     the PWM frequency is ±10%. Set Opts.Oscillator to a measured value
//     where that matters; for LEDs it does not.
//   - EXTCLK is sticky: once set, only a power cycle or a software reset
//     clears it. Dev never sets it and keeps it as found.
//   - LEDn_ON and LEDn_OFF must never hold the same count (7.3.4); Dev never
//     writes them equal except through the full-on and full-off bits.
//   - The default LED All Call address 0x70 is enabled at power-on (7.1.2)
//     and collides with other chips kiosks carry there (HT16K33 displays,
//     TCA9548A muxes). Dev clears ALLCALL; it is set again by every reset.
package pca9685
