package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/drivers/transport"
	"github.com/microretail/kioskd/firmware/devices"
	"github.com/microretail/kioskd/firmware/printing"
	"github.com/microretail/kioskd/firmware/sim"
)

// How often the printer is asked for its status: often while it prints, so
// a receipt follows its sale at once; rarely while it cannot, because a
// printer keeps each status request in its receive buffer until it prints
// again, and a long paper-out must not fill it.
const (
	printerEvery = 250 * time.Millisecond
	printerIdle  = 2 * time.Second
)

// printerLink says how to reach the receipt printer: its port, a closer
// for it (nil for the sim's emulator), and the pacing a link without flow
// control needs.
type printerLink struct {
	name string
	open func(ctx context.Context) (escpos.Port, io.Closer, error)
	pace *escpos.Timing
}

// newPrinterLink picks the printer's connection from the config and the
// board profile.
func newPrinterLink(p boards.Profile, cfg PrinterConfig, world *sim.World, log zerolog.Logger) (printerLink, error) {
	if p.IsSim() && world != nil && cfg.Connection == "" {
		return printerLink{name: "sim", open: func(context.Context) (escpos.Port, io.Closer, error) {
			return world.Printer, nil, nil
		}}, nil
	}
	conn := cfg.Connection
	if conn == "" {
		conn = "serial"
		if p.PrinterUSB != "" {
			if _, err := os.Stat(p.PrinterUSB); err == nil {
				conn = "usb"
			}
		}
	}
	var d transport.Dialer
	var pace *escpos.Timing
	switch conn {
	case "serial":
		dev, baud, flow := p.Printer.Device, p.Printer.Baud, p.Printer.Flow
		if cfg.Device != "" {
			dev = cfg.Device
		}
		if cfg.Baud != 0 {
			baud = cfg.Baud
		}
		if cfg.Flow != "" {
			flow = cfg.Flow
		}
		d = transport.Serial(dev, baud, transport.Flow(flow))
		if flow == "" || flow == "none" {
			paper, _ := cfg.paper() // checked with the config
			t := escpos.DefaultTiming(baud)
			t.Columns = paper.Columns
			// Adafruit's 30 ms per dot row is for its printers at full heat;
			// pace by the printer's rated speed instead, 8 dots to the mm.
			t.DotPrint = time.Second / time.Duration(cfg.SpeedMMs*8)
			pace = &t
		}
	case "usb":
		dev := p.PrinterUSB
		if cfg.Device != "" {
			dev = cfg.Device
		}
		if dev == "" {
			return printerLink{}, errors.New("printer: connection usb, but no device: set printer.device")
		}
		d = transport.USBLP(dev)
	case "tcp":
		d = transport.TCP(cfg.Address)
	}
	opts := transport.DefaultOpts
	opts.Logger = log
	return printerLink{name: d.String(), pace: pace, open: func(ctx context.Context) (escpos.Port, io.Closer, error) {
		l := transport.NewLink(d, &opts)
		if err := l.Connect(ctx); err != nil {
			_ = l.Close()
			return nil, nil, err
		}
		return l, l, nil
	}}, nil
}

// printerDevice is the receipt printer under supervision: it opens the
// link and the driver, and each step works the print queue.
type printerDevice struct {
	link  printerLink
	queue *printing.Queue
	log   zerolog.Logger
	clock func() time.Time

	dev    *escpos.Dev
	closer io.Closer
	ready  bool      // the printer could print at the last look
	next   time.Time // when to look again while it cannot
}

var _ devices.Device = (*printerDevice)(nil)

func (d *printerDevice) Open(ctx context.Context) error {
	port, closer, err := d.link.open(ctx)
	if err != nil {
		d.queue.Disconnected(err)
		return err
	}
	dev, err := escpos.New(port, &escpos.Opts{Pace: d.link.pace, Log: d.log})
	if err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		d.queue.Disconnected(err)
		return fmt.Errorf("printer on %s: %w", d.link.name, err)
	}
	d.dev, d.closer, d.ready = dev, closer, true
	return nil
}

func (d *printerDevice) Step(ctx context.Context) error {
	now := d.clock()
	if !d.ready && now.Before(d.next) {
		return nil
	}
	err := d.queue.Step(ctx, d.dev)
	d.ready = err == nil && d.queue.Ready()
	d.next = now.Add(printerIdle)
	return err
}

func (d *printerDevice) Close() error {
	if d.dev == nil {
		return nil
	}
	_ = d.dev.Halt()
	var err error
	if d.closer != nil {
		err = d.closer.Close()
	}
	d.dev, d.closer = nil, nil
	d.queue.Disconnected(errors.New("closed"))
	return err
}
