// Package printing is the kiosk's receipt print queue. Jobs are written by
// the ledger in the same batch as their sale; the queue prints them in
// order, holds them while the printer cannot print (paper out, cover open),
// and resumes when it can.
//
// No receipt is ever printed twice by a retry or a restart. A job is marked
// sending, durably, before its first byte leaves, and printed once the
// printer has taken all of it and reports no fault. A job that is still
// marked sending when kioskd starts was cut off by a crash or a power cut:
// it may be on paper, so it is marked in doubt and only an explicit,
// logged reprint prints it again.
package printing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/firmware/receipt"
)

// Printer is the receipt printer as the queue drives it (escpos.Dev).
type Printer interface {
	// Status asks the printer for its state.
	Status() (escpos.Status, error)
	// Print sends a receipt. An error wrapping escpos.ErrNotSent means no
	// byte of it reached the printer.
	Print(data []byte) error
	// OpenDrawer pulses the cash drawer on its connector pin (2 or 5) at
	// once, even while the printer cannot print.
	OpenDrawer(pin int) error
}

// Options configures a Queue.
type Options struct {
	Ledger *ledger.Ledger
	Layout receipt.Layout
	Events *events.Hub // may be nil
	Logger zerolog.Logger
	// History is how many finished jobs State remembers (default 10).
	History int
	// DrawerPin is the drawer-kick connector pin the drawer is on: 2 (the
	// default) or 5.
	DrawerPin int
}

// Queue prints receipt jobs. It is safe for concurrent use; Step is called
// from one goroutine, the printer's.
type Queue struct {
	opts Options
	log  zerolog.Logger

	mu        sync.Mutex
	printer   string              // the printer's state as State shows it
	nearEnd   bool                //
	waiting   string              // why jobs are held, "" when they are not
	delivered map[uint64]struct{} // jobs sending whose bytes all reached a printer that then stopped
	drawn     map[uint64]struct{} // jobs whose drawer pulse went out in this run
	recent    []JobView           // the last finished jobs, newest last
	docs      []Document          // documents waiting, oldest first
	lastErr   string              // the last error logged, to log a repeat once
}

// Printer states shown in State and published in events.
const (
	Ready        = "ready"
	PaperOut     = "paper_out"
	CoverOpen    = "cover_open"
	Offline      = "offline"
	Error        = "error"
	NotConnected = "not_connected"
)

// New makes a queue. Call Recover once before the first Step.
func New(opts Options) *Queue {
	if opts.History <= 0 {
		opts.History = 10
	}
	if opts.DrawerPin == 0 {
		opts.DrawerPin = 2
	}
	return &Queue{
		opts:      opts,
		log:       opts.Logger.With().Str("component", "printing").Logger(),
		printer:   NotConnected,
		waiting:   "the printer is not connected yet",
		delivered: map[uint64]struct{}{},
		drawn:     map[uint64]struct{}{},
	}
}

// Recover marks the jobs a crash left sending as in doubt. They may be on
// paper; the till shows them and the operator reprints if they are not.
func (q *Queue) Recover(ctx context.Context) error {
	jobs, err := q.opts.Ledger.OpenJobs()
	if err != nil {
		return fmt.Errorf("printing: %w", err)
	}
	for _, j := range jobs {
		if j.State != ledger.JobSending {
			continue
		}
		j, err := q.opts.Ledger.MoveJob(ctx, j.Seq, ledger.JobSending, ledger.JobInDoubt)
		if err != nil {
			return fmt.Errorf("printing: %w", err)
		}
		q.log.Warn().Uint64("seq", j.Seq).Uint32("copy", j.Copy).
			Msg("receipt was being sent when kioskd stopped; it may or may not have printed, and will not be sent again unless reprinted")
		q.finished(j)
	}
	return nil
}

// Disconnected tells the queue the printer cannot be reached. Jobs it was
// holding are in doubt: a printer that comes back has lost its buffer.
func (q *Queue) Disconnected(err error) {
	q.setPrinter(NotConnected, false, "the printer is not connected: "+err.Error())
	ctx, cancel := context.WithTimeout(context.Background(), outcomeTimeout)
	defer cancel()
	q.forgetDelivered(ctx)
}

// Step does one round with an open printer: read its status, settle what
// it finished, and send the next queued receipt if it can print. An error
// means the printer did not answer or a send failed.
func (q *Queue) Step(ctx context.Context, p Printer) error {
	st, err := p.Status()
	if err != nil {
		q.setPrinter(NotConnected, false, "the printer does not answer: "+err.Error())
		q.forgetDelivered(ctx)
		return err
	}
	jobs, err := q.opts.Ledger.OpenJobs()
	if err != nil {
		return err
	}
	if err := q.drawers(jobs, p); err != nil {
		// No receipt goes out before its cash drawer opened: printing it
		// would end the job's chance of opening the drawer.
		return err
	}
	if err := st.Err(); err != nil {
		q.setPrinter(printerState(st), st.PaperNearEnd, waitReason(err))
		return nil
	}
	q.setPrinter(Ready, st.PaperNearEnd, "")
	for _, j := range jobs {
		if j.State != ledger.JobSending {
			continue
		}
		if q.take(j.Seq) {
			// The printer took all of it, stopped, and has resumed.
			if err := q.move(ctx, j, ledger.JobPrinted); err != nil {
				return err
			}
			continue
		}
		// Sending, but not in this run's hands: a send that failed part
		// way. It may be partly on paper; never send it twice.
		if err := q.move(ctx, j, ledger.JobInDoubt); err != nil {
			return err
		}
	}
	for _, j := range jobs {
		if j.State == ledger.JobQueued {
			return q.print(ctx, p, j)
		}
	}
	return q.printDocument(p)
}

// Document is something printed that is no ledger entry: a Z-report, a
// test page.
type Document struct {
	Name string
	Data []byte // ESC/POS, cut included
}

// MaxDocuments bounds the documents waiting to print.
const MaxDocuments = 8

// ErrBusy: too many documents are waiting for the printer already.
var ErrBusy = errors.New("printing: too many documents waiting")

// Print queues a document behind the receipts. Documents are kept in
// memory only: they are reports anyone can print again, not money, and a
// restart forgets them.
func (q *Queue) Print(d Document) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.docs) >= MaxDocuments {
		return fmt.Errorf("%w (%d)", ErrBusy, len(q.docs))
	}
	q.docs = append(q.docs, d)
	q.log.Info().Str("document", d.Name).Msg("document queued")
	return nil
}

// printDocument sends the oldest waiting document, if any. One that did
// not reach the printer at all waits for the next round; one cut off part
// way is dropped, as a receipt would be put in doubt.
func (q *Queue) printDocument(p Printer) error {
	q.mu.Lock()
	if len(q.docs) == 0 {
		q.mu.Unlock()
		return nil
	}
	d := q.docs[0]
	q.mu.Unlock()
	err := p.Print(d.Data)
	if errors.Is(err, escpos.ErrNotSent) {
		if st := statusErr(err); st != "" {
			q.setPrinter(st, false, waitReason(err))
			return nil
		}
		return err
	}
	q.mu.Lock()
	q.docs = q.docs[1:]
	q.mu.Unlock()
	switch {
	case err == nil:
		q.log.Info().Str("document", d.Name).Msg("document printed")
	case errors.Is(err, escpos.ErrHeld):
		q.setPrinter(statusErr(err), false, waitReason(err))
		q.log.Warn().Err(err).Str("document", d.Name).Msg("printer stopped during a document; it finishes when it can")
		return nil
	default:
		q.log.Error().Err(err).Str("document", d.Name).Msg("document send failed part way; not sent again")
	}
	return err
}

// drawers opens the cash drawer for cash jobs at once, before their
// receipts print and whether or not there is paper: the cashier needs the
// change now. A drawer pulse is not durable: after a restart a job still
// queued pulses again, which costs a drawer opening, never money.
func (q *Queue) drawers(jobs []ledger.Job, p Printer) error {
	for _, j := range jobs {
		q.mu.Lock()
		_, done := q.drawn[j.Seq]
		q.mu.Unlock()
		if !j.Drawer || j.State != ledger.JobQueued || done {
			continue
		}
		if err := p.OpenDrawer(q.opts.DrawerPin); err != nil {
			q.logOnce(err, "opening the cash drawer failed")
			return fmt.Errorf("printing: cash drawer: %w", err)
		}
		q.mu.Lock()
		q.drawn[j.Seq] = struct{}{}
		q.mu.Unlock()
		q.log.Info().Uint64("seq", j.Seq).Msg("cash drawer opened")
	}
	return nil
}

// print sends one queued job.
func (q *Queue) print(ctx context.Context, p Printer, j ledger.Job) error {
	e, err := q.opts.Ledger.Get(j.Seq)
	if err != nil {
		return err
	}
	data, err := q.opts.Layout.Entry(e, j.Copy)
	if err != nil {
		// Nothing will ever print it; do not let it hold up the queue.
		q.log.Error().Err(err).Uint64("seq", j.Seq).Msg("receipt cannot be laid out")
		if j, err = q.opts.Ledger.MoveJob(ctx, j.Seq, ledger.JobQueued, ledger.JobSending); err != nil {
			return err
		}
		return q.move(ctx, j, ledger.JobInDoubt)
	}
	if j, err = q.opts.Ledger.MoveJob(ctx, j.Seq, ledger.JobQueued, ledger.JobSending); err != nil {
		return err
	}
	perr := p.Print(data)
	// What happened to the job is recorded even if kioskd is stopping: the
	// supervisor's ctx may be cancelled by now.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
	defer cancel()
	switch {
	case perr == nil:
		return q.move(ctx, j, ledger.JobPrinted)
	case errors.Is(perr, escpos.ErrNotSent):
		// Nothing left: it goes back in the queue as it was.
		if _, err := q.opts.Ledger.MoveJob(ctx, j.Seq, ledger.JobSending, ledger.JobQueued); err != nil {
			return err
		}
		if st := statusErr(perr); st != "" {
			q.setPrinter(st, false, waitReason(perr))
			return nil
		}
		return perr
	case errors.Is(perr, escpos.ErrHeld):
		// All of it reached the printer, which then stopped (paper ran out
		// mid-receipt): it holds the rest and prints it when it can.
		q.mu.Lock()
		q.delivered[j.Seq] = struct{}{}
		q.mu.Unlock()
		q.setPrinter(statusErr(perr), false, waitReason(perr))
		q.log.Warn().Err(perr).Uint64("seq", j.Seq).Msg("printer stopped during a receipt; it finishes when it can")
		return nil
	default:
		// The link failed part way, or a printer without flow control
		// stopped and may have dropped some: part of it may be on paper.
		if st := statusErr(perr); st != "" {
			q.setPrinter(st, false, waitReason(perr))
		}
		q.log.Error().Err(perr).Uint64("seq", j.Seq).Msg("receipt send failed part way; not sent again unless reprinted")
		if err := q.move(ctx, j, ledger.JobInDoubt); err != nil {
			return err
		}
		return perr
	}
}

// outcomeTimeout bounds recording what became of a job once sent.
const outcomeTimeout = 5 * time.Second

// forgetDelivered gives up on the jobs a stopped printer was holding: the
// printer went away (unplugged, power-cycled, not answering) and its buffer
// with them. They may be partly on paper: in doubt.
func (q *Queue) forgetDelivered(ctx context.Context) {
	q.mu.Lock()
	held := q.delivered
	q.delivered = map[uint64]struct{}{}
	q.mu.Unlock()
	for seq := range held {
		j, ok, err := q.opts.Ledger.Job(seq)
		if err != nil || !ok || j.State != ledger.JobSending {
			continue
		}
		if err := q.move(ctx, j, ledger.JobInDoubt); err != nil {
			q.log.Error().Err(err).Uint64("seq", seq).Msg("cannot mark a lost receipt in doubt")
		}
	}
}

// take forgets a delivered job, reporting whether it was one.
func (q *Queue) take(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.delivered[seq]
	delete(q.delivered, seq)
	return ok
}

// move moves a sending job to a final state and reports it.
func (q *Queue) move(ctx context.Context, j ledger.Job, to ledger.JobState) error {
	j, err := q.opts.Ledger.MoveJob(ctx, j.Seq, ledger.JobSending, to)
	if err != nil {
		return err
	}
	if to == ledger.JobInDoubt {
		q.log.Warn().Uint64("seq", j.Seq).Uint32("copy", j.Copy).Msg("receipt in doubt")
	} else {
		q.log.Info().Uint64("seq", j.Seq).Uint32("copy", j.Copy).Msg("receipt printed")
	}
	q.finished(j)
	return nil
}

// finished records a job that reached a final state and announces it.
func (q *Queue) finished(j ledger.Job) {
	v := q.view(j)
	q.mu.Lock()
	delete(q.drawn, j.Seq)
	q.recent = append(q.recent, v)
	if len(q.recent) > q.opts.History {
		q.recent = q.recent[len(q.recent)-q.opts.History:]
	}
	q.mu.Unlock()
	if q.opts.Events != nil {
		q.opts.Events.Publish(events.Receipt, v)
	}
}

func (q *Queue) view(j ledger.Job) JobView {
	return JobView{SaleID: ledger.ID{Ledger: q.opts.Ledger.LedgerID(), Seq: j.Seq}.String(),
		Seq: j.Seq, Copy: j.Copy, State: j.State.String(), Updated: j.Updated}
}

// setPrinter records the printer's state, logging and publishing changes.
func (q *Queue) setPrinter(state string, nearEnd bool, waiting string) {
	q.mu.Lock()
	changed := state != q.printer || nearEnd != q.nearEnd
	q.printer, q.nearEnd, q.waiting = state, nearEnd, waiting
	q.mu.Unlock()
	if !changed {
		return
	}
	ev := zerologEvent(q.log, state)
	ev.Str("printer", state).Bool("paper_near_end", nearEnd).Str("waiting", waiting).Msg("printer state")
	if q.opts.Events == nil {
		return
	}
	data := map[string]any{"state": state, "paper_near_end": nearEnd, "waiting": waiting}
	if state == PaperOut {
		q.opts.Events.Publish(events.PaperOut, data)
	}
	q.opts.Events.Publish(events.PrinterStatus, data)
}

func zerologEvent(log zerolog.Logger, state string) *zerolog.Event {
	if state == Ready {
		return log.Info()
	}
	return log.Warn()
}

// logOnce logs an error unless it repeats the last one.
func (q *Queue) logOnce(err error, msg string) {
	q.mu.Lock()
	same := q.lastErr == err.Error()
	q.lastErr = err.Error()
	q.mu.Unlock()
	if !same {
		q.log.Warn().Err(err).Msg(msg)
	}
}

func printerState(st escpos.Status) string {
	switch {
	case st.CoverOpen:
		return CoverOpen
	case st.PaperOut:
		return PaperOut
	case st.Error:
		return Error
	case st.Offline:
		return Offline
	}
	return Ready
}

// statusErr maps a printer status error to a printer state, or "".
func statusErr(err error) string {
	switch {
	case errors.Is(err, escpos.ErrCoverOpen):
		return CoverOpen
	case errors.Is(err, escpos.ErrPaperOut):
		return PaperOut
	case errors.Is(err, escpos.ErrPrinter):
		return Error
	case errors.Is(err, escpos.ErrOffline):
		return Offline
	}
	return ""
}

// waitReason is what the till shows while receipts wait.
func waitReason(err error) string {
	switch statusErr(err) {
	case PaperOut:
		return "waiting for paper: load a new roll and close the cover"
	case CoverOpen:
		return "waiting for the printer cover to be closed"
	case Error:
		return "the printer reports an error (cutter jam or overheating); clear it and close the cover"
	}
	return "the printer is offline: " + err.Error()
}

// JobView is a job as the till shows it.
type JobView struct {
	SaleID  string    `json:"sale_id"`
	Seq     uint64    `json:"seq"`
	Copy    uint32    `json:"copy"`
	State   string    `json:"state"`
	Updated time.Time `json:"updated"`
}

// State is the printer and its queue, for /api/state.
type State struct {
	Printer      string    `json:"printer"`
	PaperNearEnd bool      `json:"paper_near_end"`
	Waiting      string    `json:"waiting,omitempty"`   // why receipts are held
	Queue        []JobView `json:"queue"`               // open jobs, oldest first
	Documents    []string  `json:"documents,omitempty"` // documents waiting, oldest first
	Recent       []JobView `json:"recent"`              // the last finished jobs, newest last
}

// Ready reports whether the printer could print at the last look.
func (q *Queue) Ready() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.printer == Ready
}

// State reports the printer and its queue.
func (q *Queue) State() State {
	jobs, _ := q.opts.Ledger.OpenJobs()
	q.mu.Lock()
	defer q.mu.Unlock()
	s := State{Printer: q.printer, PaperNearEnd: q.nearEnd, Queue: []JobView{}, Recent: append([]JobView{}, q.recent...)}
	if len(jobs) > 0 || len(q.docs) > 0 {
		s.Waiting = q.waiting
	}
	for _, j := range jobs {
		s.Queue = append(s.Queue, q.view(j))
	}
	for _, d := range q.docs {
		s.Documents = append(s.Documents, d.Name)
	}
	return s
}
