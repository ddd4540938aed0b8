// Command kioskctl is the fleet operator's console and the field
// technician's tool. See usage below, or DESIGN.md "kioskctl".
//
// Over MQTT (--broker, default tcp://127.0.0.1:1883, which `kioskd --dev`
// serves):
//
//	kioskctl fleet                  one row per kiosk from retained messages
//	kioskctl watch [ID]             live tail of kiosk/ID/# (or every kiosk)
//	kioskctl cmd ID|all NAME [k=v]  send a command and wait for the results
//	kioskctl sales ingest --data D  store kiosks' sales durably, acknowledge them
//	kioskctl sales report --data D  revenue, sales, AOV, refunds … per kiosk
//
// Offline, on a kiosk's own data directory (stop kioskd first: the ledger
// is locked while it runs):
//
//	kioskctl ledger verify --data DIR   check every invariant of the ledger
//	kioskctl ledger dump --data DIR     print entries as JSON lines
//
// Global flags (--broker, --tls-*, --username, --password, --json) go
// before the command or after it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/microretail/kioskd/firmware/ledger"
)

// Version is set at build time: -ldflags "-X main.Version=…".
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: kioskctl [global flags] COMMAND [flags]

global flags (also accepted after the command):
  --broker URL            MQTT broker (default tcp://127.0.0.1:1883; ssl://HOST:8883 for TLS)
  --tls-ca F --tls-cert F --tls-key F
                          CA to trust, client certificate and key (PEM)
  --username U --password P
  --json                  machine-readable output

commands:
  fleet [--wait D] [--stale D]
        one row per kiosk from retained status and telemetry; --wait caps
        the collection (default 3s), --stale flags kiosks whose newest
        message is older (default 15m)
  watch [ID]
        live tail of kiosk/ID/# (every kiosk without ID) until interrupted;
        --json prints {"ts","kiosk","topic","retained","payload"} lines
  cmd ID|all NAME [k=v ...] [@FILE] [--timeout D] [--id CORR] [--wait D]
        send a command to one kiosk, or on fleet/cmd to all (expecting an
        answer from every kiosk whose retained status is online), and wait
        up to --timeout (default 10s). k=v: v is JSON when it parses as
        JSON, else a string; k=@FILE takes the JSON in FILE; a bare @FILE
        makes the file's JSON object the args (e.g. cmd all config
        @desired.json); k=v after it override its keys. Exit 0 only when
        every expected kiosk answered ok.
  sales ingest --data DIR [--share GROUP] [--client-id ID] [--log-every N]
        store kiosks' sales batches durably and acknowledge them, until
        interrupted; with --share, workers split kiosk/+/sales through
        $share/GROUP/
  sales report --data DIR [--from T] [--to T] [--kiosk ID]
        revenue, sales, AOV, refunds, revenue per hour, wallet top-ups and
        subscriptions, per kiosk and in total; T is RFC 3339 or
        YYYY-MM-DD[THH:MM] in local time (stop the ingest first, or
        report on a copy of its directory)
  ota keygen --out DIR [--name NAME]
        make an ed25519 signing key pair: DIR/NAME.key (mode 0600, never
        overwritten) and DIR/NAME.pub for the kiosks' trust stores
        (default NAME: ota); prints the key id
  ota sign --key F [--key F2 ...] --artifact FILE --version V --board B[,B2]
        --url URL [--min-version V] [--force] [--kind binary|image] [--out F]
        [--delta-base OLD --delta-base-version V --delta-url URL]
        hash the artifact and sign its manifest with every key (old and new
        during a key rotation); {sha256} and {version} in URL are filled
        in; writes the envelope to FILE.manifest.json unless --out; with
        --delta-base, also a delta against the previous release (written
        as FILE.delta-from-V.zst) that kiosks running it fetch instead
  ota verify --keys DIR ENVELOPE [--board B] [--running V]
        check the signatures against the *.pub keys in DIR and, given
        --board and/or --running, whether such a kiosk would install the
        release; exit 0 only when it would
  ota publish --dir RELEASES [--keys DIR] ENVELOPE ARTIFACT
        check the artifact against the manifest, then publish it as
        RELEASES/<sha256> and the envelope as RELEASES/<version>.manifest.json
        and RELEASES/latest.json (kept when it names a newer release)
  ota rollout ENVELOPE --kiosks ID,ID|--all [--canary ID,ID|--canary-count N]
        [--wave-size N|--waves N] [--max-failures N|--max-failure-rate PCT]
        [--timeout D] [--job ID] [--keys DIR] [--wait D]
        send the release (ota_install) to a canary group first (default:
        the first kiosk by id), wait until each has committed, then to the
        rest in waves (default 3), each waiting the same way up to --timeout
        (default 30m). --all: every kiosk with a retained status, online or
        not, whose board the release is for. Kiosks that run the version
        already are skipped. Failed, rolled back, refused, unanswered and
        timed-out kiosks are failures; past the threshold (default: any
        failure) the rollout halts and sends nothing more. Exit 0 only when
        every target committed or was already on the version
  ota status [--wait D]
        one row per kiosk: its OTA job, target version, state, progress and
        error from the retained kiosk/+/ota messages, beside the version it
        runs
  ledger verify --data DIR [--json]
  ledger dump --data DIR [--from SEQ] [--limit N]
  version
`

// run is runContext without a way to stop: for commands that end by
// themselves.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext runs one kioskctl command. Cancelling ctx stops the commands
// that run until interrupted (watch, sales ingest) as SIGINT does.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := newGlobals(stdout, stderr)
	fs := flag.NewFlagSet("kioskctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "kioskctl: %v\n%s", err, usage)
		return 2
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, "kioskctl", Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "fleet":
		return fleet(ctx, g, args[1:])
	case "watch":
		return watch(ctx, g, args[1:])
	case "cmd":
		return command(ctx, g, args[1:])
	case "ota":
		return otaCommand(ctx, g, args[1:])
	case "sales":
		if len(args) < 2 {
			break
		}
		switch args[1] {
		case "ingest":
			return ingest(ctx, g, args[2:])
		case "report":
			return report(g, args[2:])
		}
	case "ledger":
		if len(args) < 2 {
			break
		}
		rest := args[2:]
		if g.json {
			rest = append([]string{"--json"}, rest...)
		}
		switch args[1] {
		case "verify":
			return verify(rest, stdout, stderr)
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
