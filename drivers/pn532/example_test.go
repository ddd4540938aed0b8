package pn532_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/pn532"
)

// A loyalty card tapped on the reader: find it, read its capability
// container, release it.
func Example() {
	bus := emu.NewBus("i2c-1", 1)
	chip := pn532.NewEmulator()
	bus.Attach(pn532.Addr, chip)
	chip.Place(pn532.NTAG213([]byte{0x04, 0x52, 0x3A, 0x92, 0x6C, 0x1F, 0x90}))

	d, err := pn532.New(bus, pn532.Addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Halt()

	card, err := d.Poll(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("UID % X, ATQA %04X, SAK %02X\n", card.UID, card.SensRes, card.SelRes)
	p, err := d.ReadPages(card.Tg, 3)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("CC % X\n", p[:4])
	// Output:
	// UID 04 52 3A 92 6C 1F 90, ATQA 0044, SAK 00
	// CC E1 10 12 00
}

func ExampleDev_Poll() {
	bus := emu.NewBus("i2c-1", 1)
	bus.Attach(pn532.Addr, pn532.NewEmulator())
	d, err := pn532.New(bus, pn532.Addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	_, err = d.Poll(context.Background())
	fmt.Println(errors.Is(err, pn532.ErrNoCard))
	// Output:
	// true
}

func ExampleDev_Firmware() {
	bus := emu.NewBus("i2c-1", 1)
	bus.Attach(pn532.Addr, pn532.NewEmulator())
	d, err := pn532.New(bus, pn532.Addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	fw, err := d.Firmware()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("IC %02X, firmware %d.%d\n", fw.IC, fw.Ver, fw.Rev)
	// Output:
	// IC 32, firmware 1.6
}

func ExampleEncodeFrame() {
	f, err := pn532.EncodeFrame(pn532.TFIHost, []byte{0x02}) // GetFirmwareVersion
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("% X\n", f)
	// Output:
	// 00 00 FF 02 FE D4 02 2A 00
}

func ExampleDecodeFrame() {
	// Noise, an ACK, then the GetFirmwareVersion response, as read from the wire.
	in := []byte{
		0xFF, 0x00,
		0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00,
		0x00, 0x00, 0xFF, 0x06, 0xFA, 0xD5, 0x03, 0x32, 0x01, 0x06, 0x07, 0xE8, 0x00,
	}
	for len(in) > 0 {
		f, n, err := pn532.DecodeFrame(in)
		if errors.Is(err, pn532.ErrShortFrame) {
			break
		}
		switch {
		case err == nil && f.Kind == pn532.FrameInfo:
			fmt.Printf("info % X\n", f.Data)
		case err == nil:
			fmt.Println(f.Kind)
		}
		in = in[n:]
	}
	// Output:
	// ACK
	// info 03 32 01 06 07
}
