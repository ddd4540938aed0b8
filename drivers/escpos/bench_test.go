package escpos

import "testing"

// BenchmarkEmulatorReceipt is the sim board's printer decoding a whole
// receipt: what every sim checkout costs.
func BenchmarkEmulatorReceipt(b *testing.B) {
	job := sampleReceipt().Bytes()
	e := NewEmulator(Paper58)
	b.SetBytes(int64(len(job)))
	for b.Loop() {
		if _, err := e.Write(job); err != nil {
			b.Fatal(err)
		}
		e.Clear()
	}
}

// BenchmarkStatus is one status round trip (DLE EOT 1, 2 and 4) against
// the emulator: the driver's share of each print queue step.
func BenchmarkStatus(b *testing.B) {
	e := NewEmulator(Paper58)
	d, err := New(e, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := d.Status(); err != nil {
			b.Fatal(err)
		}
	}
}
