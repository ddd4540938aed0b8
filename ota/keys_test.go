package ota

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// testKey is a fixed key pair, so signatures and key ids are repeatable.
func testKey(n byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func TestKeyID(t *testing.T) {
	// RFC 8032 §7.1 test 1 public key; the id is the first 8 bytes of
	// `xxd -r -p | sha256sum` of it.
	pub, _ := hex.DecodeString("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	if got := KeyID(pub); got != "21fe31dfa154a261" {
		t.Fatalf("KeyID = %s", got)
	}
}

func TestGenerateKeyUsesRandom(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	pub, priv, err := GenerateKey(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	if want := ed25519.NewKeyFromSeed(seed); !priv.Equal(want) || !pub.Equal(want.Public()) {
		t.Fatal("GenerateKey did not derive the key from the given random source")
	}
	if _, _, err := GenerateKey(bytes.NewReader(seed[:5])); err == nil {
		t.Fatal("GenerateKey succeeded on a short random source")
	}
}

func TestKeyFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pub, priv, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath := filepath.Join(dir, "ota.key"), filepath.Join(dir, "ota.pub")
	if err := WritePrivateKey(privPath, priv); err != nil {
		t.Fatal(err)
	}
	if err := WritePublicKey(pubPath, pub); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(privPath)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("private key mode %v, want no group or other access", fi.Mode().Perm())
		}
	}
	gotPriv, err := ReadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	gotPub, err := ReadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !gotPriv.Equal(priv) || !gotPub.Equal(pub) {
		t.Fatal("keys changed through their files")
	}
	// The files are the standard forms other tools read.
	b, _ := os.ReadFile(pubPath)
	if block, _ := pem.Decode(b); block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("public key file:\n%s", b)
	}
	b, _ = os.ReadFile(privPath)
	if block, _ := pem.Decode(b); block == nil || block.Type != "PRIVATE KEY" {
		t.Fatal("private key file is not a PRIVATE KEY PEM")
	}

	// A key signed with after the round trip verifies with the original.
	env, err := Sign(validManifest(t, nil), gotPriv)
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewTrustStore(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Open(env, store); err != nil {
		t.Fatal(err)
	}

	// Never overwrite a key, and leave the old one intact.
	_, other := testKey(9)
	if err := WritePrivateKey(privPath, other); err == nil {
		t.Fatal("WritePrivateKey replaced an existing key")
	}
	if err := WritePublicKey(pubPath, other.Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("WritePublicKey replaced an existing key")
	}
	if k, err := ReadPrivateKey(privPath); err != nil || !k.Equal(priv) {
		t.Fatal("the refused write changed the key file")
	}
}

func TestWriteKeyRefusesBadKeys(t *testing.T) {
	dir := t.TempDir()
	_, priv := testKey(1)
	mismatched := slices.Clone(priv)
	mismatched[40] ^= 1 // public half no longer matches the seed
	for name, k := range map[string]ed25519.PrivateKey{"short": priv[:10], "mismatched": mismatched, "nil": nil} {
		if err := WritePrivateKey(filepath.Join(dir, name), k); err == nil {
			t.Errorf("%s: written", name)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s: a file was left behind", name)
		}
	}
	if err := WritePublicKey(filepath.Join(dir, "short.pub"), make(ed25519.PublicKey, 31)); err == nil {
		t.Error("31-byte public key written")
	}
}

func TestParseKeyRefuses(t *testing.T) {
	pub, priv := testKey(1)
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	privDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPrivDER, _ := x509.MarshalPKCS8PrivateKey(ec)

	// The good forms parse, so the refusals below are about the change.
	if _, err := ParsePublicKey(pubPEM); err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivateKey(privPEM); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		private bool
		want    string
	}{
		{"empty", nil, false, "no PEM block"},
		{"garbage", []byte("ssh-ed25519 AAAA… user@host"), false, "no PEM block"},
		{"private as public", privPEM, false, "PRIVATE KEY"},
		{"public as private", pubPEM, true, `"PUBLIC KEY"`},
		{"two keys", append(slices.Clone(pubPEM), pubPEM...), false, "data after"},
		{"trailing text", append(slices.Clone(pubPEM), "junk"...), false, "data after"},
		{"ecdsa public", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}), false, "ecdsa key, not ed25519"},
		{"ecdsa private", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecPrivDER}), true, "ecdsa key, not ed25519"},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER[:20]}), false, ""},
		{"headers", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: privDER}), true, "headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.private {
				_, err = ParsePrivateKey(tc.in)
			} else {
				_, err = ParsePublicKey(tc.in)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadTrustStore(t *testing.T) {
	dir := t.TempDir()
	pubA, _ := testKey(1)
	pubB, privB := testKey(2)
	pubC, _ := testKey(3)
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, pub := range map[string]ed25519.PublicKey{"a.pub": pubA, "b.pub": pubB, "a-copy.pub": pubA, "c.pub.revoked": pubC, "c.txt": pubC} {
		if err := WritePublicKey(filepath.Join(dir, name), pub); err != nil {
			t.Fatal(err)
		}
	}
	write("garbage.pub", []byte("not a key"))
	privDER, _ := x509.MarshalPKCS8PrivateKey(privB)
	write("leaked.pub", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	if err := os.Mkdir(filepath.Join(dir, "dir.pub"), 0o755); err != nil {
		t.Fatal(err)
	}

	store, err := LoadTrustStore(dir)
	if store == nil {
		t.Fatal("no store")
	}
	if want := []string{KeyID(pubA), KeyID(pubB)}; !sameSet(store.KeyIDs(), want) {
		t.Fatalf("trusted %v, want %v", store.KeyIDs(), want)
	}
	if err == nil {
		t.Fatal("bad key files were not reported")
	}
	for _, bad := range []string{"garbage.pub", "leaked.pub", "dir.pub"} {
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("the error does not name %s: %v", bad, err)
		}
	}
	for _, fine := range []string{"a.pub", "a-copy.pub", "b.pub", "c.pub.revoked", "c.txt"} {
		if strings.Contains(err.Error(), filepath.Join(dir, fine)+":") {
			t.Errorf("the error names %s, which is fine: %v", fine, err)
		}
	}
	if errors.Is(err, ErrNoTrustedKeys) {
		t.Errorf("ErrNoTrustedKeys with two keys loaded: %v", err)
	}

	// Revocation is removal: without b.pub, B's signature is unknown.
	env, err := Sign(validManifest(t, nil), privB)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, id, err := Open(env, store); err != nil || id != KeyID(pubB) {
		t.Fatalf("before removal: id %s, %v", id, err)
	}
	if err := os.Remove(filepath.Join(dir, "b.pub")); err != nil {
		t.Fatal(err)
	}
	store, _ = LoadTrustStore(dir)
	if _, _, _, err := Open(env, store); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("after removal: %v, want ErrUnknownKey", err)
	}
}

func TestLoadTrustStoreEmpty(t *testing.T) {
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "README"), []byte("keys go here"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{"empty": empty, "missing": filepath.Join(empty, "nope")} {
		t.Run(name, func(t *testing.T) {
			store, err := LoadTrustStore(dir)
			if !errors.Is(err, ErrNoTrustedKeys) {
				t.Fatalf("error %v, want ErrNoTrustedKeys", err)
			}
			if store == nil || store.Len() != 0 {
				t.Fatalf("store %v", store)
			}
			// An empty store refuses everything, without panicking.
			env, _ := Sign(validManifest(t, nil), mustKey(1))
			if _, _, _, err := Open(env, store); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("Open on an empty store: %v", err)
			}
		})
	}
}

func TestNewTrustStore(t *testing.T) {
	pub, _ := testKey(1)
	if _, err := NewTrustStore(pub, make(ed25519.PublicKey, 16)); err == nil {
		t.Fatal("a 16-byte key was trusted")
	}
	s, err := NewTrustStore(pub, pub)
	if err != nil || s.Len() != 1 {
		t.Fatalf("the same key twice: %d keys, %v", s.Len(), err)
	}
	var nilStore *TrustStore
	if nilStore.Len() != 0 || nilStore.KeyIDs() != nil {
		t.Fatal("a nil store is not empty")
	}
}

func mustKey(n byte) ed25519.PrivateKey {
	_, priv := testKey(n)
	return priv
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
