package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/scanner"
	"github.com/microretail/kioskd/drivers/transport"
	"github.com/microretail/kioskd/firmware/devices"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/sim"
)

// startScanner starts the barcode scanner the config and the board profile
// name.
// A keyboard-wedge scanner finds its device, grabs it and reconnects by
// itself, so it runs in its own goroutine; a UART module is a supervised
// device. Every read goes to onScan.
func (ps *peripherals) startScanner(p boards.Profile, cfg ScannerConfig, world *sim.World, log zerolog.Logger) error {
	if !cfg.Enabled {
		return nil
	}
	if cfg.Kind == "gm65" {
		dev := cfg.Device
		if dev == "" {
			return fmt.Errorf("scanner: kind gm65 needs scanner.device, the UART it is on")
		}
		opts := scanner.DefaultGM65Opts
		opts.Dedup, opts.Logger = cfg.repeat(), log
		topts := transport.DefaultOpts
		topts.Logger = log
		ps.sup.Start(devices.Spec{Name: "scanner", Chip: "gm65", Device: &devices.Chip[*gm65Run]{
			OpenFunc: func(ctx context.Context) (*gm65Run, error) {
				l := transport.NewLink(transport.Serial(dev, 9600, transport.FlowNone), &topts)
				if err := l.Connect(ctx); err != nil {
					_ = l.Close()
					return nil, err
				}
				g, err := scanner.NewGM65(l, &opts)
				if err != nil {
					_ = l.Close()
					return nil, err
				}
				return &gm65Run{GM65: g, link: l}, nil
			},
			StepFunc: func(ctx context.Context, g *gm65Run) error { return g.Run(ctx, ps.onScan) },
		}})
		return nil
	}
	opts := scanner.DefaultHIDOpts
	opts.Layout, opts.Dedup, opts.Logger = cfg.Layout, cfg.repeat(), log
	var src *scanner.HID
	if p.Scanner == "sim" && world != nil && cfg.Device == "" {
		src = scanner.NewHIDReader(world.ScannerInput(), "sim keyboard-wedge scanner", &opts)
	} else {
		m := scanner.Match{Path: p.Scanner, Name: cfg.Name}
		if cfg.Device != "" {
			m.Path = cfg.Device
		}
		if cfg.ID != "" {
			v, pr, _ := strings.Cut(cfg.ID, ":") // checked with the config
			vendor, _ := strconv.ParseUint(v, 16, 16)
			product, _ := strconv.ParseUint(pr, 16, 16)
			m.Vendor, m.Product = uint16(vendor), uint16(product)
		}
		src = scanner.NewHID(m, &opts)
	}
	ps.hid = src
	ctx, cancel := context.WithCancel(context.Background())
	ps.stopScanner = cancel
	ps.scannerDone = make(chan struct{})
	go func() {
		defer close(ps.scannerDone)
		if err := src.Run(ctx, ps.onScan); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Str("scanner", src.String()).Msg("scanner stopped")
		}
	}()
	return nil
}

// gm65Run is a GM65 and the link it owns.
type gm65Run struct {
	*scanner.GM65
	link *transport.Link
}

// Halt closes the module's link, which ends its Run.
func (g *gm65Run) Halt() error { return g.link.Close() }

// onScan puts a scanned code through the till, exactly as POST
// /api/cart/scan does, and tells the till page what happened.
func (ps *peripherals) onScan(s scanner.Scan) {
	data := map[string]any{"code": s.Code, "symbology": s.Symbology.String(), "source": s.Source}
	t := ps.till.Load()
	if t == nil {
		data["error"] = "the till is not ready yet"
	} else if res, err := t.Scan(s.Code); err != nil {
		data["error"] = err.Error()
	} else {
		if res.Product != nil {
			data["product"], data["cart"] = res.Product, res.Cart
		}
		if res.Receipt != nil {
			data["receipt"] = res.Receipt
		}
	}
	ps.hub.Publish(events.Scan, data)
}

// scannerState is the scanner's health for /api/state.
func (ps *peripherals) scannerState() (string, bool) {
	if ps.hid == nil {
		return "", false
	}
	if ps.hid.Device() == "" {
		return string(devices.Offline), true
	}
	return string(devices.OK), true
}

// scannerBudget bounds how long stopping the scanner may take.
const scannerBudget = time.Second
