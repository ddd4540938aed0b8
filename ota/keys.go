package ota

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// PEM block types of the key files: PKCS#8 for the private key and PKIX
// for the public one, what openssl and Go's x509 read and write.
const (
	pemPrivateKey = "PRIVATE KEY"
	pemPublicKey  = "PUBLIC KEY"
	// maxKeyFile bounds a key file; an ed25519 PEM is about 120 bytes.
	maxKeyFile = 16 << 10
)

// ErrNoTrustedKeys means a trust store holds no usable key, so the kiosk
// can install no update until one is put there.
var ErrNoTrustedKeys = errors.New("ota: no trusted keys")

// GenerateKey makes a signing key pair from random (crypto/rand when nil).
func GenerateKey(random io.Reader) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, nil, fmt.Errorf("ota: generate key: %w", err)
	}
	return pub, priv, nil
}

// KeyID names a public key in envelopes and logs: the hex of the first 8
// bytes of its SHA-256, short enough to read out over the phone.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// WritePrivateKey stores priv as a PKCS#8 PEM file readable only by its
// owner. It refuses to replace an existing file: overwriting a signing key
// by accident would lock the fleet out of every later update.
func WritePrivateKey(path string, priv ed25519.PrivateKey) error {
	if err := checkPrivateKey(priv); err != nil {
		return fmt.Errorf("ota: private key %s: %w", path, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("ota: private key %s: %w", path, err)
	}
	return writeNewFile(path, pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), 0o600)
}

// WritePublicKey stores pub as a PKIX PEM file, the form a kiosk's trust
// store reads. Like WritePrivateKey it never replaces a file.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("ota: public key %s: %d bytes, want %d", path, len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("ota: public key %s: %w", path, err)
	}
	return writeNewFile(path, pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), 0o644)
}

// writeNewFile creates path (never replacing it), writes b and syncs; on
// failure it removes what it created, so no half key is left to be read.
func writeNewFile(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("ota: write %s: %w", path, err)
	}
	return nil
}

// ReadPrivateKey reads a key WritePrivateKey wrote (or `openssl genpkey
// -algorithm ed25519` made).
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("ota: private key %s: %w", path, err)
	}
	priv, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("ota: private key %s: %w", path, err)
	}
	return priv, nil
}

// ReadPublicKey reads a key WritePublicKey wrote (or `openssl pkey
// -pubout` made).
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("ota: public key %s: %w", path, err)
	}
	pub, err := ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("ota: public key %s: %w", path, err)
	}
	return pub, nil
}

// readKeyFile reads a small regular file. Anything else (a directory, a
// FIFO that would block the kiosk's start) is refused before it is opened.
func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d bytes: not a key file", maxKeyFile)
	}
	return b, nil
}

// ParsePublicKey reads one ed25519 "PUBLIC KEY" PEM block.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	der, err := onePEM(b, pemPublicKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %s key, not ed25519", keyKind(k))
	}
	return pub, nil
}

// ParsePrivateKey reads one ed25519 "PRIVATE KEY" (PKCS#8) PEM block.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	der, err := onePEM(b, pemPrivateKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %s key, not ed25519", keyKind(k))
	}
	return priv, nil
}

// onePEM returns the body of the only PEM block in b, which must be of
// type want. A second block is refused: a file holding two keys would
// trust only the first, silently.
func onePEM(b []byte, want string) ([]byte, error) {
	block, rest := pem.Decode(b)
	switch {
	case block == nil:
		return nil, errors.New("no PEM block")
	case block.Type == pemPrivateKey && want == pemPublicKey:
		return nil, errors.New("holds a PRIVATE KEY; a kiosk needs only the public key (ota keygen writes it as *.pub)")
	case block.Type != want:
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, want)
	case len(block.Headers) != 0:
		return nil, errors.New("PEM headers (an encrypted key?) are not supported")
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, errors.New("data after the key")
	}
	return block.Bytes, nil
}

func keyKind(k any) string {
	s := fmt.Sprintf("%T", k)
	s = strings.TrimPrefix(s, "*")
	s, _, _ = strings.Cut(s, ".")
	return s
}

// checkPrivateKey refuses keys ed25519.Sign would panic on or sign wrongly
// with (a public half that does not match the seed).
func checkPrivateKey(priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("%d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()), priv) {
		return errors.New("public half does not match the seed")
	}
	return nil
}

// TrustStore is the set of public keys a kiosk accepts manifests from.
// Several keys may be trusted at once, so a signing key is rotated by
// adding the new key everywhere, signing with both for a while, then
// removing the old one. A TrustStore does not change once built; reload
// to pick up new files. It is safe for concurrent use.
type TrustStore struct {
	keys map[string]trustedKey // by KeyID
}

type trustedKey struct {
	pub    ed25519.PublicKey
	source string // the file it came from, for messages
}

// NewTrustStore trusts the given keys.
func NewTrustStore(keys ...ed25519.PublicKey) (*TrustStore, error) {
	s := &TrustStore{keys: map[string]trustedKey{}}
	for i, pub := range keys {
		if err := s.add(pub, fmt.Sprintf("key %d", i)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *TrustStore) add(pub ed25519.PublicKey, source string) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("ota: %s: %d bytes, want %d", source, len(pub), ed25519.PublicKeySize)
	}
	id := KeyID(pub)
	if k, ok := s.keys[id]; ok {
		if k.pub.Equal(pub) {
			return nil // the same key in two files is harmless
		}
		return fmt.Errorf("ota: %s: key id %s collides with %s", source, id, k.source)
	}
	s.keys[id] = trustedKey{pub: slices.Clone(pub), source: source}
	return nil
}

// LoadTrustStore trusts every *.pub file in dir (on a kiosk
// /etc/kioskd/ota-keys). Other files are ignored, so a key is revoked by
// deleting its file or renaming it to *.revoked; the kiosk trusts only
// what is there when it loads the store.
//
// A file that is not a usable public key does not stop the others: the
// store always comes back, with the good keys, alongside an error naming
// every bad file, and wrapping ErrNoTrustedKeys when no key was usable.
func LoadTrustStore(dir string) (*TrustStore, error) {
	s := &TrustStore{keys: map[string]trustedKey{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return s, fmt.Errorf("%w: %w", ErrNoTrustedKeys, err)
	}
	var errs []error
	for _, e := range entries { // ReadDir sorts by name, so the first of two colliding files wins
		if !strings.HasSuffix(e.Name(), ".pub") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		pub, err := ReadPublicKey(path)
		if err == nil {
			err = s.add(pub, path)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(s.keys) == 0 {
		errs = append(errs, fmt.Errorf("%w in %s (want *.pub files from ota keygen)", ErrNoTrustedKeys, dir))
	}
	return s, errors.Join(errs...)
}

// Len is the number of trusted keys.
func (s *TrustStore) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// KeyIDs lists the trusted keys' ids, sorted.
func (s *TrustStore) KeyIDs() []string {
	if s == nil {
		return nil
	}
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// lookup finds a trusted key by id; a nil store trusts nothing.
func (s *TrustStore) lookup(id string) (ed25519.PublicKey, bool) {
	if s == nil {
		return nil, false
	}
	k, ok := s.keys[id]
	return k.pub, ok
}
