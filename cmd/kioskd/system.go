package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/internal/logind"
)

// errSystemShutdown is the cause of a shutdown something else began: the
// power button, an operator, a UPS daemon. logind told kioskd, which holds
// the shutdown back with its delay lock until the ledger is closed.
var errSystemShutdown = errors.New("the system is shutting down")

// systemPower is kioskd's way to the board's power on a real board: logind
// over the system bus, holding a delay inhibitor lock for as long as the
// ledger is open, with systemctl behind it. The sim board, which must
// never touch its host, has none of it: every method is then a no-op.
type systemPower struct {
	log  zerolog.Logger
	conn *logind.Conn
	lock *logind.Lock
	// begun closes when logind says a shutdown has begun; nil (never)
	// without logind.
	begun chan struct{}
	// closing: kioskd lets go of the bus itself; its going is no news.
	closing atomic.Bool
}

// openSystemPower connects to logind and takes the delay lock, unless
// without is set. Without
// logind (no system bus, polkit refusing) kioskd runs on: power-off falls
// back to systemctl, and an outside shutdown gets only SIGTERM's budget.
func openSystemPower(without bool, log zerolog.Logger) *systemPower {
	sp := &systemPower{log: log}
	if without {
		return sp
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := logind.Connect(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("no logind: an outside shutdown gets no delay for the ledger; power-off through systemctl")
		return sp
	}
	sp.conn = conn
	if sp.lock, err = conn.InhibitDelay("shutdown", "kioskd", "closing the sales ledger"); err != nil {
		log.Warn().Err(err).Msg("no delay lock: an outside shutdown gets only SIGTERM's budget for the ledger")
	}
	return sp
}

// watch ends the kiosk's run, with errSystemShutdown as the cause, when
// logind says a shutdown or reboot has begun.
func (sp *systemPower) watch(ctx context.Context, stop context.CancelCauseFunc) {
	if sp.conn == nil {
		return
	}
	ch, err := sp.conn.PrepareForShutdown()
	if err != nil {
		sp.log.Warn().Err(err).Msg("not told of outside shutdowns")
		return
	}
	sp.begun = make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case begun, ok := <-ch:
				if !ok {
					if !sp.closing.Load() {
						sp.log.Warn().Msg("the system bus went away: no longer told of outside shutdowns")
					}
					return
				}
				if begun {
					sp.log.Warn().Msg("the system is shutting down: closing the till and the ledger first")
					stop(errSystemShutdown)
					close(sp.begun)
					return
				}
			}
		}
	}()
}

// release lets a shutdown proceed: the ledger is closed.
func (sp *systemPower) release() {
	if err := sp.lock.Release(); err != nil {
		sp.log.Warn().Err(err).Msg("releasing the delay lock")
	}
}

// act powers the board off or reboots it (verb "poweroff" or "reboot")
// through logind, or systemctl if logind cannot, then lets go of logind.
// The delay lock goes first: logind would otherwise wait for kioskd.
func (sp *systemPower) act(verb string) error {
	sp.release()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := logind.PowerAction(ctx, sp.conn, verb)
	sp.close()
	return err
}

func (sp *systemPower) close() {
	sp.release()
	if sp.conn != nil {
		sp.closing.Store(true)
		_ = sp.conn.Close()
		sp.conn = nil
	}
}
