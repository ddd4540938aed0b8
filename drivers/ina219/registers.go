package ina219

import (
	"fmt"
	"time"

	"periph.io/x/conn/v3/physic"
)

// reg is a register pointer. Every register is 16 bits, sent MSB first.
type reg byte

const (
	regConfig      reg = 0x00 // configuration: reset, ranges, ADC settings, mode (R/W)
	regShunt       reg = 0x01 // shunt voltage, two's complement (R)
	regBus         reg = 0x02 // bus voltage; on the INA219 also the CNVR and OVF flags (R)
	regPower       reg = 0x03 // power, unsigned; reading it clears CNVR on the INA219 (R)
	regCurrent     reg = 0x04 // current, two's complement, scaled by the calibration (R)
	regCalibration reg = 0x05 // calibration: sets the current and power LSBs; 0 after a reset (R/W)
	regMaskEnable  reg = 0x06 // INA226: alert functions and the CVRF and OVF flags; reading clears CVRF (R/W)
	regAlertLimit  reg = 0x07 // INA226: limit the selected alert function compares against (R/W)
	regMfrID       reg = 0xFE // INA226: manufacturer ID, 0x5449 ("TI") (R)
	regDieID       reg = 0xFF // INA226: die ID 0x226 in bits 15..4, revision in bits 3..0 (R)
)

func (r reg) String() string {
	switch r {
	case regConfig:
		return "configuration"
	case regShunt:
		return "shunt voltage"
	case regBus:
		return "bus voltage"
	case regPower:
		return "power"
	case regCurrent:
		return "current"
	case regCalibration:
		return "calibration"
	case regMaskEnable:
		return "mask/enable"
	case regAlertLimit:
		return "alert limit"
	case regMfrID:
		return "manufacturer ID"
	case regDieID:
		return "die ID"
	}
	return fmt.Sprintf("register 0x%02x", byte(r))
}

// Configuration register fields common to both chips.
const (
	cfgReset uint16 = 1 << 15 // RST: same as a power-on reset; self-clearing
	cfgMode  uint16 = 0x0007  // MODE3..1: operating mode
)

// Operating modes (MODE3..1), the same on both chips.
const (
	modePowerDown uint16 = 0 // 000: no conversions
	modeBothTrig  uint16 = 3 // 011: one shunt then one bus conversion
	modeBothCont  uint16 = 7 // 111: shunt then bus conversions, continuously
	modeShuntBit  uint16 = 1 // MODE1: convert the shunt voltage
	modeBusBit    uint16 = 2 // MODE2: convert the bus voltage
	modeContBit   uint16 = 4 // MODE3: convert continuously rather than once (100 alone: off)
)

// INA219 configuration register fields (SBOS448G, 8.6.2.1).
const (
	cfg219Writable  uint16 = 0x3FFF // bit 14 is unused and reads 0
	cfg219BRNG      uint16 = 1 << 13
	cfg219PGAShift         = 11 // PG1..0: shunt range ±40 mV × 2^PG
	cfg219BADCShift        = 7  // BADC4..1: bus ADC resolution/averaging
	cfg219SADCShift        = 3  // SADC4..1: shunt ADC resolution/averaging
	cfg219ADCMask   uint16 = 0xF
	adc219Avg8      uint16 = 0xB // 12 bits, 8 samples averaged: 4.26 ms
)

// INA219 bus voltage register flags.
const (
	bus219OVF      uint16 = 1 << 0 // math overflow: current or power out of range
	bus219CNVR     uint16 = 1 << 1 // conversion ready; cleared by reading power or writing a mode
	bus219Reserved uint16 = 1 << 2 // unused, reads 0
	bus219Shift           = 3      // BD12..0 start at bit 3
)

// INA226 configuration register fields (SBOS547B, Configuration Register).
const (
	cfg226Fixed       uint16 = 0x4000 // bits 14..12 always read 100
	cfg226Writable    uint16 = 0x0FFF
	cfg226AVGShift           = 9 // AVG2..0: samples averaged
	cfg226VBUSCTShift        = 6 // VBUSCT2..0: bus conversion time
	cfg226VSHCTShift         = 3 // VSHCT2..0: shunt conversion time
	cfg226FieldMask   uint16 = 0x7
	avg226x4          uint16 = 1 // 4 samples
	ct226ms1          uint16 = 4 // 1.1 ms per conversion
)

// INA226 mask/enable register bits (SBOS547B, Mask/Enable Register).
const (
	me226OVF      uint16 = 1 << 2 // math overflow
	me226CVRF     uint16 = 1 << 3 // conversion ready; cleared by reading this register or writing the configuration
	me226Reserved uint16 = 0x03E0 // bits 9..5, read 0
	me226Writable uint16 = 0xFC03 // alert function enables, APOL, LEN
	bus226Unused  uint16 = 1 << 15
	cal226Mask    uint16 = 0x7FFF // bit 15 is reserved
	mfrIDTI       uint16 = 0x5449
	dieID226      uint16 = 0x226 // in bits 15..4
)

// porConfig219 and porConfig226 are the configuration registers after a reset.
const (
	porConfig219 uint16 = 0x399F // 32 V, PGA /8, 12-bit, shunt and bus continuous
	porConfig226 uint16 = 0x4127 // 1 sample, 1.1 ms, shunt and bus continuous
)

// chip holds what differs between the INA219 and the INA226, as the
// ina2xx_config table in Linux's drivers/hwmon/ina2xx.c does.
type chip struct {
	name       string
	porConfig  uint16
	calK       int64  // 0.04096 or 0.00512, in the 1e-18 units of nA × nΩ
	calMask    uint16 // bits of the calibration register that hold a value
	currentDiv int64  // Current = Shunt × Cal / currentDiv
	powerDiv   int64  // Power = |Current| × Bus / powerDiv
	powerRatio int64  // power LSB / current LSB
	shuntLSB   physic.ElectricPotential
	busLSB     physic.ElectricPotential
	busShift   uint
	busMax     uint16 // full-scale bus count
}

func (v Variant) chip() chip {
	if v == INA226 {
		return chip{
			name: "INA226", porConfig: porConfig226,
			calK: 5_120_000_000_000_000, calMask: cal226Mask,
			currentDiv: 2048, powerDiv: 20000, powerRatio: 25,
			shuntLSB: 2500 * physic.NanoVolt, busLSB: 1250 * physic.MicroVolt,
			busShift: 0, busMax: 0x7FFF,
		}
	}
	return chip{
		name: "INA219", porConfig: porConfig219,
		calK: 40_960_000_000_000_000, calMask: 0xFFFE, // FS0 is void and reads 0
		currentDiv: 4096, powerDiv: 5000, powerRatio: 20,
		shuntLSB: 10 * physic.MicroVolt, busLSB: 4 * physic.MilliVolt,
		busShift: bus219Shift, busMax: 8000,
	}
}

// adc219Time is the INA219 conversion time for a BADC or SADC setting
// (SBOS448G, ADC settings table; the X bit of the 9- to 12-bit settings is
// ignored).
func adc219Time(code uint16) time.Duration {
	us := [16]time.Duration{84, 148, 276, 532, 84, 148, 276, 532,
		532, 1060, 2130, 4260, 8510, 17020, 34050, 68100}
	return us[code&cfg219ADCMask] * time.Microsecond
}

// ct226Time is the INA226 conversion time for a VBUSCT or VSHCT setting
// (SBOS547B, VBUSCT and VSHCT bit settings).
func ct226Time(code uint16) time.Duration {
	us := [8]time.Duration{140, 204, 332, 588, 1100, 2116, 4156, 8244}
	return us[code&cfg226FieldMask] * time.Microsecond
}

// avg226 is the number of samples an INA226 AVG setting averages.
func avg226(code uint16) int {
	n := [8]int{1, 4, 16, 64, 128, 256, 512, 1024}
	return n[code&cfg226FieldMask]
}

// conversionTime is how long one round of the conversions config selects
// takes: the shunt and/or bus conversion, each averaged.
func (v Variant) conversionTime(config uint16) time.Duration {
	mode := config & cfgMode
	shunt, bus := mode&modeShuntBit != 0, mode&modeBusBit != 0
	var ts, tb time.Duration
	if v == INA226 {
		n := time.Duration(avg226(config >> cfg226AVGShift))
		ts = n * ct226Time(config>>cfg226VSHCTShift)
		tb = n * ct226Time(config>>cfg226VBUSCTShift)
	} else {
		ts = adc219Time(config >> cfg219SADCShift)
		tb = adc219Time(config >> cfg219BADCShift)
	}
	var t time.Duration
	if shunt {
		t += ts
	}
	if bus {
		t += tb
	}
	return t
}
