package ota

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/microretail/kioskd/internal/testclock"
)

var bucketEpoch = time.Date(2025, 12, 1, 10, 0, 0, 0, time.UTC)

// fakeSleep sleeps on clock: no wall time passes, the clock moves.
func fakeSleep(clock *testclock.Clock) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		clock.Sleep(d)
		return ctx.Err()
	}
}

func TestTokenBucketPacesBytes(t *testing.T) {
	tests := []struct {
		name       string
		rate, take int64
		total      int64
	}{
		{"even steps", 1000, 100, 10_000},
		{"odd steps", 8192, 1237, 1237 * 53},
		{"steps above the burst", 100, 1000, 10_000},
		{"byte by byte", 50, 1, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testclock.New(bucketEpoch)
			b := NewTokenBucket(tt.rate, 0, clock.Now, fakeSleep(clock))
			for moved := int64(0); moved < tt.total; moved += tt.take {
				if err := b.Take(context.Background(), int(tt.take)); err != nil {
					t.Fatal(err)
				}
			}
			// The bucket starts empty, so every byte is paid for.
			want := time.Duration(tt.total) * time.Second / time.Duration(tt.rate)
			if got := clock.Now().Sub(bucketEpoch); got < want-time.Microsecond || got > want+time.Microsecond {
				t.Errorf("%d bytes at %d B/s took %s, want %s", tt.total, tt.rate, got, want)
			}
		})
	}
}

func TestTokenBucketBurst(t *testing.T) {
	clock := testclock.New(bucketEpoch)
	var slept []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error { slept = append(slept, d); clock.Sleep(d); return nil }
	b := NewTokenBucket(1000, 500, clock.Now, sleep)
	// Idle for ten seconds: the bucket fills to its burst, no further.
	clock.Advance(10 * time.Second)
	if err := b.Take(context.Background(), 500); err != nil || len(slept) != 0 {
		t.Fatalf("a burst-sized take slept %v, %v", slept, err)
	}
	if err := b.Take(context.Background(), 500); err != nil {
		t.Fatal(err)
	}
	if len(slept) != 1 || slept[0] != 500*time.Millisecond {
		t.Errorf("slept %v past the burst, want [500ms]", slept)
	}
}

// Takers that arrive together queue: each waits out the debts before it.
func TestTokenBucketDebtQueues(t *testing.T) {
	clock := testclock.New(bucketEpoch)
	var mu sync.Mutex
	var slept []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		slept = append(slept, d)
		mu.Unlock()
		return nil // and the clock stands still: all arrive at once
	}
	b := NewTokenBucket(100, 0, clock.Now, sleep)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _ = b.Take(context.Background(), 100) })
	}
	wg.Wait()
	var total time.Duration
	for _, d := range slept {
		total += d
	}
	// 1s, 2s, 3s, 4s in some order.
	if len(slept) != 4 || total != 10*time.Second {
		t.Errorf("slept %v, want one to four seconds each", slept)
	}
}

func TestTokenBucketUnlimited(t *testing.T) {
	sleep := func(context.Context, time.Duration) error { t.Fatal("slept"); return nil }
	for _, b := range []*TokenBucket{nil, NewTokenBucket(0, 0, nil, sleep), NewTokenBucket(-5, 0, nil, sleep)} {
		if err := b.Take(context.Background(), 1<<30); err != nil || b.Rate() != 0 {
			t.Errorf("Take: %v, Rate %d", err, b.Rate())
		}
	}
}

func TestTokenBucketCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := NewTokenBucket(10, 0, nil, nil) // the wall clock: would sleep 100s
	start := time.Now()
	if err := b.Take(ctx, 1000); !errors.Is(err, context.Canceled) {
		t.Errorf("Take: %v, want context.Canceled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("Take slept through a cancelled ctx")
	}
}

// A clock stepped back (an NTP correction on a kiosk that booted with
// no RTC) must not stall the download until it catches up.
func TestTokenBucketClockStepsBack(t *testing.T) {
	now := bucketEpoch
	var slept []time.Duration
	b := NewTokenBucket(100, 0, func() time.Time { return now }, func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		now = now.Add(d)
		return nil
	})
	_ = b.Take(context.Background(), 100)
	now = now.Add(-time.Hour)
	_ = b.Take(context.Background(), 100)
	_ = b.Take(context.Background(), 100)
	// The step may cost the refill of the sleep it cut short (one second
	// here), never the hour.
	var total time.Duration
	for _, d := range slept {
		total += d
	}
	if len(slept) != 3 || total > 4*time.Second {
		t.Errorf("slept %v, want about a second a take", slept)
	}
}
