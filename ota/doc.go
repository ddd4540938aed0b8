// Package ota updates a kiosk without ever bricking it: signed manifests,
// resumable downloads, A/B slots, trial boots and rollback, as DESIGN.md
// describes.
//
// Manifests and signatures. A release is an artifact plus a Manifest
// (JSON: version, boards, sha256, size, url, …). kioskctl signs the exact
// manifest bytes with ed25519 and ships them in an envelope:
//
//	{"manifest":"<base64 manifest bytes>",
//	 "signatures":[{"key_id":"<16 hex>","sig":"<base64>"}]}
//
// Each signature covers "kioskd-ota-manifest-v1\n" followed by the
// manifest bytes, so an OTA signature is never valid for anything else. A
// key_id is KeyID: the hex of the first 8 bytes of SHA-256 of the public
// key. Open verifies an envelope against a TrustStore and Check decides
// whether the kiosk may install it (board, anti-downgrade unless forced,
// min_version).
//
// Keys. Private keys are PKCS#8 "PRIVATE KEY" PEM files (mode 0600, kept
// by the operator); public keys are PKIX "PUBLIC KEY" PEM files, the same
// format openssl writes. A kiosk trusts every *.pub in its key directory
// (/etc/kioskd/ota-keys): to rotate, add the new key to the fleet, sign
// with old and new keys, then delete the old key's file. Deleting (or
// renaming to *.revoked) is revocation; there is no separate list.
//
// Versions. Builds are named by `git describe --always --dirty`: releases
// order by semver, a build N commits past a tag sits between that tag and
// the next release, and an unversioned dev build ("dev" or a bare commit
// hash) is older than every release, so any signed release installs on it.
package ota
