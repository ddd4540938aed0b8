package ota

import (
	"context"
	"sync"
	"time"

	"github.com/microretail/kioskd/internal/wait"
)

// TokenBucket caps a byte stream at a rate, so an OTA download on a
// metered cellular link leaves room for telemetry and the sales sync.
// Tokens are bytes. The bucket refills at the rate up to a burst and
// starts empty, so the cap holds from the first byte. A taker that finds
// the bucket short goes into debt and sleeps the debt off; later takers
// inherit the debt, so readers sharing one bucket share the rate in the
// order they arrive. It is safe for concurrent use.
type TokenBucket struct {
	rate  float64 // bytes per second; <= 0 is unlimited
	burst float64
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	mu     sync.Mutex
	tokens float64 // negative while in debt
	last   time.Time
}

// NewTokenBucket returns a bucket of rate bytes per second (0 or less:
// unlimited) holding at most burst bytes (0 or less: one second's worth).
// now and sleep are the clock and the context-aware sleep, injected so
// tests run on a fake clock; nil means the wall clock.
func NewTokenBucket(rate, burst int64, now func() time.Time, sleep func(context.Context, time.Duration) error) *TokenBucket {
	if burst <= 0 {
		burst = rate
	}
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = sleepWall
	}
	return &TokenBucket{rate: float64(rate), burst: float64(burst), now: now, sleep: sleep, last: now()}
}

// Rate is the bucket's rate in bytes per second; 0 is unlimited.
func (b *TokenBucket) Rate() int64 {
	if b == nil || b.rate <= 0 {
		return 0
	}
	return int64(b.rate)
}

// Take charges n bytes, already moved or about to be, and sleeps until
// the bucket has paid for them. It returns ctx's error if ctx ends
// first; the charge stands, because the bytes crossed the link anyway.
// A nil or unlimited bucket returns at once.
func (b *TokenBucket) Take(ctx context.Context, n int) error {
	if b == nil || b.rate <= 0 || n <= 0 {
		return nil
	}
	b.mu.Lock()
	now := b.now()
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(b.tokens+elapsed.Seconds()*b.rate, b.burst)
	}
	// A clock that stepped back counts as no time passed, rather than
	// as a stall until it catches up.
	b.last = now
	b.tokens -= float64(n)
	var d time.Duration
	if b.tokens < 0 {
		d = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return b.sleep(ctx, d)
}

// sleepWall sleeps d on the wall clock, or less if ctx ends; then it
// returns ctx's error.
func sleepWall(ctx context.Context, d time.Duration) error {
	if d > 0 && wait.After(ctx, d) {
		return nil
	}
	return ctx.Err()
}
