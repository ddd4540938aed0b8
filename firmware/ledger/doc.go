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
// Two failures need the process restarted, and kioskd's systemd watchdog
// and Restart=always do it; a restart recovers like any crash. A Pebble
// that panicked holding its commit lock never closes: the ledger then
// refuses writes with ErrNeedsRestart and kioskd stops petting the
// watchdog. And if a WAL sync fails just as Pebble rotates to a new WAL (a
// full memtable, every 4 MB of entries), Pebble's unwinding hits a Go
// runtime fatal error that no recover catches, and the process exits.
//
// The outbox is every entry above the fleet's acknowledged watermark; Ack
// moves the watermark, durably. Day totals for the Z-report are kept in the
// same batch as the entries they count. The key and value layouts, with
// their version bytes, are documented in encoding.go and totals.go.
package ledger
