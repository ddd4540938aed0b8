package pn532

import "fmt"

// The PN532 is driven through commands in frames, not through a register
// map: these are the command codes, parameters and status codes the driver
// and the emulator use, from UM0701-02 chapter 7 unless noted.

// command is a command code, PD0 of a host frame; the response code is
// the command code plus one.
type command byte

const (
	cmdGetFirmwareVersion  command = 0x02 // IC, firmware version and revision, supported protocols (§7.2.2)
	cmdSAMConfiguration    command = 0x14 // SAM use, timeout, P70_IRQ use; leaves the LowVbat start-up mode (§7.2.10)
	cmdRFConfiguration     command = 0x32 // RF settings by configuration item (§7.3.1)
	cmdInDataExchange      command = 0x40 // sends data to a listed target, returns status and its answer (§7.3.8)
	cmdInListPassiveTarget command = 0x4A // activates up to MaxTg targets in the field (§7.3.5)
	cmdInRelease           command = 0x52 // releases a listed target, 0 for all (§7.3.11)
)

func (c command) String() string {
	switch c {
	case cmdGetFirmwareVersion:
		return "GetFirmwareVersion"
	case cmdSAMConfiguration:
		return "SAMConfiguration"
	case cmdRFConfiguration:
		return "RFConfiguration"
	case cmdInDataExchange:
		return "InDataExchange"
	case cmdInListPassiveTarget:
		return "InListPassiveTarget"
	case cmdInRelease:
		return "InRelease"
	}
	return fmt.Sprintf("command(0x%02x)", byte(c))
}

// I2C status byte, the first byte of every read (UM0701 §6.2, I2C handshake).
const statusReady = 0x01 // RDY: a frame (ACK or response) is waiting to be read

// GetFirmwareVersion response.
const (
	icPN532     = 0x32 // IC byte of a PN532
	fwVersion   = 0x01 // Ver of firmware V1.6 (PN532/C106)
	fwRevision  = 0x06 // Rev of firmware V1.6
	fwSupported = 0x07 // Support: ISO/IEC 14443 Type A, Type B and ISO 18092
)

// SAMConfiguration parameters.
const (
	samNormal  = 0x01 // Mode: normal, no SAM
	samTimeout = 0x14 // Timeout in 50 ms units (virtual card mode only): 1 s
	samUseIRQ  = 0x01 // IRQ: the PN532 drives P70_IRQ
)

// RFConfiguration item MaxRetries (CfgItem 0x05) and its power-on values.
const (
	cfgRFField       = 0x01 // CfgItem: RF field on/off, 1 byte
	cfgTimings       = 0x02 // CfgItem: ATR_RES and retry timeouts, 3 bytes
	cfgMaxRtyCOM     = 0x04 // CfgItem: MaxRtyCOM, 1 byte
	cfgMaxRetries    = 0x05 // CfgItem: MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
	mxRtyATRReset    = 0xFF // MxRtyATR power-on value
	mxRtyPSLReset    = 0x01 // MxRtyPSL power-on value
	mxRtyPassiveWait = 0xFF // MxRtyPassiveActivation: retry for ever (the power-on value)
)

// InListPassiveTarget parameters.
const (
	maxTg    = 0x01 // MaxTg: one target at a time
	brTy106A = 0x00 // BrTy: 106 kbps ISO/IEC 14443 Type A
)

// Card commands sent through InDataExchange (NTAG213/215/216 data sheet §10).
const (
	ntagRead  = 0x30 // READ: 16 bytes, four pages from the start page
	ntagPages = 4    // pages a READ returns
	pageSize  = 4    // bytes per page
)

// Status codes in the first byte of InDataExchange and InRelease responses
// (UM0701 §7.1 Table 6). Bits 6 and 7 are the MI and NAD flags.
const (
	statusMask       = 0x3F
	stOK             = 0x00 // success
	stTimeout        = 0x01 // the target has not answered
	stCRC            = 0x02 // CRC error detected by the CIU
	stParity         = 0x03 // parity error detected by the CIU
	stBitCount       = 0x04 // erroneous bit count during anticollision
	stFraming        = 0x05 // framing error during a MIFARE operation
	stCollision      = 0x06 // abnormal bit collision at 106 kbps
	stBufferSize     = 0x07 // communication buffer too small
	stRFBuffer       = 0x09 // RF buffer overflow in the CIU
	stRFField        = 0x0A // counterpart did not switch its RF field on in time
	stRFProtocol     = 0x0B // RF protocol error
	stOverheat       = 0x0D // overheating: antenna drivers switched off
	stInternalBuffer = 0x0E // internal buffer overflow
	stInvalidParam   = 0x10 // invalid parameter
	stDataFormat     = 0x13 // received RF frame does not match the protocol
	stMifareAuth     = 0x14 // MIFARE authentication error
	stUIDCheck       = 0x23 // ISO/IEC 14443-3 UID check byte wrong
	stNotAllowed     = 0x26 // operation not allowed in this configuration
	stBadContext     = 0x27 // not acceptable now: unknown target number, target in the wrong state
	stCardGone       = 0x2B // the card previously activated has disappeared
	stOverCurrent    = 0x2D // over-current
)

var statusText = map[byte]string{
	stTimeout:        "target did not answer",
	stCRC:            "CRC error",
	stParity:         "parity error",
	stBitCount:       "wrong bit count in anticollision",
	stFraming:        "framing error",
	stCollision:      "bit collision",
	stBufferSize:     "buffer too small",
	stRFBuffer:       "RF buffer overflow",
	stRFField:        "RF field not switched on",
	stRFProtocol:     "RF protocol error",
	stOverheat:       "overheating",
	stInternalBuffer: "internal buffer overflow",
	stInvalidParam:   "invalid parameter",
	stDataFormat:     "unexpected RF frame",
	stMifareAuth:     "MIFARE authentication error",
	stUIDCheck:       "UID check byte wrong",
	stNotAllowed:     "operation not allowed",
	stBadContext:     "command not acceptable now (unknown target?)",
	stCardGone:       "card disappeared",
	stOverCurrent:    "over-current",
}
