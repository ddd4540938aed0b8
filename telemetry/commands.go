package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/microretail/kioskd/internal/atomicfile"
)

// CommandFunc runs one command with its args (a JSON object, or empty)
// and returns what goes in the result's data. An error becomes
// "ok":false with the error as the reason.
type CommandFunc func(ctx context.Context, args json.RawMessage) (any, error)

// ErrUnknownCommand answers a command this kiosk does not know.
var ErrUnknownCommand = errors.New("unknown command")

// commandTimeout bounds one command's run: a stuck printer must not hold
// the worker, and the fleet console is waiting.
const commandTimeout = 30 * time.Second

// commandLoop runs commands one at a time, in arrival order, off paho's
// router. Running them one at a time keeps a config and a lights command
// from interleaving.
func (s *Session) commandLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.cmds:
			s.publishResult(s.runCommand(ctx, m))
		}
	}
}

// runCommand answers one command message. A command id seen before is
// answered from the persisted memory and not run again; one that was
// running when the kiosk stopped is reported as interrupted, not re-run.
func (s *Session) runCommand(ctx context.Context, m paho.Message) Result {
	c, err := ParseCommand(m.Payload())
	if err != nil {
		s.log.Warn().Err(err).Str("topic", m.Topic()).Msg("command refused")
		return Result{ID: c.ID, OK: false, Error: err.Error()}
	}
	if r, ok := s.memory.get(c.ID); ok {
		r.Replayed = true
		s.log.Info().Str("id", c.ID).Str("cmd", c.Cmd).Msg("command seen before; answering from memory")
		return r
	}
	if err := s.memory.put(c.ID, Result{ID: c.ID, OK: false, Error: "interrupted: the kiosk stopped while running this command; it was not run again"}); err != nil {
		// Without the memory the command could run twice; refuse it.
		return Result{ID: c.ID, OK: false, Error: "cannot record the command: " + err.Error()}
	}
	r := Result{ID: c.ID, OK: true}
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	data, err := s.dispatch(cctx, c)
	cancel()
	if err != nil {
		r.OK, r.Error = false, err.Error()
	}
	if data != nil {
		if b, merr := json.Marshal(data); merr == nil {
			r.Data = b
		}
	}
	if err := s.memory.put(c.ID, r); err != nil {
		s.log.Error().Err(err).Str("id", c.ID).Msg("cannot record a command's result")
	}
	s.log.Info().Str("id", c.ID).Str("cmd", c.Cmd).Bool("ok", r.OK).Str("error", r.Error).Msg("command")
	return r
}

func (s *Session) dispatch(ctx context.Context, c Command) (any, error) {
	switch c.Cmd {
	case "ping":
		return map[string]any{"pong": true, "boot": s.boot, "version": s.o.Version,
			"uptime_s": int64(s.o.Clock().Sub(s.start) / time.Second)}, nil
	case "sync_now":
		s.poke()
		var outbox uint64
		if s.o.Ledger != nil {
			outbox = s.o.Ledger.OutboxLen()
		}
		return map[string]any{"outbox": outbox}, nil
	case "config":
		if s.o.Config == nil {
			return nil, errors.New("this kiosk takes no fleet config")
		}
		return s.o.Config.Offer(c.Args)
	}
	fn, ok := s.o.Commands[c.Cmd]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownCommand, c.Cmd)
	}
	return fn(ctx, c.Args)
}

func (s *Session) publishResult(r Result) {
	r.Kiosk = s.o.KioskID
	if _, err := s.publish(TopicCmdResult, 1, false, r); err != nil {
		// The result is in memory: the console's retry with the same id gets it.
		s.log.Warn().Err(err).Str("id", r.ID).Msg("command result not sent")
	}
}

// memory remembers recent commands' results by id, on disk, so that a
// command delivered twice (a console retry, fleet/cmd plus kiosk/<id>/cmd,
// a redelivery after a reconnect) runs once.
type memory struct {
	path  string
	clock func() time.Time

	mu   sync.Mutex
	seen map[string]remembered
}

type remembered struct {
	At     time.Time `json:"at"`
	Result Result    `json:"result"`
}

// How much the memory keeps: a command id is remembered for a week or
// until 512 newer ones push it out.
const (
	memoryMax = 512
	memoryAge = 7 * 24 * time.Hour
)

func loadMemory(path string, clock func() time.Time) (*memory, error) {
	m := &memory{path: path, clock: clock, seen: map[string]remembered{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: command memory: %w", err)
	}
	if err := json.Unmarshal(b, &m.seen); err != nil {
		// atomicfile never leaves a torn file; garbage here is outside
		// damage. Losing the memory risks a re-run, so keep the file.
		_ = os.Rename(path, path+".bad")
		return nil, fmt.Errorf("telemetry: command memory %s unreadable (kept as .bad): %v", path, err)
	}
	return m, nil
}

func (m *memory) get(id string) (Result, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.seen[id]
	return r.Result, ok
}

// put records a result and writes the memory durably before returning.
func (m *memory) put(id string, r Result) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock()
	m.seen[id] = remembered{At: now, Result: r}
	m.prune(now)
	b, err := json.Marshal(m.seen)
	if err != nil {
		return err
	}
	return atomicfile.Write(m.path, b, 0o640)
}

func (m *memory) prune(now time.Time) {
	for id, r := range m.seen {
		if now.Sub(r.At) > memoryAge {
			delete(m.seen, id)
		}
	}
	if len(m.seen) <= memoryMax {
		return
	}
	ids := make([]string, 0, len(m.seen))
	for id := range m.seen {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return m.seen[ids[i]].At.Before(m.seen[ids[j]].At) })
	for _, id := range ids[:len(ids)-memoryMax] {
		delete(m.seen, id)
	}
}
