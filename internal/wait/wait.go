// Package wait is how the drivers and the device supervisor wait: one
// context-aware sleep, so a shutdown never waits out a backoff, and one
// reconnect backoff with jitter.
package wait

import (
	"context"
	"math/rand/v2"
	"time"
)

// After waits d on the wall clock. It returns true when d has passed and
// false when ctx ended first.
func After(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Backoff is an exponential retry delay with jitter: each delay doubles
// from Min up to Max and is drawn uniformly from the upper half of its
// step, so kiosks that lost a device or a network together do not retry
// in step. The zero value is unusable; set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the delay before the next retry.
func (b *Backoff) Next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.Min
	case b.cur < b.Max:
		b.cur = min(2*b.cur, b.Max)
	}
	half := b.cur / 2
	return half + rand.N(half+1)
}

// Reset starts the next failure from Min again: call it once the retried
// thing has worked.
func (b *Backoff) Reset() { b.cur = 0 }
