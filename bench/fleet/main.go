// Command fleet measures the fleet link of issue 6 in one run, every part
// against a real mosquitto it starts itself on a free loopback port:
//
//   - backlog drain: -sales sales in one kiosk's ledger, drained by a
//     telemetry.Session to `kioskctl sales ingest` with acknowledgements,
//     timed from the session's start until the ledger's acknowledged
//     watermark reaches its head; set against mosquitto_pub -q 1 -l
//     streaming the same batch payloads on one connection to a subscriber
//     that only counts them, the practical limit of one connection. The
//     two alternate -repeat times; medians are reported;
//
//   - telemetry bytes per kiosk-day at the default cadences, on mains and
//     on battery all day, extrapolated from the measured size of each
//     report;
//
//   - a fleet of -kiosks simulated kiosks in this process, each its own
//     telemetry.Session, all started at once as after a broker outage,
//     -ledger-kiosks of them with -ledger-sales sales to drain: the
//     ingest's aggregate rate, then how long `kioskctl fleet` (--json and
//     the table) takes end to end, with the fleet quiet and with live
//     telemetry at the rate the fleet sends it at the default cadences.
//
//     go run ./bench/fleet [-sales 100000] [-repeat 3] [-kiosks 1000]
//     [-ledger-kiosks 1000] [-ledger-sales 20] [-keep]
//
// It needs mosquitto and mosquitto_pub (Debian: mosquitto,
// mosquitto-clients), builds ./cmd/kioskctl, and checks at the end, from
// `kioskctl sales report`, that the ingest stored every sale.
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/telemetry"
)

func main() {
	o := options{}
	flag.IntVar(&o.sales, "sales", 100_000, "sales in the one kiosk's backlog")
	flag.IntVar(&o.repeat, "repeat", 3, "drains and baselines, alternating; the median is reported")
	flag.IntVar(&o.kiosks, "kiosks", 1000, "simulated kiosks in the fleet")
	flag.IntVar(&o.ledgerKiosks, "ledger-kiosks", 1000, "of those, kiosks with a ledger and a backlog to drain")
	flag.IntVar(&o.ledgerSales, "ledger-sales", 20, "sales in each of those kiosks' backlog")
	flag.DurationVar(&o.tele, "tele", 12*time.Second, "how long the telemetry kiosks report")
	flag.IntVar(&o.fleetRuns, "fleet-runs", 5, "runs of kioskctl fleet timed, each way")
	flag.StringVar(&o.dir, "dir", "", "make the run's scratch directory in `dir` (default: the system's temporary directory)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory (ledgers, ingest store, logs) after the run")
	flag.DurationVar(&o.waitCtl, "wait-kioskctl", 30*time.Minute, "how long to wait for a kioskctl with `sales ingest` to build")
	flag.Parse()
	if o.ledgerKiosks > o.kiosks || o.ledgerKiosks < 1 || o.sales < 1 || o.ledgerSales < 1 || o.repeat < 1 || o.fleetRuns < 1 {
		fmt.Fprintln(os.Stderr, "bench/fleet: want -sales, -repeat, -ledger-kiosks, -ledger-sales, -fleet-runs ≥ 1 and -ledger-kiosks ≤ -kiosks")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/fleet:", err)
		os.Exit(1)
	}
}

type options struct {
	sales, repeat, kiosks, ledgerKiosks, ledgerSales, fleetRuns int
	tele, waitCtl                                               time.Duration
	dir                                                         string
	keep                                                        bool
}

// row is one line of the closing table.
type row struct {
	figure, measured, target string
	met                      string // yes, no, or "" where there is no target
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(o options) (err error) {
	t0 := time.Now()
	if err := raiseFileLimit(uint64(2*o.kiosks + 8*o.ledgerKiosks + 512)); err != nil {
		return err
	}
	// A fresh directory for every run, inside -dir when given: ledgers and
	// stores left from an earlier run would change what is measured.
	dir, err := os.MkdirTemp(o.dir, "bench-fleet-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}

	step("building kioskctl")
	ctl, err := buildKioskctl(dir, o.waitCtl)
	if err != nil {
		return err
	}
	b, err := startBroker(filepath.Join(dir, "broker"))
	if err != nil {
		return err
	}
	defer b.stop()
	step("mosquitto on %s", b.addr())
	in, err := startIngest(ctl, b, filepath.Join(dir, "ingest"), dir)
	if err != nil {
		return err
	}
	ingestStopped := false
	defer func() {
		if !ingestStopped {
			in.stop()
		}
	}()
	want := map[string]int64{} // sales the ingest must hold at the end, by kiosk

	// 1. Backlog drain, alternating with the one-connection baseline. Each
	// repeat drains a ledger of its own kiosk: a watermark only moves up.
	var drains, bases []drainResult
	var drainCPU []cpuUse
	for r := range o.repeat {
		kiosk := fmt.Sprintf("bench%d", r+1)
		step("appending %d sales to %s's ledger", o.sales, kiosk)
		fill := time.Now()
		l, err := fillLedger(filepath.Join(dir, kiosk+"-ledger"), kiosk, o.sales, 64)
		if err != nil {
			return err
		}
		step("appended in %v", time.Since(fill).Round(time.Millisecond))
		base, err := baseline(b, l, dir, "bench/baseline/sales")
		if err != nil {
			l.Close()
			return err
		}
		step("mosquitto_pub baseline: %d batches, %d bytes in %v: %.0f sales/s", base.batches, base.bytes, base.took.Round(time.Millisecond), base.rate())
		cpu0 := cpuNow(b, in)
		dr, err := drain(b, l, filepath.Join(dir, kiosk+"-state"), kiosk)
		l.Close()
		if err != nil {
			return fmt.Errorf("%w\ningest log:\n%s", err, in.tail())
		}
		cpu := cpuNow(b, in).sub(cpu0)
		step("session drain: %d sales in %v: %.0f sales/s; CPU %s", dr.sales, dr.took.Round(time.Millisecond), dr.rate(), cpu)
		bases, drains, drainCPU = append(bases, base), append(drains, dr), append(drainCPU, cpu)
		want[kiosk] = int64(o.sales)
	}

	// 2. Telemetry bytes per kiosk-day.
	step("telemetry: two kiosks reporting for %v", o.tele)
	tele, err := telemetryDay(b, filepath.Join(dir, "tele"), o.tele)
	if err != nil {
		return err
	}
	for _, t := range tele {
		step("%s: %v; %d bytes through the proxy", t.kiosk, t.kinds, t.wire)
	}

	// 3. The fleet: every kiosk connects at once, as after a broker
	// outage, the first -ledger-kiosks with a backlog to drain.
	ids := make([]string, o.kiosks)
	for i := range ids {
		ids[i] = kioskID(i)
	}
	step("appending %d sales to each of %d kiosks' ledgers", o.ledgerSales, o.ledgerKiosks)
	fill := time.Now()
	ledgers, err := fillLedgers(filepath.Join(dir, "fleet-ledgers"), ids[:o.ledgerKiosks], o.ledgerSales)
	defer func() {
		for _, l := range ledgers {
			if l != nil {
				l.Close()
			}
		}
	}()
	if err != nil {
		return err
	}
	step("appended in %v", time.Since(fill).Round(time.Millisecond))
	for _, id := range ids[:o.ledgerKiosks] {
		want[id] = int64(o.ledgerSales)
	}
	var earlier []string
	for k := range want {
		if !strings.HasPrefix(k, "k") {
			earlier = append(earlier, k)
		}
	}
	if err := clearRetained(b, append(earlier, tele[0].kiosk, tele[1].kiosk)...); err != nil {
		return err
	}
	watch, err := watchHealth(b)
	if err != nil {
		return err
	}
	defer watch.c.Disconnect(100)
	sim := newFleetSim()
	defer sim.stop()
	step("starting %d kiosks, %d with %d sales each to drain", o.kiosks, o.ledgerKiosks, o.ledgerSales)
	cpu0 := cpuNow(b, in)
	storm := time.Now()
	if err := sim.start(b, dir, ids, ledgers); err != nil {
		return err
	}
	total := o.ledgerKiosks * o.ledgerSales
	var connected, drained time.Duration
	for deadline := storm.Add(5 * time.Minute); connected == 0 || drained == 0; time.Sleep(2 * time.Millisecond) {
		if connected == 0 && watch.count(ids) == len(ids) {
			connected = time.Since(storm)
		}
		acked := 0
		for _, l := range ledgers {
			acked += int(l.Acked())
		}
		if drained == 0 && acked == total {
			drained = time.Since(storm)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fleet: in 5 minutes %d of %d kiosks reported health and %d of %d sales were acknowledged\ningest log:\n%s",
				watch.count(ids), len(ids), acked, total, in.tail())
		}
	}
	fleetCPU := cpuNow(b, in).sub(cpu0)
	step("all %d kiosks' health retained in %v; %d sales acknowledged in %v; CPU %s", o.kiosks,
		connected.Round(time.Millisecond), total, drained.Round(time.Millisecond), fleetCPU)
	step("timing kioskctl fleet, %d runs each way", o.fleetRuns)
	ft, err := timeFleetRenders(ctl, b, o.fleetRuns, ids)
	if err != nil {
		return err
	}
	rate, stopChatter, err := chatter(b, ids)
	if err != nil {
		return err
	}
	step("timing kioskctl fleet again, with live telemetry at %.0f messages/s", rate)
	live, err := timeFleetRenders(ctl, b, o.fleetRuns, ids)
	stopChatter()
	if err != nil {
		return err
	}
	sim.stop()

	// The ingest stored everything, once: counted in its own store.
	ingestStopped = true
	if err := in.stop(); err != nil {
		return fmt.Errorf("%w\n%s", err, in.tail())
	}
	counts, err := salesCounts(ctl, in.data)
	if err != nil {
		return err
	}
	var bad []error
	for k, n := range want {
		if counts[k] != n {
			bad = append(bad, fmt.Errorf("the ingest stored %d sales of kiosk %s, want %d", counts[k], k, n))
		}
	}
	if err := errors.Join(bad...); err != nil {
		return err
	}

	// The report.
	dr, base := medianRun(drains), medianRun(bases)
	fmt.Printf("fleet link benchmarks, %s, mosquitto on loopback, whole run %v\n\n", time.Now().Format(time.DateOnly), time.Since(t0).Round(time.Second))
	fmt.Printf("backlog drain, %d sales of one kiosk (%d batches, %.1f MB of JSON), %d runs alternating, median:\n\n",
		o.sales, base.batches, float64(base.bytes)/1e6, o.repeat)
	fmt.Println("| path | median time | sales/s | runs, sales/s |")
	fmt.Println("|---|---:|---:|---|")
	fmt.Printf("| telemetry.Session → mosquitto → kioskctl sales ingest, acknowledged | %v | %.0f | %s |\n", dr.took.Round(time.Millisecond), dr.rate(), rates(drains))
	fmt.Printf("| mosquitto_pub -q 1 -l → mosquitto → a counting subscriber | %v | %.0f | %s |\n\n", base.took.Round(time.Millisecond), base.rate(), rates(bases))
	for i, c := range drainCPU {
		fmt.Printf("CPU in drain %d (2 cores, %v of wall time): %s\n", i+1, drains[i].took.Round(time.Millisecond), c)
	}
	fmt.Println()

	fmt.Println("telemetry per kiosk-day at the default cadences (MQTT bytes both ways):")
	fmt.Println()
	fmt.Println("| kiosk | power msg | health msg | status msgs | connect, subscribe, acks | reports a day | MQTT bytes/day | with TCP/IP, TLS (est.) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for i, t := range tele {
		nPower := powerPerDay
		if i == 1 {
			nPower = batteryPerDay
		}
		fmt.Printf("| %s | %.0f B | %.0f B | %d B | %d B | %d + %d | %s | %s |\n", t.kiosk,
			t.kinds[telemetry.TopicPower].mean(), t.kinds[telemetry.TopicHealth].mean(), t.kinds[telemetry.TopicStatus].bytes, t.setup,
			nPower, healthPerDay, kb(t.perDay), kb(t.wirePerDay))
	}
	fmt.Println()

	fleetRate := float64(total) / drained.Seconds()
	fmt.Printf("fleet of %d kiosks in one process, all started at once, %d with %d sales each to drain:\n\n", o.kiosks, o.ledgerKiosks, o.ledgerSales)
	fmt.Printf("- every kiosk's birth and telemetry retained %v after the start\n", connected.Round(time.Millisecond))
	fmt.Printf("- every sale acknowledged %v after the start: %.0f sales/s at the ingest\n", drained.Round(time.Millisecond), fleetRate)
	fmt.Printf("  CPU meanwhile: %s\n", fleetCPU)
	fmt.Printf("- kioskctl --json fleet, %d rows: median %v, max %v (%d runs)\n", ft.rows, median(ft.json).Round(time.Millisecond), slicesMax(ft.json).Round(time.Millisecond), len(ft.json))
	fmt.Printf("- kioskctl fleet (table): median %v, max %v (%d runs)\n", median(ft.human).Round(time.Millisecond), slicesMax(ft.human).Round(time.Millisecond), len(ft.human))
	fmt.Printf("- with live telemetry at %.0f messages/s, as %d kiosks send at the default cadences:\n", rate, o.kiosks)
	fmt.Printf("  kioskctl --json fleet: median %v, max %v; the table: median %v, max %v\n\n",
		median(live.json).Round(time.Millisecond), slicesMax(live.json).Round(time.Millisecond),
		median(live.human).Round(time.Millisecond), slicesMax(live.human).Round(time.Millisecond))

	fleetMax := max(slicesMax(ft.json), slicesMax(ft.human))
	liveMax := max(slicesMax(live.json), slicesMax(live.human))
	rows := []row{
		{"backlog drain, one kiosk, acknowledged (median)", fmt.Sprintf("%.0f sales/s", dr.rate()), "≥ 20,000 sales/s", yesNo(dr.rate() >= 20000)},
		{"  one connection's limit, mosquitto_pub -q 1 -l (median)", fmt.Sprintf("%.0f sales/s", base.rate()), "", ""},
		{"  drain ÷ limit", fmt.Sprintf("%.2f×", dr.rate()/base.rate()), "", ""},
		{"telemetry per kiosk-day, mains (MQTT)", kb(tele[0].perDay), "≤ 2 MB", yesNo(tele[0].perDay <= 2_000_000)},
		{"telemetry per kiosk-day, battery all day (MQTT)", kb(tele[1].perDay), "≤ 2 MB", yesNo(tele[1].perDay <= 2_000_000)},
		{"  the same with TCP/IP and TLS framing (est.), mains / battery", kb(tele[0].wirePerDay) + " / " + kb(tele[1].wirePerDay), "", ""},
		{fmt.Sprintf("kioskctl fleet, %d kiosks, slowest of %d runs", o.kiosks, len(ft.json)+len(ft.human)), fleetMax.Round(time.Millisecond).String(), "≤ 1 s", yesNo(fleetMax <= time.Second)},
		{fmt.Sprintf("  the same with live telemetry (%.0f msg/s)", rate), liveMax.Round(time.Millisecond).String(), "≤ 1 s", yesNo(liveMax <= time.Second)},
		{fmt.Sprintf("ingest, %d kiosks reconnecting at once with %d sales each", o.ledgerKiosks, o.ledgerSales), fmt.Sprintf("%.0f sales/s", fleetRate), "keeps up: all stored once, acknowledged", "yes"},
	}
	fmt.Println("| figure | measured | target | met |")
	fmt.Println("|---|---:|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %s |\n", r.figure, r.measured, cmp.Or(r.target, "–"), cmp.Or(r.met, "–"))
	}
	return nil
}

// medianRun is the run with the median time.
func medianRun(rs []drainResult) drainResult {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b drainResult) int { return cmp.Compare(a.took, b.took) })
	return s[len(s)/2]
}

func rates(rs []drainResult) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%.0f", r.rate()))
	}
	return strings.Join(parts, ", ")
}

// cpuUse is the CPU time each process of a run has used.
type cpuUse struct{ kiosks, ingest, broker time.Duration }

func cpuNow(b *broker, in *ingest) cpuUse {
	return cpuUse{cpuTime(os.Getpid()), cpuTime(in.cmd.Process.Pid), cpuTime(b.cmd.Process.Pid)}
}

func (c cpuUse) sub(d cpuUse) cpuUse {
	return cpuUse{c.kiosks - d.kiosks, c.ingest - d.ingest, c.broker - d.broker}
}

func (c cpuUse) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	return fmt.Sprintf("kiosk side (sessions, ledgers) %v, kioskctl sales ingest %v, mosquitto %v", r(c.kiosks), r(c.ingest), r(c.broker))
}

func kb(n int) string { return fmt.Sprintf("%.0f KB", float64(n)/1000) }

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// fillLedgers gives each of ids a ledger of n sales, filling them
// concurrently, a few checkouts at once in each.
func fillLedgers(dir string, ids []string, n int) ([]*ledger.Ledger, error) {
	ls := make([]*ledger.Ledger, len(ids))
	err := each(len(ids), 16, func(i int) (err error) {
		ls[i], err = fillLedger(filepath.Join(dir, ids[i]), ids[i], n, 8)
		return err
	})
	return ls, err
}

// each runs fn(0) … fn(n-1), at most limit at once, and joins their errors.
func each(n, limit int, fn func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
