package max17048

import "fmt"

// reg is a register address. Registers are 16 bits, MSB first, at even
// addresses; the chip addresses bytes and auto-increments.
type reg byte

const (
	regVCell   reg = 0x02 // cell voltage, 78.125 µV per cell (R)
	regSOC     reg = 0x04 // state of charge, 1/256 % (R)
	regMode    reg = 0x06 // Quick-Start, EnSleep, HibStat (W; HibStat R)
	regVersion reg = 0x08 // production version, 0x001X (R)
	regHibRT   reg = 0x0A // hibernate thresholds: HibThr 0.208 %/h, ActThr 1.25 mV (R/W)
	regConfig  reg = 0x0C // RCOMP, SLEEP, ALSC, ALRT, ATHD (R/W)
	regVAlrt   reg = 0x14 // voltage alert window: MIN high byte, MAX low byte, 20 mV (R/W)
	regCRate   reg = 0x16 // charge or discharge rate, signed, 0.208 %/h (R)
	regVReset  reg = 0x18 // VRESET (bits 15..9, 40 mV) and Dis (bit 8); ID in the low byte (R/W, ID R)
	regStatus  reg = 0x1A // alert flags RI VH VL VR HD SC, and EnVR (R/W)
	regCmd     reg = 0xFE // writing 0x5400 resets the chip as at power-on (W)
)

func (r reg) String() string {
	switch r {
	case regVCell:
		return "VCELL"
	case regSOC:
		return "SOC"
	case regMode:
		return "MODE"
	case regVersion:
		return "VERSION"
	case regHibRT:
		return "HIBRT"
	case regConfig:
		return "CONFIG"
	case regVAlrt:
		return "VALRT"
	case regCRate:
		return "CRATE"
	case regVReset:
		return "VRESET/ID"
	case regStatus:
		return "STATUS"
	case regCmd:
		return "CMD"
	}
	return fmt.Sprintf("register 0x%02x", byte(r))
}

// Register values and fields (19-6171 Rev 7, register summary and descriptions).
const (
	modeQuickStart uint16 = 1 << 14 // restart fuel-gauge calculations; self-clearing
	modeEnSleep    uint16 = 1 << 13 // allow CONFIG.SLEEP to put the chip to sleep
	modeHibStat    uint16 = 1 << 12 // the chip is hibernating (R)

	versionMask uint16 = 0xFFF0
	versionBase uint16 = 0x0010 // MAX17048/MAX17049: 0x001X

	cfgALSC  uint16 = 1 << 6 // ALSC: alert on every 1 % change of SOC
	cfgALRT  uint16 = 1 << 5 // ALRT: an alert fired; cleared by writing 0
	cfgATHD  uint16 = 0x1F   // ATHD: empty alert at 32 - ATHD %
	rcompPOR uint16 = 0x97

	// STATUS: the alert flags are in the high byte, as Status has them.
	stRI       uint16 = 1 << 8  // reset indicator: set at power-on, until the host clears it
	stVH       uint16 = 1 << 9  // VCELL above VALRT.MAX
	stVL       uint16 = 1 << 10 // VCELL below VALRT.MIN
	stVR       uint16 = 1 << 11 // voltage reset: VCELL fell below VRESET (with EnVR)
	stHD       uint16 = 1 << 12 // SOC crossed below the empty threshold
	stSC       uint16 = 1 << 13 // SOC changed by 1 % (with CONFIG.ALSC)
	stEnVR     uint16 = 1 << 14 // enable the voltage reset alert
	stFlags    uint16 = 0x3F00
	stReserved uint16 = 1 << 15 // reads 0

	cmdPOR uint16 = 0x5400

	porMode   uint16 = 0x0000
	porHibRT  uint16 = 0x8030
	porConfig uint16 = 0x971C // RCOMP 0x97, 4 % threshold
	porVAlrt  uint16 = 0x00FF // MIN 0 V, MAX 5.1 V: never
	porVReset uint16 = 0x9600 // 3.0 V, comparator enabled; ID 0x00
	porStatus uint16 = stRI
)

// Units of the measurement registers.
const (
	vcellNanoVolt   = 78125 // VCELL LSB per cell
	crateMilli      = 208   // CRATE LSB, in 0.001 %/h
	valrtMilliVolt  = 20    // VALRT.MIN and VALRT.MAX LSB
	vresetMilliVolt = 40    // VRESET LSB
)
