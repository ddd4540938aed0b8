package ledger

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func benchLedger(b *testing.B) *Ledger {
	b.Helper()
	l, err := Open(b.TempDir(), Options{KioskID: "bench", Location: time.UTC})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

var benchLines = []Line{{SKU: "CHAI", Name: "Doodh patti chai", Qty: 2, Price: 8000}, {SKU: "SAMOSA", Name: "Aloo samosa", Qty: 3, Price: 5000}}

// BenchmarkAppend is one durable sale at a time: fsync-bound.
func BenchmarkAppend(b *testing.B) {
	l := benchLedger(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, err := l.Append(ctx, Draft{Kind: KindSale, Payment: PaymentCash, IdempotencyKey: fmt.Sprint("k", i), Lines: benchLines}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendParallel is 16 concurrent checkouts per CPU sharing fsyncs.
func BenchmarkAppendParallel(b *testing.B) {
	l := benchLedger(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := l.Append(ctx, Draft{Kind: KindSale, Payment: PaymentCash, IdempotencyKey: fmt.Sprint("k", i), Lines: benchLines}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncodeEntry(b *testing.B) {
	e := sampleEntry()
	buf := make([]byte, 0, 256)
	for i := 0; i < b.N; i++ {
		buf = encodeEntry(buf[:0], &e)
	}
}

func BenchmarkDecodeEntry(b *testing.B) {
	e := sampleEntry()
	v := encodeEntry(nil, &e)
	for i := 0; i < b.N; i++ {
		if _, err := decodeEntry(v); err != nil {
			b.Fatal(err)
		}
	}
}
