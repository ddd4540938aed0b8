// Command storage compares durable commits, in one run, on this machine:
// the ledger's Append against raw Pebble Set+Sync, SQLite (modernc.org/sqlite,
// WAL, synchronous=FULL) and bbolt, at 1 and 16 writers. It reports commits/s,
// p50/p99 latency and the bytes each sale costs the storage device, from
// /proc/self/io, against the floor of a raw append+fsync loop.
//
//	go run ./bench/storage [-n 100000] [-dir bench/out]
//
// Every store writes the same ~110-byte record per sale. SQLite and bbolt
// also keep a unique idempotency-key index, as the ledger does; raw Pebble
// writes the record alone. Deferred work is counted: Pebble stores flush
// their memtable and SQLite checkpoints its WAL before the count is read.
package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"
	_ "modernc.org/sqlite"

	"github.com/microretail/kioskd/firmware/ledger"
)

// store is one way of making a sale durable.
type store interface {
	open(dir string) error
	commit(i int64) error // records sale i; returns once it is durable
	close() error         // finishes deferred writes (flush, checkpoint), then closes
}

// payload is a sale record of the ledger's encoded size and texture.
func payload(i int64) []byte {
	return []byte(fmt.Sprintf("v1|sale|cash|PKR|%012d|kiosk-bench|key-%012d|CHAI|Doodh patti chai|2|8000|SAMOSA|Aloo samosa|3|5000", i, i))
}

func key(i int64) []byte {
	k := make([]byte, 9)
	k[0] = 'e'
	binary.BigEndian.PutUint64(k[1:], uint64(i))
	return k
}

type ledgerStore struct{ l *ledger.Ledger }

func (s *ledgerStore) open(dir string) (err error) {
	s.l, err = ledger.Open(dir, ledger.Options{KioskID: "kiosk-bench"})
	return err
}

func (s *ledgerStore) commit(i int64) error {
	_, err := s.l.Append(context.Background(), ledger.Draft{
		Kind: ledger.KindSale, Payment: ledger.PaymentCash, IdempotencyKey: fmt.Sprintf("key-%012d", i),
		Lines: []ledger.Line{{SKU: "CHAI", Name: "Doodh patti chai", Qty: 2, Price: 8000}, {SKU: "SAMOSA", Name: "Aloo samosa", Qty: 3, Price: 5000}},
	})
	return err
}

func (s *ledgerStore) close() error {
	if err := s.l.Flush(); err != nil {
		return err
	}
	return s.l.Close()
}

type pebbleStore struct{ db *pebble.DB }

func (s *pebbleStore) open(dir string) (err error) {
	s.db, err = pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatTableFormatV6, Logger: quiet{}})
	return err
}

func (s *pebbleStore) commit(i int64) error { return s.db.Set(key(i), payload(i), pebble.Sync) }

func (s *pebbleStore) close() error {
	if err := s.db.Flush(); err != nil {
		return err
	}
	return s.db.Close()
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

type sqliteStore struct {
	db  *sql.DB
	ins *sql.Stmt
}

func (s *sqliteStore) open(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dsn := "file:" + filepath.Join(dir, "sales.db") +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	// SQLite has one writer at a time; one connection serialises writers in
	// Go instead of in SQLite's busy loop, which is SQLite's best case.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE sales (seq INTEGER PRIMARY KEY, idem TEXT NOT NULL UNIQUE, body BLOB NOT NULL)`); err != nil {
		return err
	}
	s.db = db
	s.ins, err = db.Prepare(`INSERT INTO sales (idem, body) VALUES (?, ?)`)
	return err
}

func (s *sqliteStore) commit(i int64) error {
	_, err := s.ins.Exec(fmt.Sprintf("key-%012d", i), payload(i))
	return err
}

func (s *sqliteStore) close() error {
	if _, err := s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return err
	}
	s.ins.Close()
	return s.db.Close()
}

type boltStore struct {
	db    *bolt.DB
	batch bool // db.Batch, which coalesces concurrent writers, instead of db.Update
}

func (s *boltStore) open(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	db, err := bolt.Open(filepath.Join(dir, "sales.bolt"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	s.db = db
	return db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("sales")); err != nil {
			return err
		}
		_, err := tx.CreateBucket([]byte("idem"))
		return err
	})
}

func (s *boltStore) commit(i int64) error {
	fn := func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("sales"))
		seq, _ := b.NextSequence()
		k := key(int64(seq))
		if err := b.Put(k, payload(i)); err != nil {
			return err
		}
		return tx.Bucket([]byte("idem")).Put([]byte(fmt.Sprintf("key-%012d", i)), k[1:])
	}
	if s.batch {
		return s.db.Batch(fn)
	}
	return s.db.Update(fn)
}

func (s *boltStore) close() error { return s.db.Close() }

// floorStore is the least a durable commit can cost: append the record to a
// file and fsync it.
type floorStore struct {
	mu sync.Mutex
	f  *os.File
}

func (s *floorStore) open(dir string) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s.f, err = os.OpenFile(filepath.Join(dir, "append.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	return err
}

func (s *floorStore) commit(i int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Write(payload(i)); err != nil {
		return err
	}
	return s.f.Sync()
}

func (s *floorStore) close() error { return s.f.Close() }

// ioBytes reads what this process has caused to be written to storage.
func ioBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	var w, c int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "write_bytes":
			w = n
		case "cancelled_write_bytes":
			c = n
		}
	}
	return w - c
}

type result struct {
	name          string
	writers       int
	n             int64
	elapsed       time.Duration
	p50, p99, max time.Duration
	bytesPerSale  float64
}

func (r result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

func runOne(name string, s store, dir string, writers int, n int64) (result, error) {
	if err := os.RemoveAll(dir); err != nil {
		return result{}, err
	}
	if err := s.open(dir); err != nil {
		return result{}, fmt.Errorf("%s: open: %w", name, err)
	}
	var next atomic.Int64
	lat := make([][]time.Duration, writers)
	errs := make(chan error, writers)
	before := ioBytes()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > n {
					return
				}
				t0 := time.Now()
				if err := s.commit(i); err != nil {
					errs <- fmt.Errorf("%s: commit %d: %w", name, i, err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	if err := s.close(); err != nil {
		return result{}, fmt.Errorf("%s: close: %w", name, err)
	}
	written := ioBytes() - before
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) time.Duration { return all[int(float64(len(all)-1)*p)] }
	return result{name: name, writers: writers, n: n, elapsed: elapsed, p50: pct(0.50), p99: pct(0.99), max: all[len(all)-1],
		bytesPerSale: float64(written) / float64(n)}, nil
}

func isTmpfs(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == 0x01021994
}

func main() {
	n := flag.Int64("n", 100_000, "sales per run")
	dir := flag.String("dir", "bench/out", "scratch `dir` on the storage device under test")
	only := flag.String("stores", "", "comma-separated store names to run (default: all)")
	onlyWriters := flag.Int("writers", 0, "run only configurations with this many writers (default: all)")
	repeat := flag.Int("repeat", 1, "run each configuration this many `times`, alternating, and keep the median")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if isTmpfs(*dir) {
		fmt.Fprintf(os.Stderr, "warning: %s is tmpfs; fsync and write_bytes mean nothing there\n", *dir)
	}
	if ioBytes() < 0 {
		fmt.Fprintln(os.Stderr, "warning: no /proc/self/io; bytes per sale are not measured")
	}
	type cfg struct {
		name    string
		mk      func() store
		writers []int
	}
	all := []cfg{
		{"append+fsync floor", func() store { return &floorStore{} }, []int{1}},
		{"ledger Append", func() store { return &ledgerStore{} }, []int{1, 16}},
		{"raw Pebble Set+Sync", func() store { return &pebbleStore{} }, []int{1, 16}},
		{"SQLite WAL FULL", func() store { return &sqliteStore{} }, []int{1, 16}},
		{"bbolt Update", func() store { return &boltStore{} }, []int{1, 16}},
		{"bbolt Batch", func() store { return &boltStore{batch: true} }, []int{16}},
	}
	var cfgs []cfg
	for _, c := range all {
		if *only == "" || strings.Contains(","+*only+",", ","+c.name+",") {
			cfgs = append(cfgs, c)
		}
	}
	// Repeats alternate between configurations, so a slow spell of the
	// machine does not land on one store; each keeps its median run.
	runs := map[string][]result{}
	var order []string
	for rep := 0; rep < *repeat; rep++ {
		for _, c := range cfgs {
			for _, w := range c.writers {
				if *onlyWriters != 0 && w != *onlyWriters {
					continue
				}
				r, err := runOne(c.name, c.mk(), filepath.Join(*dir, "storage"), w, *n)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				fmt.Fprintf(os.Stderr, "%-22s %2d writers: %8.0f commits/s  p50 %8s  p99 %8s  %7.0f B/sale\n",
					r.name, r.writers, r.rate(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.bytesPerSale)
				id := fmt.Sprintf("%s/%d", r.name, r.writers)
				if rep == 0 {
					order = append(order, id)
				}
				runs[id] = append(runs[id], r)
			}
		}
	}
	var results []result
	for _, id := range order {
		rs := runs[id]
		sort.Slice(rs, func(i, j int) bool { return rs[i].rate() < rs[j].rate() })
		results = append(results, rs[len(rs)/2])
	}
	_ = os.RemoveAll(filepath.Join(*dir, "storage"))

	find := func(name string, w int) result {
		for _, r := range results {
			if r.name == name && r.writers == w {
				return r
			}
		}
		return result{}
	}
	floor := find("append+fsync floor", 1)
	l1, l16 := find("ledger Append", 1), find("ledger Append", 16)
	p1, p16 := find("raw Pebble Set+Sync", 1), find("raw Pebble Set+Sync", 16)
	s16 := find("SQLite WAL FULL", 16)
	fmt.Printf("%d sales per run, median of %d alternating runs, %s\n\n", *n, *repeat, time.Now().Format(time.DateOnly))
	fmt.Println("| store | writers | commits/s | p50 | p99 | max | bytes/sale | × floor |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Printf("| %s | %d | %.0f | %s | %s | %s | %.0f | %.2f |\n", r.name, r.writers, r.rate(),
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond),
			r.bytesPerSale, r.bytesPerSale/max(floor.bytesPerSale, 1))
	}
	if floor.n == 0 || l1.n == 0 || l16.n == 0 || p1.n == 0 || p16.n == 0 || s16.n == 0 {
		return // a partial run has no targets to compare
	}
	fmt.Println()
	fmt.Println("| target | measured | goal |")
	fmt.Println("|---|---:|---|")
	fmt.Printf("| ledger vs raw Pebble, 1 writer | %.2f× | ≥ 0.8× |\n", l1.rate()/p1.rate())
	fmt.Printf("| ledger vs raw Pebble, 16 writers | %.2f× | ≥ 0.8× |\n", l16.rate()/p16.rate())
	fmt.Printf("| ledger vs SQLite, 16 writers | %.1f× | ≥ 3× |\n", l16.rate()/s16.rate())
	fmt.Printf("| ledger bytes/sale, 1 writer | %.2f× floor (%.0f B) | ≤ 1.15× floor |\n", l1.bytesPerSale/floor.bytesPerSale, l1.bytesPerSale)
	fmt.Printf("| ledger bytes/sale, 16 writers | %.0f B | ≤ 1 KB |\n", l16.bytesPerSale)
}
