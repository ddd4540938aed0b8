// Package telemetry is the kiosk's side of the fleet: the MQTT session
// (paho, client id = kiosk id, retained birth and Last Will on
// kiosk/<id>/status), the power and health reporters, sales sync from the
// ledger's outbox acknowledged through kiosk/<id>/sales/ack, and command
// routing. The topic contract is in DESIGN.md.
//
// Nothing is built here yet: kioskd runs offline and sales wait in the
// ledger's outbox until the session lands.
package telemetry
