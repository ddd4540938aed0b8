package ledger

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestReceiptJobs(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	clock := newClock()
	l := openTest(t, fs, testOptions(clock))

	d := sale("s1", PaymentCash, chai)
	d.Receipt, d.Drawer, d.Tendered = true, true, 20000
	e := mustAppend(t, l, d)
	if e.Tendered != 20000 || e.Change() != 20000-chai.Total() {
		t.Fatalf("tendered %d, change %d", e.Tendered, e.Change())
	}
	short := sale("short", PaymentCash, chai)
	short.Tendered = chai.Total() - 1
	if _, err := l.Append(ctx, short); !errors.Is(err, ErrInvalid) {
		t.Fatalf("tendered short of the total: %v", err)
	}
	mustAppend(t, l, sale("s2-no-receipt", PaymentCash, samosa))
	if _, err := l.Append(ctx, d); err != nil { // a retry queues nothing new
		t.Fatal(err)
	}

	jobs, err := l.OpenJobs()
	if err != nil || len(jobs) != 1 {
		t.Fatalf("OpenJobs = %+v, %v; want the one job of s1", jobs, err)
	}
	if j := jobs[0]; j.Seq != e.Seq || j.State != JobQueued || j.Copy != 0 || !j.Drawer {
		t.Fatalf("job = %+v", j)
	}
	if _, ok, _ := l.Job(e.Seq + 1); ok {
		t.Fatal("a sale without a receipt has a job")
	}

	clock.Advance(time.Second)
	if _, err := l.MoveJob(ctx, e.Seq, JobQueued, JobSending); err != nil {
		t.Fatal(err)
	}
	// Moving from the wrong state changes nothing.
	if _, err := l.MoveJob(ctx, e.Seq, JobQueued, JobSending); !errors.Is(err, ErrConflict) {
		t.Fatalf("second move from queued: %v, want ErrConflict", err)
	}
	if _, err := l.Reprint(ctx, e.Seq); !errors.Is(err, ErrConflict) {
		t.Fatalf("reprint while sending: %v, want ErrConflict", err)
	}
	j, err := l.MoveJob(ctx, e.Seq, JobSending, JobPrinted)
	if err != nil || j.State != JobPrinted || !j.Updated.Equal(clock.Now().UTC()) {
		t.Fatalf("MoveJob = %+v, %v", j, err)
	}
	if jobs, _ := l.OpenJobs(); len(jobs) != 0 {
		t.Fatalf("printed job still open: %+v", jobs)
	}

	// A reprint is the next copy, queued, and never opens the drawer again.
	j, err = l.Reprint(ctx, e.Seq)
	if err != nil || j.Copy != 1 || j.State != JobQueued || j.Drawer {
		t.Fatalf("Reprint = %+v, %v", j, err)
	}
	// A reprint of an entry never printed is copy 1.
	if j, err := l.Reprint(ctx, e.Seq+1); err != nil || j.Copy != 1 {
		t.Fatalf("Reprint(no job) = %+v, %v", j, err)
	}
	if _, err := l.Reprint(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Reprint(99) = %v", err)
	}
	if _, err := l.MoveJob(ctx, e.Seq, JobPrinted, JobQueued); !errors.Is(err, ErrInvalid) {
		t.Fatalf("move to queued: %v", err)
	}
	c := mustVerify(t, l)
	if c.Jobs != 2 || c.OpenJobs != 2 {
		t.Fatalf("Verify: %d jobs, %d open", c.Jobs, c.OpenJobs)
	}

	// Jobs survive a restart as they were.
	l.Close()
	l = openTest(t, fs, testOptions(clock))
	jobs, err = l.OpenJobs()
	if err != nil || len(jobs) != 2 || jobs[0].Seq != e.Seq || jobs[0].Copy != 1 || jobs[1].Seq != e.Seq+1 {
		t.Fatalf("after reopen: %+v, %v", jobs, err)
	}
}

func TestDecodeJobRejectsCorruption(t *testing.T) {
	good := encodeJob(Job{Seq: 7, State: JobSending, Drawer: true, Copy: 3, Updated: time.Unix(1700000000, 5)})
	j, err := decodeJob(7, good)
	if err != nil || j.State != JobSending || !j.Drawer || j.Copy != 3 || j.Updated.UnixNano() != 1700000000_000000005 {
		t.Fatalf("decodeJob = %+v, %v", j, err)
	}
	for name, v := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:jobHeader],
		"version":   append([]byte{2}, good[1:]...),
		"state":     append([]byte{1, 9}, good[2:]...),
		"flags":     append([]byte{1, 2, 0x80}, good[3:]...),
		"trailing":  append(append([]byte(nil), good...), 0),
	} {
		if _, err := decodeJob(7, v); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}
