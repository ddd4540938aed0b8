package till

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/internal/atomicfile"
)

// trading is whether the till is open for the day. The operator closes it
// at the end of the night (the Z-report screen) and opens it the next
// evening; a closed till records nothing, and the lights go to night.
type trading struct {
	open atomic.Bool
	mu   sync.Mutex // serialises changes and their file writes
	file string
	on   func(bool)
}

const (
	tradingOpen   = "open\n"
	tradingClosed = "closed\n"
)

// load reads the persisted state; a missing or unreadable file opens the
// till, since a kiosk that boots closed by mistake loses a night's sales.
func (tr *trading) load(file string, on func(bool), log zerolog.Logger) {
	tr.file, tr.on = file, on
	open := true
	if file != "" {
		b, err := os.ReadFile(file)
		switch {
		case err == nil && string(b) == tradingClosed:
			open = false
		case err == nil && string(b) == tradingOpen, errors.Is(err, fs.ErrNotExist):
		case err == nil:
			log.Warn().Str("file", file).Str("content", strings.TrimSpace(string(b))).Msg("unreadable trading state; the till opens")
		default:
			log.Warn().Err(err).Msg("cannot read the trading state; the till opens")
		}
	}
	tr.open.Store(open)
	if on != nil {
		on(open)
	}
}

// Trading reports whether the till is open for the day.
func (t *Till) Trading() bool { return t.trading.open.Load() }

// SetTrading opens or closes the till for the day. The state is on disk
// before it takes effect, so a restart comes back the same.
func (t *Till) SetTrading(open bool) error {
	tr := &t.trading
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.open.Load() == open {
		return nil
	}
	if tr.file != "" {
		v := tradingClosed
		if open {
			v = tradingOpen
		}
		if err := atomicfile.Write(tr.file, []byte(v), 0o640); err != nil {
			// A failed directory sync comes after the rename: the file
			// says the new state already, and so must the till.
			if b, rerr := os.ReadFile(tr.file); rerr != nil || string(b) != v {
				return fmt.Errorf("till: saving the trading state: %w", err)
			}
			t.log.Warn().Err(err).Msg("the trading state may not survive a power cut")
		}
	}
	tr.open.Store(open)
	t.log.Info().Bool("open", open).Msg("trading day")
	t.publish(events.Till, map[string]any{"trading": open})
	if tr.on != nil {
		tr.on(open)
	}
	return nil
}
