package scanner

import "testing"

// BenchmarkDecodeEvent decodes one input_event record, as the HID driver
// does for every key press and release (about 8 records per character).
func BenchmarkDecodeEvent(b *testing.B) {
	rec := appendEvent(nil, inputEvent{typ: 1, code: 30, value: 1}, eventSize)
	for b.Loop() {
		if _, err := decodeEvent(rec, eventSize); err != nil {
			b.Fatal(err)
		}
	}
}
