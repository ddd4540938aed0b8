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
