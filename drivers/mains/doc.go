// Package mains tells whether the kiosk's mains supply is up, from the
// power-loss-detect (PLD) line a UPS HAT drives onto a GPIO input.
//
// The kiosks carry Geekworm X-series UPS HATs, which drive PLD on BCM
// GPIO6. There is no datasheet; the Geekworm wiki and Geekworm's own
// scripts are the reference, and they give the two boards opposite
// polarities:
//
//   - X1200 (and the X120x family): GPIO6 high means the supply is OK,
//     low that it failed ("X1200 Hardware", https://wiki.geekworm.com/X1200_Hardware,
//     and the X12xx pld.py sample). Opts.ActiveHigh true, the default.
//   - X728: GPIO6 goes high on AC power loss or adapter failure and low
//     when power is back (https://wiki.geekworm.com/X728, and
//     sample/x728-v2.x-plsd.py in github.com/geekworm-com/x728-script).
//     Set Opts.ActiveHigh false. PLD only works with the board's PLD jumper
//     fitted; without it the line stays low, which reads as mains present.
//
// The line chatters as the UPS's detector switches over, so a level counts
// only once it has held for Opts.Debounce. That is contact debouncing, tens
// of milliseconds; riding out a brownout of several seconds is the power
// policy's job, not this package's.
//
// Dev uses the line's edge interrupts when the GPIO controller has them
// and polls it otherwise (Polling reports which).
//
// There is no emulator here: an emu.Pin is the line. Tests and the sim
// board drive it with Drive and Bounce, and make a line without edge
// interrupts with NoEdges.
package mains
