package power

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	var g Gate
	if err := g.Wait(context.Background()); err != nil {
		t.Fatalf("an open gate: %v", err)
	}
	g.Hold("low battery")
	if held, why := g.Held(); !held || why != "low battery" {
		t.Fatalf("held %t %q", held, why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a held gate let work through: %v", err)
	}
	done := make(chan error)
	go func() { done <- g.Wait(context.Background()) }()
	g.Hold("still low") // held twice: one release opens it
	g.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the work waiting was not let go")
	}
	if held, _ := g.Held(); held {
		t.Fatal("held after Release")
	}
	g.Release() // opening an open gate is fine
}
