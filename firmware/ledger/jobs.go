package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// JobState is where a receipt print job stands.
type JobState uint8

// The states of a print job. Queued and Sending are open: the print queue
// still owes the job something. A job only ever moves forward, except that a
// reprint queues a closed job again as its next copy.
const (
	JobQueued  JobState = 1 // waiting for the printer
	JobSending JobState = 2 // its bytes may have reached the printer
	JobPrinted JobState = 3 // the printer took all of it and reported no fault after
	// JobInDoubt: the job was found Sending when kioskd started, so a crash
	// or power cut came in the middle of sending it. The receipt may or may
	// not be on paper; it is never sent again by itself, only by an explicit
	// reprint, so a restart can never print a receipt twice.
	JobInDoubt JobState = 4
)

var jobStateNames = map[JobState]string{
	JobQueued: "queued", JobSending: "sending", JobPrinted: "printed", JobInDoubt: "in_doubt",
}

func (s JobState) String() string {
	if n, ok := jobStateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("JobState(%d)", s)
}

// MarshalText writes the state's name.
func (s JobState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Open tells whether the print queue still owes the job something.
func (s JobState) Open() bool { return s == JobQueued || s == JobSending }

// Job is the receipt print job of an entry. It is written in the same
// atomic batch as the entry (Draft.Receipt), so no sale is ever durable
// without its receipt, and each move of its state is synced before the
// move's caller acts on it.
type Job struct {
	Seq     uint64    `json:"seq"`    // the entry it prints
	Copy    uint32    `json:"copy"`   // 0 for the original, n for the nth reprint
	State   JobState  `json:"state"`  //
	Drawer  bool      `json:"drawer"` // open the cash drawer with it (cash sales)
	Updated time.Time `json:"updated"`
}

// Job value, version 1, under 'p' seq:u64be:
//
//	off  size  field
//	0    1     version = 1
//	1    1     state (JobState)
//	2    1     flags: bit 0 open the cash drawer
//	3    8     updated, unix nanoseconds, i64be
//	11   ...   copy, uvarint
//
// An open job also has a row 'q' seq:u64be with the one-byte value 1, so
// the print queue finds its work without reading every job ever printed.
const (
	tagJob     = 'p'
	tagOpenJob = 'q'
	jobHeader  = 11
	jobDrawer  = 1 << 0
)

func jobKey(seq uint64) []byte     { return seqKey(tagJob, seq) }
func openJobKey(seq uint64) []byte { return seqKey(tagOpenJob, seq) }

func encodeJob(j Job) []byte {
	v := make([]byte, jobHeader, jobHeader+binary.MaxVarintLen32)
	v[0] = valueVersion
	v[1] = byte(j.State)
	if j.Drawer {
		v[2] |= jobDrawer
	}
	binary.BigEndian.PutUint64(v[3:], uint64(j.Updated.UnixNano()))
	return binary.AppendUvarint(v, uint64(j.Copy))
}

func decodeJob(seq uint64, v []byte) (Job, error) {
	if len(v) < jobHeader+1 || v[0] != valueVersion {
		return Job{}, fmt.Errorf("%w: job %d value %x", ErrCorrupt, seq, v)
	}
	j := Job{Seq: seq, State: JobState(v[1]), Drawer: v[2]&jobDrawer != 0,
		Updated: time.Unix(0, int64(binary.BigEndian.Uint64(v[3:]))).UTC()}
	c, n := binary.Uvarint(v[jobHeader:])
	if _, ok := jobStateNames[j.State]; !ok || v[2]&^jobDrawer != 0 || n != len(v)-jobHeader || c > 1<<31 {
		return Job{}, fmt.Errorf("%w: job %d value %x", ErrCorrupt, seq, v)
	}
	j.Copy = uint32(c)
	return j, nil
}

// jobOp is a request to move a job: from one state to another, or (reprint)
// from any closed state to the next copy, queued.
type jobOp struct {
	seq      uint64
	from, to JobState
	reprint  bool
}

// setJob puts a job and its open-index row in the batch.
func (p *preparer) setJob(j Job) {
	b := p.batch()
	v := encodeJob(j)
	k := jobKey(j.Seq)
	b.Set(k, v, nil)
	if j.State.Open() {
		b.Set(openJobKey(j.Seq), []byte{valueVersion}, nil)
	} else {
		b.Delete(openJobKey(j.Seq), nil)
	}
	if p.jobs == nil {
		p.jobs = map[string][]byte{}
	}
	p.jobs[string(k)] = v
}

// newJob queues the receipt of an entry this group adds. Nothing is on disk
// under its key yet; recording that for readers keeps the job out of their
// sight until the group is synced, as row does for rows it seeds.
func (p *preparer) newJob(j Job) {
	k := string(jobKey(j.Seq))
	p.l.seqRows[k] = nil
	p.l.durable.Lock()
	if _, seen := p.l.durable.rows[k]; !seen {
		p.l.durable.rows[k] = nil
	}
	p.l.durable.Unlock()
	p.setJob(j)
}

// job runs one jobOp on the sequencer.
func (p *preparer) job(op *jobOp) result {
	l := p.l
	if op.seq == 0 || op.seq >= l.next {
		return result{err: fmt.Errorf("%w: no entry with seq %d", ErrNotFound, op.seq)}
	}
	v, err := l.row(jobKey(op.seq), true)
	if err != nil {
		return result{err: err}
	}
	j := Job{Seq: op.seq}
	if v != nil {
		if j, err = decodeJob(op.seq, v); err != nil {
			return result{err: err}
		}
	}
	switch {
	case op.reprint && j.State.Open():
		return result{err: fmt.Errorf("%w: the receipt of entry %d is %s already", ErrConflict, op.seq, j.State)}
	case op.reprint:
		if v != nil {
			j.Copy++
		} else {
			j.Copy = 1 // never printed: it is still a copy, not the original
		}
		j.State, j.Drawer = JobQueued, false // a reprint never opens the drawer
	case v == nil:
		return result{err: fmt.Errorf("%w: entry %d has no print job", ErrNotFound, op.seq)}
	case j.State != op.from:
		return result{err: fmt.Errorf("%w: the receipt of entry %d is %s, not %s", ErrConflict, op.seq, j.State, op.from)}
	default:
		j.State = op.to
	}
	j.Updated = l.opts.Clock().UTC()
	p.setJob(j)
	return result{job: j}
}

// MoveJob moves the print job of entry seq from one state to another and
// returns once the move is synced. If the job is not in state from, it
// fails with ErrConflict and changes nothing. The only way back is from
// sending to queued, for a job whose bytes provably never left.
func (l *Ledger) MoveJob(ctx context.Context, seq uint64, from, to JobState) (Job, error) {
	if _, ok := jobStateNames[to]; !ok || (to == JobQueued && from != JobSending) {
		return Job{}, fmt.Errorf("%w: a job cannot be moved from %s to %s", ErrInvalid, from, to)
	}
	res, err := l.submitResult(ctx, &request{job: &jobOp{seq: seq, from: from, to: to}, done: make(chan result, 1)})
	return res.job, err
}

// Reprint queues the next copy of entry seq's receipt, and returns once it
// is synced. Reprints are explicit: the print queue never makes one. A job
// that is still open (queued or sending) is not doubled: ErrConflict.
func (l *Ledger) Reprint(ctx context.Context, seq uint64) (Job, error) {
	res, err := l.submitResult(ctx, &request{job: &jobOp{seq: seq, reprint: true}, done: make(chan result, 1)})
	return res.job, err
}

// Job returns the print job of entry seq as synced, and false if the entry
// has none.
func (l *Ledger) Job(seq uint64) (Job, bool, error) {
	v, err := l.row(jobKey(seq), false)
	if err != nil || v == nil {
		return Job{}, false, err
	}
	j, err := decodeJob(seq, v)
	return j, err == nil, err
}

// OpenJobs returns the synced print jobs that are queued or sending, oldest
// entry first.
func (l *Ledger) OpenJobs() ([]Job, error) {
	var seqs []uint64
	err := l.read(func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagOpenJob}, UpperBound: []byte{tagOpenJob + 1}})
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: open job key %x", ErrCorrupt, k)
			}
			seqs = append(seqs, binary.BigEndian.Uint64(k[1:]))
		}
		if err := it.Error(); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The index may hold rows of a group that is applied but not yet synced;
	// the job as readers see it is the judge.
	var jobs []Job
	for _, seq := range seqs {
		j, ok, err := l.Job(seq)
		if err != nil {
			return nil, err
		}
		if ok && j.State.Open() && seq <= l.head.Load() {
			jobs = append(jobs, j)
		}
	}
	return jobs, nil
}
