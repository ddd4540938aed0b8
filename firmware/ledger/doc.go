// Package ledger is the kiosk's durable record of money: every sale, refund,
// wallet top-up and subscription sign-up, on Pebble.
//
// Guarantees, each tested through Pebble's crash-simulating and
// error-injecting filesystems (see crash_test.go):
//
//   - Append returns only after the entry is synced to disk.
//   - Every entry has a per-kiosk seq that rises by one with no gaps, from 1,
//     and a globally unique ID.
//   - An idempotency key maps to exactly one entry, forever: the same key
//     returns the same entry after a restart or a crash.
//   - Each entry, its index rows and its day's totals are one atomic batch.
//   - Readers only ever see synced entries.
//   - A failed sync is never reported as success. The ledger refuses writes,
//     says why through Health, reopens the store and carries on from what is
//     on disk.
//
// The outbox is every entry above the fleet's acknowledged watermark; Ack
// moves the watermark, durably. Day totals for the Z-report are kept in the
// same batch as the entries they count. The key and value layouts, with
// their version bytes, are documented in encoding.go and totals.go.
package ledger
