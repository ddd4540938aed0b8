// Package wait is the one context-aware sleep the drivers and the device
// supervisor share: retries and backoffs wait with it, so a shutdown never
// waits out a backoff.
package wait

import (
	"context"
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
