// Package ota will hold signed manifests, resumable downloads, A/B slots,
// trial boots and rollback, as DESIGN.md describes. Nothing is built here
// yet.
package ota
