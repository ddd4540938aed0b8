package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// ANSI colours. Every code is five bytes, so a column whose every cell is
// wrapped in one of them stays aligned under tabwriter, which counts bytes.
const (
	colRed   = "\x1b[31m"
	colGreen = "\x1b[32m"
	colAmber = "\x1b[33m"
	colPlain = "\x1b[39m"
	colReset = "\x1b[39m"
)

// paint wraps s in colour c when colour is on.
func (g *globals) paint(c, s string) string {
	if !g.color {
		return s
	}
	return c + s + colReset
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// age prints a duration the way an operator reads it: 45s, 12m, 3h05m, 2d04h.
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// money prints integer minor units as major units with two decimals and
// thousands separators: 123456789 → "1,234,567.89". (Every currency the
// kiosks take, PKR first, has two decimals.)
func money(minor int64) string {
	neg := minor < 0
	u := uint64(minor)
	if neg {
		u = -u
	}
	whole := strconv.FormatUint(u/100, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	fmt.Fprintf(&b, ".%02d", u%100)
	return b.String()
}

// orDash prints "-" for an empty cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
