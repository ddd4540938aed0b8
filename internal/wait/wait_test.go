package wait

import (
	"context"
	"testing"
	"time"
)

func TestAfter(t *testing.T) {
	if !After(context.Background(), time.Millisecond) {
		t.Fatal("After with a live context returned false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if After(ctx, time.Hour) {
		t.Fatal("After with an ended context returned true")
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 800 * time.Millisecond}
	for i, top := range []time.Duration{100, 200, 400, 800, 800} {
		top *= time.Millisecond
		if d := b.Next(); d < top/2 || d > top {
			t.Fatalf("delay %d = %v, want in [%v, %v]", i, d, top/2, top)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}
