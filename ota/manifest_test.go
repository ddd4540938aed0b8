package ota

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// manifestMap is a valid manifest as a map, for tests to edit.
func manifestMap() map[string]any {
	return map[string]any{
		"version":     "1.4.0",
		"boards":      []any{"rpi4b", "cm4"},
		"kind":        "binary",
		"sha256":      strings.Repeat("ab", 32),
		"size":        31457280,
		"url":         "https://updates.example.com/kioskd/1.4.0/kioskd-arm64",
		"min_version": "1.0.0",
		"created":     "2026-03-01T10:00:00Z",
	}
}

// validManifest is manifestMap after edit, encoded.
func validManifest(t testing.TB, edit func(map[string]any)) []byte {
	t.Helper()
	m := manifestMap()
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustVersion(t testing.TB, s string) Version {
	t.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseManifest(t *testing.T) {
	delta := map[string]any{
		"base_version": "v1.3.2", "base_sha256": strings.Repeat("CD", 32),
		"sha256": strings.Repeat("ef", 32), "size": 81920, "url": "http://mirror.local/kioskd-1.3.2-1.4.0.zst",
	}
	m, err := ParseManifest(validManifest(t, func(m map[string]any) {
		m["force"] = true
		m["delta"] = delta
	}))
	if err != nil {
		t.Fatal(err)
	}
	minV := mustVersion(t, "1.0.0")
	want := Manifest{
		Version:    mustVersion(t, "1.4.0"),
		Boards:     []string{"rpi4b", "cm4"},
		Kind:       KindBinary,
		SHA256:     strings.Repeat("ab", 32),
		Size:       31457280,
		URL:        "https://updates.example.com/kioskd/1.4.0/kioskd-arm64",
		MinVersion: &minV,
		Force:      true,
		Created:    time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		Delta: &Delta{
			BaseVersion: mustVersion(t, "1.3.2"), BaseSHA256: strings.Repeat("cd", 32),
			SHA256: strings.Repeat("ef", 32), Size: 81920, URL: "http://mirror.local/kioskd-1.3.2-1.4.0.zst",
		},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got  %+v\nwant %+v", m, want)
	}
	checkRoundTrip(t, m)

	// The minimal manifest: DESIGN.md's "board", no kind, nothing optional.
	m, err = ParseManifest([]byte(`{"version":"2.0.0","board":"rpi5","sha256":"` + strings.Repeat("0", 64) +
		`","size":1,"url":"http://10.0.0.1:8000/k"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Boards, []string{"rpi5"}) || m.Kind != KindBinary || m.MinVersion != nil || m.Delta != nil || !m.Created.IsZero() || m.Force {
		t.Fatalf("minimal manifest read as %+v", m)
	}
	checkRoundTrip(t, m)

	// An image may be far larger than a binary.
	if _, err := ParseManifest(validManifest(t, func(m map[string]any) { m["kind"] = "image"; m["size"] = int64(8 << 30) })); err != nil {
		t.Fatal(err)
	}
	// A manifest is also a json.Unmarshaler, as strict as ParseManifest.
	var viaJSON Manifest
	if err := json.Unmarshal(validManifest(t, nil), &viaJSON); err != nil || viaJSON.Version.String() != "1.4.0" {
		t.Fatalf("json.Unmarshal: %+v, %v", viaJSON, err)
	}
	if err := json.Unmarshal(validManifest(t, func(m map[string]any) { m["Size"] = 1 }), &viaJSON); !errors.Is(err, ErrMalformed) {
		t.Fatalf("json.Unmarshal accepted a misspelt field: %v", err)
	}
}

// checkRoundTrip: what json.Marshal writes of a Manifest parses back the same.
func checkRoundTrip(t *testing.T, m Manifest) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseManifest(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !again.Created.Equal(m.Created) {
		t.Fatalf("created %v became %v", m.Created, again.Created)
	}
	again.Created, m.Created = time.Time{}, time.Time{}
	if !reflect.DeepEqual(again, m) {
		t.Fatalf("round trip through %s:\n got  %+v\n want %+v", b, again, m)
	}
}

func TestParseManifestRefuses(t *testing.T) {
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	del := func(k string) func(map[string]any) { return func(m map[string]any) { delete(m, k) } }
	setDelta := func(k string, v any) func(map[string]any) {
		return func(m map[string]any) {
			d := map[string]any{"base_version": "1.3.2", "base_sha256": strings.Repeat("cd", 32), "sha256": strings.Repeat("ef", 32), "size": 81920, "url": "https://x/d"}
			if v == nil {
				delete(d, k)
			} else {
				d[k] = v
			}
			m["delta"] = d
		}
	}
	valid := string(validManifest(t, nil))
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		raw  string // used instead of edit when set
		want string
	}{
		{name: "no version", edit: del("version"), want: "version missing"},
		{name: "short version", edit: set("version", "1.4"), want: "MAJOR.MINOR.PATCH"},
		{name: "version number", edit: set("version", 1.4), want: `"version"`},
		{name: "dev version", edit: set("version", "dev"), want: "dev or dirty"},
		{name: "hash version", edit: set("version", "6747d14"), want: "dev or dirty"},
		{name: "dirty version", edit: set("version", "1.4.0-2-gabcdef0-dirty"), want: "dev or dirty"},
		{name: "no boards", edit: del("boards"), want: "boards missing"},
		{name: "empty boards", edit: set("boards", []any{}), want: "boards missing"},
		{name: "null boards", edit: set("boards", nil), want: "boards missing"},
		{name: "board and boards", edit: set("board", "rpi4b"), want: "both"},
		{name: "wildcard board", edit: set("boards", []any{"*"}), want: `board "*"`},
		{name: "upper-case board", edit: set("boards", []any{"RPI4B"}), want: "lowercase"},
		{name: "empty board", edit: set("boards", []any{""}), want: "board"},
		{name: "board twice", edit: set("boards", []any{"cm4", "cm4"}), want: "twice"},
		{name: "too many boards", edit: set("boards", make([]any, 33)), want: "33 boards"},
		{name: "unknown kind", edit: set("kind", "firmware"), want: "kind"},
		{name: "no sha256", edit: del("sha256"), want: "sha256: 0 characters"},
		{name: "short sha256", edit: set("sha256", strings.Repeat("a", 63)), want: "sha256: 63"},
		{name: "non-hex sha256", edit: set("sha256", strings.Repeat("g", 64)), want: "not hex"},
		{name: "no size", edit: del("size"), want: "must be positive"},
		{name: "zero size", edit: set("size", 0), want: "must be positive"},
		{name: "negative size", edit: set("size", -5), want: "must be positive"},
		{name: "binary too large", edit: set("size", int64(2<<30)), want: "more than"},
		{name: "image too large", edit: func(m map[string]any) { m["kind"] = "image"; m["size"] = int64(1 << 40) }, want: "more than"},
		{name: "fractional size", edit: set("size", 1.5), want: `"size"`},
		{name: "string size", edit: set("size", "100"), want: `"size"`},
		{name: "huge size", raw: strings.Replace(valid, "31457280", "99999999999999999999999", 1), want: `"size"`},
		{name: "no url", edit: del("url"), want: "url missing"},
		{name: "ftp url", edit: set("url", "ftp://x/k"), want: "http or https"},
		{name: "file url", edit: set("url", "file:///tmp/k"), want: "http or https"},
		{name: "relative url", edit: set("url", "/kioskd"), want: "http or https"},
		{name: "no host", edit: set("url", "https:///k"), want: "no host"},
		{name: "credentials", edit: set("url", "https://user:pw@x/k"), want: "credentials"},
		{name: "long url", edit: set("url", "https://x/"+strings.Repeat("a", 2048)), want: "longer"},
		{name: "space in url", edit: set("url", "https://x/a b"), want: "spaces"},
		{name: "bad url", edit: set("url", "https://x/%zz"), want: "url"},
		{name: "min_version newer", edit: set("min_version", "1.5.0"), want: "newer than the release"},
		{name: "min_version dev", edit: set("min_version", "dev"), want: "dev or dirty"},
		{name: "min_version bad", edit: set("min_version", "one"), want: "min_version"},
		{name: "created not RFC 3339", edit: set("created", "yesterday"), want: "bad JSON"},
		{name: "force not bool", edit: set("force", "yes"), want: `"force"`},
		{name: "delta not object", edit: set("delta", "x"), want: "delta"},
		{name: "delta no url", edit: setDelta("url", nil), want: "delta.url missing"},
		{name: "delta no base", edit: setDelta("base_version", nil), want: "delta.base_version missing"},
		{name: "delta bad base sha", edit: setDelta("base_sha256", "abc"), want: "delta.base_sha256"},
		{name: "delta bad sha", edit: setDelta("sha256", strings.Repeat("z", 64)), want: "delta.sha256"},
		{name: "delta zero size", edit: setDelta("size", 0), want: "delta.size"},
		{name: "delta dev base", edit: setDelta("base_version", "dev"), want: "dev or dirty"},
		{name: "delta unknown field", edit: setDelta("patch", "bsdiff"), want: `delta: unknown field "patch"`},
		{name: "unknown field", edit: set("signature", "x"), want: `unknown field "signature"`},
		{name: "case-folded field", edit: func(m map[string]any) { m["Version"] = m["version"]; delete(m, "version") }, want: `unknown field "Version"`},
		{name: "case-folded twin", edit: set("VERSION", "9.9.9"), want: `unknown field "VERSION"`},
		{name: "repeated field", raw: strings.Replace(valid, `"version":"1.4.0"`, `"version":"1.4.0","version":"9.0.0"`, 1), want: `"version" repeated`},
		{name: "repeated delta field", raw: strings.Replace(valid, `"boards"`, `"delta":{"url":"https://a/b","url":"https://c/d"},"boards"`, 1), want: "repeated"},
		{name: "trailing data", raw: valid + `{}`, want: "after"},
		{name: "trailing garbage", raw: valid + "x", want: "after"},
		{name: "truncated", raw: valid[:len(valid)-1], want: "truncated"},
		{name: "array", raw: `[` + valid + `]`, want: "not a JSON object"},
		{name: "null", raw: `null`, want: "null"},
		{name: "empty", raw: ``, want: "truncated"},
		{name: "not JSON", raw: `version=1.4.0`, want: "bad JSON"},
		{name: "invalid UTF-8", raw: strings.Replace(valid, "kioskd-arm64", "kioskd-\xff", 1), want: "UTF-8"},
		{name: "too large", raw: valid[:len(valid)-1] + `,"pad":"` + strings.Repeat(" ", 64<<10) + `"}`, want: "more than"},
		{name: "too deep", raw: strings.Replace(valid, `"boards"`, `"delta":`+strings.Repeat("[", 20)+strings.Repeat("]", 20)+`,"boards"`, 1), want: "deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.raw)
			if tc.raw == "" && tc.edit != nil {
				b = validManifest(t, tc.edit)
			}
			m, err := ParseManifest(b)
			if err == nil {
				t.Fatalf("accepted %s as %+v", b, m)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// envelopeOf builds an envelope by hand, so tests can make ones Sign won't.
func envelopeOf(t testing.TB, manifest []byte, sigs ...signatureWire) []byte {
	t.Helper()
	b, err := json.Marshal(envelopeWire{Manifest: base64.StdEncoding.EncodeToString(manifest), Signatures: sigs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sigOver signs msg exactly as given (no domain prefix added).
func sigOver(priv ed25519.PrivateKey, msg []byte) signatureWire {
	return signatureWire{
		KeyID: KeyID(priv.Public().(ed25519.PublicKey)),
		Sig:   base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg)),
	}
}

func TestSignOpen(t *testing.T) {
	pub, priv := testKey(1)
	store, _ := NewTrustStore(pub)
	manifest := validManifest(t, nil)
	env, err := Sign(manifest, priv)
	if err != nil {
		t.Fatal(err)
	}
	m, raw, id, err := Open(env, store)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, manifest) {
		t.Fatal("Open did not return the exact signed bytes")
	}
	if id != KeyID(pub) {
		t.Fatalf("key id %s, want %s", id, KeyID(pub))
	}
	if m.Version.String() != "1.4.0" || m.Size != 31457280 {
		t.Fatalf("manifest %+v", m)
	}
}

// TestEnvelopeGolden pins the wire format: kiosks in the field must keep
// opening what kioskctl signs, and the other way round. ed25519 signatures
// are deterministic, so the bytes are fixed. The signature was checked
// against OpenSSL: the seed 32×0x01 as a PKCS#8 key, then
// `openssl pkeyutl -sign -rawin` over "kioskd-ota-manifest-v1\n" + manifest.
func TestEnvelopeGolden(t *testing.T) {
	const manifest = `{"version":"1.0.0","boards":["rpi4b"],"sha256":"` +
		`e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":1,"url":"https://u.example/k"}`
	const golden = `{"manifest":"eyJ2ZXJzaW9uIjoiMS4wLjAiLCJib2FyZHMiOlsicnBpNGIiXSwic2hhMjU2IjoiZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NSIsInNpemUiOjEsInVybCI6Imh0dHBzOi8vdS5leGFtcGxlL2sifQ==",` +
		`"signatures":[{"key_id":"34750f98bd59fcfc","sig":"eFnU4/gcCzRCuOIQHPb/UdErWjwwljB5MhdpdS+bpRSEshfYIzNjpfuC9XsMMzLtoTDG4NaQ5i1fYAVyUUuuDw=="}]}`
	pub, priv := testKey(1)
	env, err := Sign([]byte(manifest), priv)
	if err != nil {
		t.Fatal(err)
	}
	if string(env) != golden {
		t.Fatalf("envelope changed:\n got  %s\n want %s", env, golden)
	}
	store, _ := NewTrustStore(pub)
	if _, raw, _, err := Open([]byte(golden), store); err != nil || string(raw) != manifest {
		t.Fatalf("the golden envelope does not open: %v", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	pubA, privA := testKey(1)
	_, privB := testKey(2) // not trusted
	store, _ := NewTrustStore(pubA)
	manifest := validManifest(t, nil)
	msg := signedMessage(manifest)
	good := sigOver(privA, msg)
	tampered := bytes.Replace(manifest, []byte("1.4.0"), []byte("1.4.1"), 1)
	forged := sigOver(privB, msg)
	forged.KeyID = good.KeyID // B's signature claiming to be A's
	flipped := sigOver(privA, msg)
	sig, _ := base64.StdEncoding.DecodeString(flipped.Sig)
	sig[10] ^= 1
	flipped.Sig = base64.StdEncoding.EncodeToString(sig)
	invalidManifest := validManifest(t, func(m map[string]any) { m["url"] = "ftp://x/y" })

	for _, tc := range []struct {
		name string
		env  []byte
		want error
		msg  string
	}{
		{"no signatures", envelopeOf(t, manifest), ErrUnsigned, "no signatures"},
		{"null signatures", []byte(`{"manifest":"` + base64.StdEncoding.EncodeToString(manifest) + `","signatures":null}`), ErrUnsigned, ""},
		{"bare manifest", manifest, ErrUnsigned, "bare manifest"},
		{"unknown key", envelopeOf(t, manifest, sigOver(privB, msg)), ErrUnknownKey, KeyID(privB.Public().(ed25519.PublicKey))},
		{"forged signature", envelopeOf(t, manifest, forged), ErrBadSignature, good.KeyID},
		{"flipped signature bit", envelopeOf(t, manifest, flipped), ErrBadSignature, ""},
		{"tampered manifest", envelopeOf(t, tampered, good), ErrBadSignature, ""},
		{"no domain prefix", envelopeOf(t, manifest, sigOver(privA, manifest)), ErrBadSignature, ""},
		{"trusted key twice", envelopeOf(t, manifest, good, sigOver(privB, msg), flipped), ErrMalformed, "twice"},
		{"forged beside unknown", envelopeOf(t, manifest, sigOver(privB, msg), forged), ErrBadSignature, ""},
		{"signed but invalid manifest", envelopeOf(t, invalidManifest, sigOver(privA, signedMessage(invalidManifest))), ErrMalformed, "http or https"},
		{"not JSON", []byte("hello"), ErrMalformed, ""},
		{"empty", nil, ErrMalformed, ""},
		{"manifest not base64", []byte(`{"manifest":"!!!","signatures":[` + mustJSON(t, good) + `]}`), ErrMalformed, "base64"},
		{"manifest missing", []byte(`{"signatures":[` + mustJSON(t, good) + `]}`), ErrMalformed, "manifest missing"},
		{"key_id not hex", envelopeOf(t, manifest, signatureWire{KeyID: "zzzzzzzzzzzzzzzz", Sig: good.Sig}), ErrMalformed, "key_id"},
		{"key_id short", envelopeOf(t, manifest, signatureWire{KeyID: good.KeyID[:8], Sig: good.Sig}), ErrMalformed, "key_id"},
		{"key_id upper-case", envelopeOf(t, manifest, signatureWire{KeyID: strings.ToUpper(good.KeyID), Sig: good.Sig}), ErrMalformed, "key_id"},
		{"sig short", envelopeOf(t, manifest, signatureWire{KeyID: good.KeyID, Sig: good.Sig[:40]}), ErrMalformed, "sig"},
		{"sig not base64", envelopeOf(t, manifest, signatureWire{KeyID: good.KeyID, Sig: "%%%"}), ErrMalformed, "sig"},
		{"same key twice", envelopeOf(t, manifest, good, good), ErrMalformed, "twice"},
		{"too many signatures", envelopeOf(t, manifest, manySigs(t, msg, 9)...), ErrMalformed, "9 signatures"},
		{"unknown envelope field", []byte(`{"manifest":"e30=","signatures":[],"comment":"x"}`), ErrMalformed, "comment"},
		{"unknown signature field", []byte(`{"manifest":"e30=","signatures":[{"key_id":"` + good.KeyID + `","sig":"` + good.Sig + `","alg":"rsa"}]}`), ErrMalformed, "alg"},
		{"case-folded field", []byte(`{"Manifest":"e30=","signatures":[]}`), ErrMalformed, "Manifest"},
		{"repeated manifest", []byte(`{"manifest":"e30=","manifest":"e30=","signatures":[]}`), ErrMalformed, "repeated"},
		{"trailing data", append(envelopeOf(t, manifest, good), "{}"...), ErrMalformed, "after"},
		{"too large", bytes.Repeat([]byte(" "), MaxEnvelopeSize+1), ErrMalformed, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _, err := Open(tc.env, store)
			if err == nil {
				t.Fatalf("opened as %+v", m)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not say %q", err, tc.msg)
			}
		})
	}
	// Every signature by a trusted key must hold, even beside a good one:
	// a bad one means the envelope was altered.
	pubC, privC := testKey(3)
	both, _ := NewTrustStore(pubA, pubC)
	badC := sigOver(privA, msg)
	badC.KeyID = KeyID(pubC)
	if _, _, _, err := Open(envelopeOf(t, manifest, good, badC), both); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a good and a bad trusted signature: %v, want ErrBadSignature", err)
	}
	if _, _, _, err := Open(envelopeOf(t, manifest, good, sigOver(privC, msg)), both); err != nil {
		t.Fatalf("two good trusted signatures: %v", err)
	}
	// The sentinels are distinct, so callers can tell them apart.
	for _, tc := range []struct{ err, not error }{{ErrBadSignature, ErrUnknownKey}, {ErrUnknownKey, ErrUnsigned}, {ErrMalformed, ErrBadSignature}} {
		if errors.Is(tc.err, tc.not) {
			t.Errorf("%v is %v", tc.err, tc.not)
		}
	}
}

func manySigs(t *testing.T, msg []byte, n int) []signatureWire {
	var sigs []signatureWire
	for i := range n {
		sigs = append(sigs, sigOver(mustKey(byte(10+i)), msg))
	}
	return sigs
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOpenEveryByteChange: no single changed byte of an envelope, or of
// the manifest inside it, opens.
func TestOpenEveryByteChange(t *testing.T) {
	pub, priv := testKey(1)
	store, _ := NewTrustStore(pub)
	manifest := validManifest(t, nil)
	env, err := Sign(manifest, priv)
	if err != nil {
		t.Fatal(err)
	}
	var ew envelopeWire
	if err := json.Unmarshal(env, &ew); err != nil {
		t.Fatal(err)
	}
	for i := range manifest {
		b := bytes.Clone(manifest)
		b[i] ^= 0x01
		if _, _, _, err := Open(envelopeOf(t, b, ew.Signatures...), store); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("manifest byte %d changed: %v, want ErrBadSignature", i, err)
		}
	}
	for i := range env {
		for _, x := range []byte{0x01, 0x20} {
			b := bytes.Clone(env)
			b[i] ^= x
			if m, _, _, err := Open(b, store); err == nil {
				t.Fatalf("envelope byte %d ^ %#x still opens: %s as %+v", i, x, b, m)
			}
		}
	}
}

// TestRotation: during a rollover the envelope carries the old and the new
// key's signatures, and kiosks trusting either, or both, accept it.
func TestRotation(t *testing.T) {
	oldPub, oldPriv := testKey(1)
	newPub, newPriv := testKey(2)
	_, strangerPriv := testKey(3)
	manifest := validManifest(t, nil)
	env, err := Sign(manifest, oldPriv, newPriv)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		trust  []ed25519.PublicKey
		wantID string
	}{
		{"old kiosk", []ed25519.PublicKey{oldPub}, KeyID(oldPub)},
		{"rotated kiosk", []ed25519.PublicKey{newPub}, KeyID(newPub)},
		{"both", []ed25519.PublicKey{newPub, oldPub}, KeyID(oldPub)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, err := NewTrustStore(tc.trust...)
			if err != nil {
				t.Fatal(err)
			}
			_, raw, id, err := Open(env, store)
			if err != nil {
				t.Fatal(err)
			}
			if id != tc.wantID || !bytes.Equal(raw, manifest) {
				t.Fatalf("key %s, want %s", id, tc.wantID)
			}
		})
	}
	// After the rollover, the old key's file is deleted from the kiosks:
	// an envelope signed only with the old key is refused.
	newOnly, _ := NewTrustStore(newPub)
	oldSigned, _ := Sign(manifest, oldPriv)
	if _, _, _, err := Open(oldSigned, newOnly); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old-key envelope on a rotated kiosk: %v", err)
	}
	// A stranger's signature beside a trusted one is ignored.
	mixed, _ := Sign(manifest, strangerPriv, newPriv)
	if _, _, id, err := Open(mixed, newOnly); err != nil || id != KeyID(newPub) {
		t.Fatalf("stranger plus new key: %s %v", id, err)
	}
}

func TestSignRefuses(t *testing.T) {
	_, priv := testKey(1)
	manifest := validManifest(t, nil)
	bad := priv[:31]
	mismatched := bytes.Clone(priv)
	mismatched[63] ^= 1
	for _, tc := range []struct {
		name     string
		manifest []byte
		keys     []ed25519.PrivateKey
		want     string
	}{
		{"no key", manifest, nil, "no signing key"},
		{"short key", manifest, []ed25519.PrivateKey{bad}, "31 bytes"},
		{"mismatched key", manifest, []ed25519.PrivateKey{mismatched}, "does not match"},
		{"same key twice", manifest, []ed25519.PrivateKey{priv, priv}, "twice"},
		{"invalid manifest", validManifest(t, func(m map[string]any) { delete(m, "sha256") }), []ed25519.PrivateKey{priv}, "sha256"},
		{"too many keys", manifest, []ed25519.PrivateKey{priv, priv, priv, priv, priv, priv, priv, priv, priv}, "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := Sign(tc.manifest, tc.keys...)
			if err == nil {
				t.Fatalf("signed: %s", env)
			}
			if !strings.HasPrefix(err.Error(), "ota: sign: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	release := func(version, minVersion string, force bool) Manifest {
		m := Manifest{Version: mustVersion(t, version), Boards: []string{"rpi4b", "cm4"}, Force: force}
		if minVersion != "" {
			mv := mustVersion(t, minVersion)
			m.MinVersion = &mv
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		m       Manifest
		board   string
		running string
		want    error
		msg     string
	}{
		{"upgrade", release("1.4.0", "", false), "rpi4b", "1.3.9", nil, ""},
		{"second board", release("1.4.0", "", false), "cm4", "1.3.9", nil, ""},
		{"wrong board", release("1.4.0", "", false), "rpi5", "1.3.9", ErrWrongBoard, `built for rpi4b, cm4; this kiosk is "rpi5"`},
		{"no board", release("1.4.0", "", false), "", "1.3.9", ErrWrongBoard, ""},
		{"forced wrong board", release("1.4.0", "", true), "rpi5", "1.3.9", ErrWrongBoard, ""},
		{"downgrade", release("1.3.0", "", false), "rpi4b", "1.4.0", ErrDowngrade, "1.3.0 is older than the running 1.4.0"},
		{"reinstall", release("1.4.0", "", false), "rpi4b", "v1.4.0", ErrDowngrade, "the same as"},
		{"forced downgrade", release("1.3.0", "", true), "rpi4b", "1.4.0", nil, ""},
		{"forced reinstall", release("1.4.0", "", true), "rpi4b", "1.4.0", nil, ""},
		{"release over its rc", release("1.4.0", "", false), "rpi4b", "1.4.0-rc.3", nil, ""},
		{"release under a later commit", release("1.4.0", "", false), "rpi4b", "1.4.0-2-gabcdef0", ErrDowngrade, ""},
		{"describe over its tag", release("1.4.0-2-gabcdef0", "", false), "rpi4b", "1.4.0", nil, ""},
		{"clean over dirty", release("1.4.0", "", false), "rpi4b", "v1.4.0-dirty", nil, ""},
		{"over dev", release("0.1.0", "", false), "rpi4b", "dev", nil, ""},
		{"over bare hash", release("0.1.0", "", false), "rpi4b", "6747d14-dirty", nil, ""},
		{"min_version met", release("1.4.0", "1.2.0", false), "rpi4b", "1.2.0", nil, ""},
		{"min_version not met", release("1.4.0", "1.2.0", false), "rpi4b", "1.1.9", ErrTooOld, "install 1.2.0 (or later) first"},
		{"min_version rc", release("1.4.0", "1.2.0", false), "rpi4b", "1.2.0-rc.1", ErrTooOld, ""},
		{"forced under min_version", release("1.4.0", "1.2.0", true), "rpi4b", "1.1.9", ErrTooOld, ""},
		{"min_version on dev", release("1.4.0", "1.2.0", false), "rpi4b", "dev", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.m, tc.board, mustVersion(t, tc.running))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

// fuzzStore trusts keys 1 and 2.
func fuzzStore(f *testing.F) *TrustStore {
	a, _ := testKey(1)
	b, _ := testKey(2)
	s, err := NewTrustStore(a, b)
	if err != nil {
		f.Fatal(err)
	}
	return s
}

func FuzzOpen(f *testing.F) {
	store := fuzzStore(f)
	manifest := validManifest(f, nil)
	one, _ := Sign(manifest, mustKey(1))
	two, _ := Sign(manifest, mustKey(3), mustKey(2))
	f.Add(one)
	f.Add(two)
	f.Add(manifest)
	f.Add([]byte(`{"manifest":"e30=","signatures":[]}`))
	f.Add([]byte(`{"manifest":"e30=","signatures":[{"key_id":"0011223344556677","sig":""}]}`))
	f.Fuzz(func(t *testing.T, env []byte) {
		m, raw, id, err := Open(env, store)
		if err != nil {
			for _, s := range []error{ErrMalformed, ErrUnsigned, ErrUnknownKey, ErrBadSignature} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("unclassified error %v", err)
		}
		pub, ok := store.lookup(id)
		if !ok || !ed25519.Verify(pub, signedMessage(raw), mustSigBy(t, env, id)) {
			t.Fatalf("opened without a valid signature by %s", id)
		}
		again, err := ParseManifest(raw)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("returned manifest differs from its bytes: %v", err)
		}
	})
}

// mustSigBy digs the signature by id out of an envelope that opened.
func mustSigBy(t *testing.T, env []byte, id string) []byte {
	var ew envelopeWire
	if err := json.Unmarshal(env, &ew); err != nil {
		t.Fatal(err)
	}
	for _, s := range ew.Signatures {
		if s.KeyID == id {
			sig, err := base64.StdEncoding.DecodeString(s.Sig)
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}
	}
	t.Fatalf("no signature by %s", id)
	return nil
}

func FuzzParseManifest(f *testing.F) {
	f.Add(validManifest(f, nil))
	f.Add(validManifest(f, func(m map[string]any) {
		delete(m, "boards")
		m["board"] = "cm4"
		m["delta"] = map[string]any{"base_version": "1.3.2", "base_sha256": strings.Repeat("cd", 32), "sha256": strings.Repeat("ef", 32), "size": 81920, "url": "https://x/d"}
	}))
	f.Add([]byte(`{"version":"1.0.0","boards":["a"],"sha256":"` + strings.Repeat("0", 64) + `","size":1,"url":"http://h"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("%+v does not encode: %v", m, err)
		}
		again, err := ParseManifest(out)
		if err != nil {
			t.Fatalf("%s parsed, but its encoding %s does not: %v", b, out, err)
		}
		if !again.Created.Equal(m.Created) {
			t.Fatalf("created changed: %v, %v", m.Created, again.Created)
		}
		again.Created, m.Created = time.Time{}, time.Time{}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed %+v into %+v", m, again)
		}
	})
}
