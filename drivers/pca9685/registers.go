package pca9685

import (
	"time"

	"periph.io/x/conn/v3/physic"
)

// reg is a register address, the value written to the control register to
// point at it (datasheet Table 4).
type reg byte

// Registers. 0x46-0xF9 are reserved and not acknowledged.
const (
	regMode1      reg = 0x00 // MODE1: restart, clock source, auto-increment, sleep, call-address enables
	regMode2      reg = 0x01 // MODE2: output invert, change on STOP/ACK, output drive, OE behaviour
	regSubAdr1    reg = 0x02 // SUBADR1: LED Sub Call address 1, power-on 0xE2, bit 0 reads 0
	regSubAdr2    reg = 0x03 // SUBADR2: LED Sub Call address 2, power-on 0xE4
	regSubAdr3    reg = 0x04 // SUBADR3: LED Sub Call address 3, power-on 0xE8
	regAllCallAdr reg = 0x05 // ALLCALLADR: LED All Call address, power-on 0xE0 (7-bit 0x70)
	regLED0       reg = 0x06 // LED0_ON_L; channel n's ON_L, ON_H, OFF_L, OFF_H start at regLED0+4n
	regLEDLast    reg = 0x45 // LED15_OFF_H; auto-increment goes from here to MODE1
	regAllLEDOnL  reg = 0xFA // ALL_LED_ON_L: loads every LEDn_ON_L; write only, reads 0
	regAllLEDOnH  reg = 0xFB // ALL_LED_ON_H: loads every LEDn_ON_H; write only, reads 0
	regAllLEDOffL reg = 0xFC // ALL_LED_OFF_L: loads every LEDn_OFF_L; write only, reads 0
	regAllLEDOffH reg = 0xFD // ALL_LED_OFF_H: loads every LEDn_OFF_H; write only, reads 0
	regPreScale   reg = 0xFE // PRE_SCALE: period = 4096*(PRE_SCALE+1) clocks; writable only in SLEEP, floor 3
	regTestMode   reg = 0xFF // TestMode: reserved, writes may cause unpredictable results
)

// ledReg is the first of channel ch's four registers, LEDch_ON_L.
func ledReg(ch int) reg { return regLED0 + reg(4*ch) }

// MODE1 bits (Table 5).
const (
	mode1Restart = 1 << 7 // RESTART: reads 1 if channels were running when SLEEP was set; writing 1 restarts them
	mode1ExtClk  = 1 << 6 // EXTCLK: clock from the EXTCLK pin; sticky until power-on or software reset
	mode1AI      = 1 << 5 // AI: the control register auto-increments after each byte
	mode1Sleep   = 1 << 4 // SLEEP: oscillator off, outputs stopped; set at power-on
	mode1Sub1    = 1 << 3 // SUB1: answer SUBADR1
	mode1Sub2    = 1 << 2 // SUB2: answer SUBADR2
	mode1Sub3    = 1 << 1 // SUB3: answer SUBADR3
	mode1AllCall = 1 << 0 // ALLCALL: answer ALLCALLADR; set at power-on
)

// MODE2 bits (Table 6).
const (
	mode2Reserved = 0xE0   // bits 7:5: reserved, read only, 0
	mode2Invrt    = 1 << 4 // INVRT: output logic state inverted
	mode2OCH      = 1 << 3 // OCH: outputs change on ACK instead of on STOP
	mode2OutDrv   = 1 << 2 // OUTDRV: totem-pole outputs (1, power-on) or open drain (0)
	mode2OutNE    = 0x03   // OUTNE[1:0]: output state while OE is high
)

// LEDn_ON_H and LEDn_OFF_H bits (Table 7).
const (
	ledFull     = 1 << 4 // ON_H: full on; OFF_H: full off, which wins over full on
	ledCountHi  = 0x0F   // count bits 11:8
	ledReserved = 0xE0   // bits 7:5: reserved, read only, 0
)

const (
	prescaleMin   = 3                      // the hardware never holds less in PRE_SCALE (7.3.5)
	prescaleMax   = 255                    // 24 Hz with the internal oscillator
	prescalePOR   = 0x1E                   // PRE_SCALE at power-on: 200 Hz at 25 MHz
	oscStartup    = 500 * time.Microsecond // oscillator start-up after SLEEP is cleared (7.3.1)
	allCallAddr   = 0x70                   // 7-bit LED All Call address at power-on (0xE0 in 8-bit form)
	maxOscillator = 50_000_000             // EXTCLK maximum, Hz

	internalOscillator = 25 * physic.MegaHertz // nominal; boards measure 23-27 MHz
)
