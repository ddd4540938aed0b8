package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/ina219"
	"github.com/microretail/kioskd/drivers/mains"
	"github.com/microretail/kioskd/drivers/max17048"
	"github.com/microretail/kioskd/drivers/pca9685"
	"github.com/microretail/kioskd/drivers/pn532"
	"github.com/microretail/kioskd/firmware/sim"
)

// probe is `kioskd probe`: it lists every device the board profile wires,
// tests each one through its driver, and prints what it read. With
// --record DIR it also writes each device's I2C traffic as a playback
// fixture, so tests can replay a real board's chips later.
func probe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kioskd probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	board := fs.String("board", "", "board `name` (default: detected)")
	record := fs.String("record", "", "write each device's I2C traffic as a fixture into `dir`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: kioskd probe [--board NAME] [--record DIR]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	name, why := *board, "given"
	if name == "" {
		name, why = boards.Detect(boards.ModelPath)
	}
	p, err := boards.Load(name)
	if err != nil {
		fmt.Fprintln(stderr, "kioskd probe:", err)
		return 2
	}
	fmt.Fprintf(stdout, "board %s (%s): %s\n", p.Name, why, p.Model)
	var world *sim.World
	if p.IsSim() {
		if world, err = sim.New(p, sim.Options{Seed: 1}); err != nil {
			fmt.Fprintln(stderr, "kioskd probe:", err)
			return 1
		}
	}
	hw := openHardware(p, world)
	defer hw.Close()
	if *record != "" {
		if err := os.MkdirAll(*record, 0o755); err != nil {
			fmt.Fprintln(stderr, "kioskd probe:", err)
			return 1
		}
	}

	failed := 0
	for _, d := range p.I2C {
		where := fmt.Sprintf("%s@0x%02x", d.Bus, d.Addr)
		bus, err := hw.I2C(d.Bus)
		var result string
		var rec *i2ctest.Record
		if err == nil {
			rec = &i2ctest.Record{Bus: bus}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			result, err = probeChip(ctx, d.Chip, rec, d.Addr)
			cancel()
		}
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "  %-14s %-9s %-16s FAIL  %v\n", d.Role, d.Chip, where, err)
		} else {
			fmt.Fprintf(stdout, "  %-14s %-9s %-16s ok    %s\n", d.Role, d.Chip, where, result)
		}
		if *record != "" && rec != nil {
			f := fixture{Board: p.Name, Role: d.Role, Chip: d.Chip, Addr: d.Addr, Result: result}
			if err != nil {
				f.Error = err.Error()
			}
			for _, op := range rec.Ops {
				f.Ops = append(f.Ops, fixtureOp{Addr: op.Addr, W: hex.EncodeToString(op.W), R: hex.EncodeToString(op.R)})
			}
			path := filepath.Join(*record, fmt.Sprintf("%s-%s-%s.json", p.Name, d.Role, d.Chip))
			b, _ := json.MarshalIndent(f, "", "  ")
			if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
				fmt.Fprintln(stderr, "kioskd probe:", err)
				return 1
			}
		}
	}
	for _, l := range p.Lines {
		pin, err := hw.Line(l.Name)
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "  %-14s %-9s %-16s FAIL  %v\n", l.Role, "gpio", l.Name, err)
			continue
		}
		fmt.Fprintf(stdout, "  %-14s %-9s %-16s ok    %s\n", l.Role, "gpio", l.Name, probeLine(l, pin))
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d device(s) failed\n", failed)
		return 1
	}
	return 0
}

// probeLine reads an input line; output lines (the lights) are left alone.
func probeLine(l boards.Line, pin gpio.PinIO) string {
	switch l.Role {
	case boards.RoleMainsDetect:
		opts := mains.DefaultOpts
		opts.ActiveHigh = l.ActiveHigh
		d, err := mains.New(pin, &opts)
		if err != nil {
			return fmt.Sprintf("cannot read: %v", err)
		}
		defer d.Halt()
		how := "edges"
		if d.Polling() {
			how = "polling, no edge interrupts"
		}
		if d.Present() {
			return "mains present (" + how + ")"
		}
		return "mains ABSENT (" + how + ")"
	case boards.RoleNFCIRQ:
		return fmt.Sprintf("level %v (idle is %v)", pin.Read(), gpio.Level(!l.ActiveHigh))
	}
	return "output, not driven by the probe"
}

// probeChip opens one chip through its driver and reads it once. Its I2C
// traffic is what a fixture records and a replay checks.
func probeChip(ctx context.Context, chip string, bus i2c.Bus, addr uint16) (string, error) {
	switch chip {
	case boards.ChipMAX17048:
		d, err := max17048.New(bus, addr, &max17048.DefaultOpts)
		if err != nil {
			return "", err
		}
		r, err := d.Sense()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("cell %s, SOC %.1f%%, rate %+.1f%%/h, status %s", r.Cell, r.SOC.Percent(), r.Rate.PercentPerHour(), r.Status), nil
	case boards.ChipINA219:
		d, err := ina219.New(bus, addr, &ina219.DefaultOpts)
		if err != nil {
			return "", err
		}
		r, err := d.Sense()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("bus %s, shunt %s, current %s, power %s", r.Bus, r.Shunt, r.Current, r.Power), nil
	case boards.ChipPN532:
		d, err := pn532.New(bus, addr, &pn532.DefaultOpts)
		if err != nil {
			return "", err
		}
		fw, err := d.Firmware()
		if err != nil {
			return "", err
		}
		s := fmt.Sprintf("PN5%02x firmware %d.%d", fw.IC, fw.Ver, fw.Rev)
		t, err := d.Poll(ctx)
		switch {
		case errors.Is(err, pn532.ErrNoCard):
			s += ", no card in the field"
		case err != nil:
			return "", err
		default:
			s += fmt.Sprintf(", card %s in the field", strings.ToUpper(hex.EncodeToString(t.UID)))
			_ = d.Release(t.Tg)
		}
		return s, nil
	case boards.ChipPCA9685:
		d, err := pca9685.New(bus, addr, &pca9685.DefaultOpts)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("PWM at %s, %d channels", d.Frequency(), pca9685.Channels), nil
	}
	return "", fmt.Errorf("no driver for chip %q", chip)
}

// fixture is one device's recorded probe: the bus traffic, in hex, and
// what the probe made of it.
type fixture struct {
	Board  string      `json:"board"`
	Role   string      `json:"role"`
	Chip   string      `json:"chip"`
	Addr   uint16      `json:"addr"`
	Result string      `json:"result,omitempty"`
	Error  string      `json:"error,omitempty"`
	Ops    []fixtureOp `json:"ops"`
}

type fixtureOp struct {
	Addr uint16 `json:"addr"`
	W    string `json:"w,omitempty"`
	R    string `json:"r,omitempty"`
}
