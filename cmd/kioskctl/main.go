// Command kioskctl is the operator's tool. Today it reads a kiosk's ledger
// offline, for a field technician after a crash or a failed SD card:
//
//	kioskctl ledger verify --data DIR   check every invariant of the ledger
//	kioskctl ledger dump --data DIR     print entries as JSON lines
//
// DIR is kioskd's --data directory. Stop kioskd first: the ledger is
// locked while it runs.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/microretail/kioskd/firmware/ledger"
)

// Version is set at build time: -ldflags "-X main.Version=…".
var Version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  kioskctl ledger verify --data DIR [--json]
  kioskctl ledger dump --data DIR [--from SEQ] [--limit N]
  kioskctl version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, "kioskctl", Version)
		return 0
	case "ledger":
		if len(args) < 2 {
			break
		}
		switch args[1] {
		case "verify":
			return verify(args[2:], stdout, stderr)
		case "dump":
			return dump(args[2:], stdout, stderr)
		}
	}
	fmt.Fprint(stderr, usage)
	return 2
}

// openLedger parses a ledger subcommand's flags (--data, plus those extra
// adds) and opens the ledger in DIR read-only. A nil ledger comes with the
// exit code.
func openLedger(name string, args []string, stderr io.Writer, extra func(fs *flag.FlagSet)) (*ledger.Ledger, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "kioskd's data `dir`")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, 2
	}
	if *data == "" {
		fmt.Fprintln(stderr, "kioskctl: --data is required")
		fs.Usage()
		return nil, 2
	}
	l, err := ledger.Open(filepath.Join(*data, "ledger"), ledger.Options{ReadOnly: true})
	if err != nil {
		fmt.Fprintf(stderr, "kioskctl: %v\n(is kioskd still running? stop it first)\n", err)
		return nil, 1
	}
	return l, 0
}

func verify(args []string, stdout, stderr io.Writer) int {
	var asJSON *bool
	l, code := openLedger("ledger verify", args, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print the result as JSON")
	})
	if l == nil {
		return code
	}
	defer l.Close()
	c, err := l.Verify()
	if err != nil {
		fmt.Fprintln(stderr, "kioskctl:", err)
		return 1
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(c)
	} else {
		fmt.Fprintf(stdout, "kiosk %s, ledger %016x: %d entries (seq 1-%d), %d acknowledged by the fleet, %d business days\n",
			l.KioskID(), l.LedgerID(), c.Entries, c.Head, c.Acked, c.Days)
		for _, p := range c.Problems {
			fmt.Fprintln(stdout, "PROBLEM:", p)
		}
		if c.OK() {
			fmt.Fprintln(stdout, "ok: no gaps, every key and refund indexed once, totals and balances add up")
		}
	}
	if !c.OK() {
		return 1
	}
	return 0
}

func dump(args []string, stdout, stderr io.Writer) int {
	var from *uint64
	var limit *int
	l, code := openLedger("ledger dump", args, stderr, func(fs *flag.FlagSet) {
		from = fs.Uint64("from", 1, "first `seq`")
		limit = fs.Int("limit", 0, "at most `N` entries (0: all)")
	})
	if l == nil {
		return code
	}
	defer l.Close()
	enc := json.NewEncoder(stdout)
	left := *limit
	for seq := *from; left > 0 || *limit == 0; {
		page := 1000
		if *limit > 0 {
			page = min(page, left)
			left -= page
		}
		entries, err := l.Range(seq, page)
		if err != nil {
			fmt.Fprintln(stderr, "kioskctl:", err)
			return 1
		}
		if len(entries) == 0 {
			break
		}
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return 0
				}
				fmt.Fprintln(stderr, "kioskctl:", err)
				return 1
			}
		}
		seq += uint64(len(entries))
	}
	return 0
}
