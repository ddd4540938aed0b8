package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/microretail/kioskd/ota"
	"github.com/microretail/kioskd/telemetry"
)

// otaRelease is a signed release on disk: two key pairs (a rotation from
// old to new), an artifact and its envelope.
type otaRelease struct {
	dir            string
	keys           string // holds old.key/.pub and new.key/.pub
	oldID, newID   string
	artifact       string
	envelope       string
	sum            string
	artifactBytes  []byte
	envelopeBytes  []byte
	manifestResult otaSignResult
}

// keygen makes the key pair name in dir and returns its id.
func keygen(t *testing.T, dir, name string) string {
	t.Helper()
	code, out, errs := cli("ota", "keygen", "--out", dir, "--name", name, "--json")
	if code != 0 {
		t.Fatalf("keygen %s: %d %s", name, code, errs)
	}
	var res otaKeygenResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return res.KeyID
}

// writeArtifact writes n random bytes to dir/name.
func writeArtifact(t *testing.T, dir, name string, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// signRelease signs artifact as version with the keys, plus extra flags.
func signRelease(t *testing.T, r *otaRelease, artifact, version string, keys []string, extra ...string) (otaSignResult, []byte) {
	t.Helper()
	args := []string{"ota", "sign", "--artifact", artifact, "--version", version, "--board", "rpi4b,cm4",
		"--url", "https://updates.example/kioskd/{sha256}", "--json"}
	for _, k := range keys {
		args = append(args, "--key", filepath.Join(r.keys, k+".key"))
	}
	code, out, errs := cli(append(args, extra...)...)
	if code != 0 {
		t.Fatalf("sign %s: %d %s", version, code, errs)
	}
	var res otaSignResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	env, err := os.ReadFile(res.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	return res, env
}

func newOTARelease(t *testing.T) *otaRelease {
	t.Helper()
	r := &otaRelease{dir: t.TempDir()}
	r.keys = filepath.Join(r.dir, "keys")
	r.oldID = keygen(t, r.keys, "old")
	r.newID = keygen(t, r.keys, "new")
	r.artifact, r.artifactBytes = writeArtifact(t, r.dir, "kioskd-1.4.0", 70_000)
	s := sha256.Sum256(r.artifactBytes)
	r.sum = hex.EncodeToString(s[:])
	r.manifestResult, r.envelopeBytes = signRelease(t, r, r.artifact, "v1.4.0", []string{"old", "new"}, "--min-version", "1.0.0")
	r.envelope = r.manifestResult.Envelope
	return r
}

// storeOf is a trust store holding only the named public keys in dir.
func storeOf(t *testing.T, dir string, names ...string) *ota.TrustStore {
	t.Helper()
	var pubs []ed25519.PublicKey
	for _, n := range names {
		pub, err := ota.ReadPublicKey(filepath.Join(dir, n+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, pub)
	}
	s, err := ota.NewTrustStore(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOtaKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys") // created by keygen
	code, out, errs := cli("ota", "keygen", "--out", dir, "--name", "fleet-2026")
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	keyPath, pubPath := filepath.Join(dir, "fleet-2026.key"), filepath.Join(dir, "fleet-2026.pub")
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", fi, err)
	}
	if fi, err := os.Stat(pubPath); err != nil || fi.Mode().Perm()&0o022 != 0 {
		t.Fatalf("public key: %v %v", fi, err)
	}
	priv, err := ota.ReadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ota.ReadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatal("the public key is not the private key's half")
	}
	if !strings.HasPrefix(out, "key id "+ota.KeyID(pub)+"\n") || !strings.Contains(out, keyPath) || !strings.Contains(out, pubPath) {
		t.Fatalf("keygen said:\n%s", out)
	}

	// A second keygen under the same name never replaces the key.
	before, _ := os.ReadFile(keyPath)
	code, _, errs = cli("ota", "keygen", "--out", dir, "--name", "fleet-2026")
	if code != 1 || !strings.Contains(errs, "already exists") {
		t.Fatalf("keygen over an existing key: %d %s", code, errs)
	}
	if after, _ := os.ReadFile(keyPath); !bytes.Equal(before, after) {
		t.Fatal("the private key changed")
	}
	// A stray public key of the name refuses too, leaving no private key.
	if err := os.WriteFile(filepath.Join(dir, "stray.pub"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := cli("ota", "keygen", "--out", dir, "--name", "stray"); code != 1 || !strings.Contains(errs, "stray.pub already exists") {
		t.Fatalf("keygen over a stray .pub: %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "stray.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stray.key: %v", err)
	}

	// The default name, and --json.
	id := keygen(t, dir, "ota")
	if pub, err := ota.ReadPublicKey(filepath.Join(dir, "ota.pub")); err != nil || ota.KeyID(pub) != id {
		t.Fatalf("ota.pub: %v, id %s", err, id)
	}

	for _, args := range [][]string{
		{"ota", "keygen"},
		{"ota", "keygen", "--out", dir, "--name", "../escape"},
		{"ota", "keygen", "--out", dir, "--name", ".hidden"},
		{"ota", "keygen", "--out", dir, "extra"},
		{"ota"},
		{"ota", "rollout"},
	} {
		if code, _, _ := cli(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestOtaSign(t *testing.T) {
	r := newOTARelease(t)
	if r.envelope != r.artifact+".manifest.json" {
		t.Fatalf("envelope at %s", r.envelope)
	}
	if strings.Join(r.manifestResult.KeyIDs, " ") != r.oldID+" "+r.newID {
		t.Fatalf("key ids %v, want %s %s", r.manifestResult.KeyIDs, r.oldID, r.newID)
	}
	m, err := ota.ParseManifest(r.manifestResult.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version.String() != "1.4.0" || strings.Join(m.Boards, ",") != "rpi4b,cm4" || m.Kind != ota.KindBinary ||
		m.SHA256 != r.sum || m.Size != 70_000 || m.URL != "https://updates.example/kioskd/"+r.sum ||
		m.MinVersion == nil || m.MinVersion.String() != "1.0.0" || m.Force || m.Created.IsZero() {
		t.Fatalf("manifest %+v", m)
	}

	// Signed by both keys during the rotation: a kiosk that trusts only
	// the new key, or only the old one, accepts it; one trusting neither
	// does not.
	for _, tc := range []struct{ trust, want string }{{"new", r.newID}, {"old", r.oldID}} {
		got, raw, keyID, err := ota.Open(r.envelopeBytes, storeOf(t, r.keys, tc.trust))
		var printed bytes.Buffer
		json.Compact(&printed, r.manifestResult.Manifest) // --json indents it
		if err != nil || keyID != tc.want || got.SHA256 != r.sum || !bytes.Equal(raw, printed.Bytes()) {
			t.Fatalf("open trusting only %s: key %s (want %s), %v", tc.trust, keyID, tc.want, err)
		}
	}
	other := t.TempDir()
	keygen(t, other, "other")
	if _, _, _, err := ota.Open(r.envelopeBytes, storeOf(t, other, "other")); !errors.Is(err, ota.ErrUnknownKey) {
		t.Fatalf("open trusting another key: %v", err)
	}

	// The text form, --out, --kind image and --force.
	out := filepath.Join(r.dir, "image.env")
	code, text, errs := cli("ota", "sign", "--key", filepath.Join(r.keys, "new.key"), "--artifact", r.artifact,
		"--version", "1.4.0", "--board", "rpi5", "--board", "cm4", "--url", "http://10.0.0.5/{version}/kioskd.img",
		"--kind", "image", "--force", "--out", out)
	if code != 0 {
		t.Fatalf("sign: %d %s", code, errs)
	}
	for _, want := range []string{"signed 1.4.0 (image for rpi5,cm4, forced)", r.sum, "http://10.0.0.5/1.4.0/kioskd.img", r.newID, out} {
		if !strings.Contains(text, want) {
			t.Fatalf("sign said, without %q:\n%s", want, text)
		}
	}
	env, _ := os.ReadFile(out)
	if m, _, _, err := ota.Open(env, storeOf(t, r.keys, "new")); err != nil || m.Kind != ota.KindImage || !m.Force {
		t.Fatalf("image manifest %+v %v", m, err)
	}

	// Whatever a kiosk would refuse is refused here, before anything is
	// written.
	good := map[string]string{"--key": filepath.Join(r.keys, "new.key"), "--artifact": r.artifact, "--version": "1.5.0",
		"--board": "rpi4b", "--url": "https://updates.example/{sha256}"}
	for _, tc := range []struct {
		name, flag, value string
		code              int
		why               string
	}{
		{"short version", "--version", "1.5", 2, "MAJOR.MINOR.PATCH"},
		{"dev version", "--version", "dev", 2, "dev or dirty"},
		{"dirty version", "--version", "1.5.0-dirty", 2, "dev or dirty"},
		{"ftp url", "--url", "ftp://updates.example/kioskd", 2, "want http or https"},
		{"relative url", "--url", "kioskd-1.5.0", 2, "want http or https"},
		{"url with credentials", "--url", "https://ops:secret@updates.example/x", 2, "credentials"},
		{"url with a space", "--url", "https://updates.example/a b", 2, "spaces"},
		{"bad board", "--board", "RPi4B", 2, "board"},
		{"bad kind", "--kind", "deb", 2, "kind"},
		{"min version newer", "--min-version", "2.0.0", 2, "newer than the release"},
		{"no key", "--key", "", 2, "--key"},
		{"missing key file", "--key", filepath.Join(r.dir, "nope.key"), 1, "nope.key"},
		{"public key as key", "--key", filepath.Join(r.keys, "new.pub"), 1, "new.pub"},
		{"missing artifact", "--artifact", filepath.Join(r.dir, "nope"), 1, "nope"},
		{"empty artifact", "--artifact", filepath.Join(r.dir, "empty"), 1, "size 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(filepath.Join(r.dir, "empty"), nil, 0o644)
			out := filepath.Join(t.TempDir(), "env.json")
			args := []string{"ota", "sign", "--out", out}
			for f, v := range good {
				if f == tc.flag {
					v = tc.value
				}
				if v != "" {
					args = append(args, f, v)
				}
			}
			if f := tc.flag; good[f] == "" {
				args = append(args, f, tc.value)
			}
			code, _, errs := cli(args...)
			if code != tc.code || !strings.Contains(errs, tc.why) {
				t.Fatalf("exit %d, want %d; stderr %q lacks %q", code, tc.code, errs, tc.why)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("an envelope was written: %v", err)
			}
		})
	}
}

// rewriteEnvelope decodes an envelope, lets edit change it and encodes it
// again.
func rewriteEnvelope(t *testing.T, env []byte, edit func(manifest []byte, sigs []map[string]string) []byte) []byte {
	t.Helper()
	var w struct {
		Manifest   string              `json:"manifest"`
		Signatures []map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(env, &w); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(w.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	w.Manifest = base64.StdEncoding.EncodeToString(edit(raw, w.Signatures))
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOtaVerify(t *testing.T) {
	r := newOTARelease(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(r.dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tampered := write("tampered.json", rewriteEnvelope(t, r.envelopeBytes, func(m []byte, _ []map[string]string) []byte {
		return bytes.Replace(m, []byte(`"size":70000`), []byte(`"size":70001`), 1) // one byte
	}))
	badSig := write("badsig.json", rewriteEnvelope(t, r.envelopeBytes, func(m []byte, sigs []map[string]string) []byte {
		s, _ := base64.StdEncoding.DecodeString(sigs[1]["sig"])
		s[10] ^= 1
		sigs[1]["sig"] = base64.StdEncoding.EncodeToString(s)
		return m
	}))
	bare := write("bare.json", r.manifestResult.Manifest)
	truncated := write("truncated.json", r.envelopeBytes[:len(r.envelopeBytes)-5])
	forced := filepath.Join(r.dir, "forced.json")
	signRelease(t, r, r.artifact, "1.2.0", []string{"new"}, "--force", "--out", forced)
	otherKeys := t.TempDir()
	keygen(t, otherKeys, "other")
	newOnly := t.TempDir()
	pub, _ := os.ReadFile(filepath.Join(r.keys, "new.pub"))
	if err := os.WriteFile(filepath.Join(newOnly, "new.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		keys     string
		envelope string
		args     []string
		reason   string // "" means accepted
	}{
		{"good", r.keys, r.envelope, nil, ""},
		{"good for the board and version", r.keys, r.envelope, []string{"--board", "cm4", "--running", "1.3.2"}, ""},
		{"good on a dev build", r.keys, r.envelope, []string{"--board", "rpi4b", "--running", "dev"}, ""},
		{"trusting only the new key", newOnly, r.envelope, []string{"--board", "rpi4b"}, ""},
		{"tampered manifest byte", r.keys, tampered, nil, "bad_signature"},
		{"tampered signature", r.keys, badSig, nil, "bad_signature"},
		{"truncated envelope", r.keys, truncated, nil, "malformed"},
		{"bare manifest", r.keys, bare, nil, "unsigned"},
		{"unknown key", otherKeys, r.envelope, nil, "unknown_key"},
		{"wrong board", r.keys, r.envelope, []string{"--board", "rpi5", "--running", "1.3.0"}, "wrong_board"},
		{"wrong board alone", r.keys, r.envelope, []string{"--board", "rpizero2w"}, "wrong_board"},
		{"downgrade", r.keys, r.envelope, []string{"--board", "rpi4b", "--running", "1.5.0"}, "downgrade"},
		{"reinstall", r.keys, r.envelope, []string{"--running", "1.4.0"}, "downgrade"},
		{"too old to update directly", r.keys, r.envelope, []string{"--board", "rpi4b", "--running", "0.9.0"}, "too_old"},
		{"forced downgrade", r.keys, forced, []string{"--board", "rpi4b", "--running", "1.4.0"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"ota", "verify", "--keys", tc.keys, tc.envelope}, tc.args...)
			code, out, errs := cli(append(args, "--json")...)
			var v otaVerdict
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("%v\n%s%s", err, out, errs)
			}
			want := 0
			if tc.reason != "" {
				want = 1
			}
			if code != want || v.OK != (tc.reason == "") || v.Reason != tc.reason {
				t.Fatalf("exit %d ok %v reason %q, want %d %q: %s", code, v.OK, v.Reason, want, tc.reason, v.Error)
			}
			// The text form agrees, with the reason on stderr.
			code, out, errs = cli(args...)
			switch {
			case code != want:
				t.Fatalf("text form: exit %d", code)
			case want == 0 && !strings.HasPrefix(out, "ok: "):
				t.Fatalf("text form said %q", out)
			case want == 1 && (out != "" || !strings.Contains(errs, "REFUSED ("+tc.reason+")")):
				t.Fatalf("text form said %q, %q", out, errs)
			}
		})
	}
	if code, _, _ := cli("ota", "verify", r.envelope); code != 2 {
		t.Fatalf("verify without --keys: %d", code)
	}
	if code, _, _ := cli("ota", "verify", "--keys", r.keys, r.envelope, "--running", "1.x"); code != 2 {
		t.Fatalf("verify with a bad --running: %d", code)
	}
	if code, _, errs := cli("ota", "verify", "--keys", t.TempDir(), r.envelope); code != 1 || !strings.Contains(errs, "no trusted keys") {
		t.Fatalf("verify with an empty key dir: %d %s", code, errs)
	}
}

func TestOtaPublish(t *testing.T) {
	r := newOTARelease(t)
	rel := filepath.Join(t.TempDir(), "releases")
	code, out, errs := cli("ota", "publish", "--dir", rel, "--keys", r.keys, r.envelope, r.artifact, "--json")
	if code != 0 {
		t.Fatalf("publish: %d %s", code, errs)
	}
	var res otaPublished
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Version != "1.4.0" || res.SHA256 != r.sum || !res.Copied || !res.Verified ||
		res.Artifact != filepath.Join(rel, r.sum) || res.Manifest != filepath.Join(rel, "1.4.0.manifest.json") ||
		res.Latest != filepath.Join(rel, "latest.json") {
		t.Fatalf("published %+v", res)
	}
	// Content-addressed: the artifact's name is its hash.
	got, err := os.ReadFile(filepath.Join(rel, r.sum))
	if s := sha256.Sum256(got); err != nil || hex.EncodeToString(s[:]) != r.sum || !bytes.Equal(got, r.artifactBytes) {
		t.Fatalf("published artifact: %v", err)
	}
	for _, name := range []string{"1.4.0.manifest.json", "latest.json"} {
		if b, err := os.ReadFile(filepath.Join(rel, name)); err != nil || !bytes.Equal(b, r.envelopeBytes) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	assertOnly := func(dir string, names ...string) {
		t.Helper()
		entries, _ := os.ReadDir(dir)
		var have []string
		for _, e := range entries {
			have = append(have, e.Name())
		}
		// ReadDir sorts by name; the artifact's name is its random hash.
		names = slices.Sorted(slices.Values(names))
		if strings.Join(have, " ") != strings.Join(names, " ") {
			t.Fatalf("%s holds %v, want %v", dir, have, names)
		}
	}
	assertOnly(rel, "1.4.0.manifest.json", r.sum, "latest.json")

	// Again, in text form, without --keys: nothing to copy.
	code, out, errs = cli("ota", "publish", "--dir", rel, r.envelope, r.artifact)
	if code != 0 || !strings.Contains(out, "already there") || !strings.Contains(out, "signatures not checked") || errs != "" {
		t.Fatalf("publish again: %d %s %s", code, out, errs)
	}

	// An artifact that is not the signed one is refused and nothing shows.
	fresh := filepath.Join(t.TempDir(), "releases")
	impostor, _ := writeArtifact(t, r.dir, "impostor", 70_000)
	short, _ := writeArtifact(t, r.dir, "short", 69_999)
	for _, a := range []string{impostor, short} {
		code, _, errs := cli("ota", "publish", "--dir", fresh, r.envelope, a)
		if code != 1 || !strings.Contains(errs, "not the artifact this envelope was signed for") {
			t.Fatalf("publish %s: %d %s", filepath.Base(a), code, errs)
		}
		assertOnly(fresh)
	}
	// So is an envelope the fleet's keys did not sign, or a tampered one.
	otherKeys := t.TempDir()
	keygen(t, otherKeys, "other")
	if code, _, errs := cli("ota", "publish", "--dir", fresh, "--keys", otherKeys, r.envelope, r.artifact); code != 1 || !strings.Contains(errs, "not signed by a trusted key") {
		t.Fatalf("publish under other keys: %d %s", code, errs)
	}
	tampered := filepath.Join(r.dir, "tampered.json")
	os.WriteFile(tampered, rewriteEnvelope(t, r.envelopeBytes, func(m []byte, _ []map[string]string) []byte {
		return bytes.Replace(m, []byte(r.sum[:8]), []byte("00000000"), 1)
	}), 0o644)
	if code, _, errs := cli("ota", "publish", "--dir", fresh, "--keys", r.keys, tampered, r.artifact); code != 1 || !strings.Contains(errs, "bad manifest signature") {
		t.Fatalf("publish tampered: %d %s", code, errs)
	}
	if code, _, errs := cli("ota", "publish", "--dir", fresh, r.artifact, r.artifact); code != 1 || errs == "" {
		t.Fatalf("publish with the artifact as envelope: %d %s", code, errs)
	}
	assertOnly(fresh)

	// An older release is published but does not take latest.json.
	older, olderBytes := writeArtifact(t, r.dir, "kioskd-1.3.0", 1000)
	olderRes, olderEnv := signRelease(t, r, older, "1.3.0", []string{"new"})
	code, out, errs = cli("ota", "publish", "--dir", rel, olderRes.Envelope, older)
	if code != 0 || !strings.Contains(out, "kept at 1.4.0") {
		t.Fatalf("publish older: %d %s %s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(rel, "latest.json")); !bytes.Equal(b, r.envelopeBytes) {
		t.Fatal("latest.json moved back to 1.3.0")
	}
	if b, _ := os.ReadFile(filepath.Join(rel, "1.3.0.manifest.json")); !bytes.Equal(b, olderEnv) {
		t.Fatal("1.3.0.manifest.json not published")
	}
	s := sha256.Sum256(olderBytes)
	if b, _ := os.ReadFile(filepath.Join(rel, hex.EncodeToString(s[:]))); !bytes.Equal(b, olderBytes) {
		t.Fatal("1.3.0's artifact not published")
	}
	// A version names one build: 1.4.0 again with other bytes is refused.
	other, _ := writeArtifact(t, r.dir, "kioskd-1.4.0-other", 500)
	otherRes, _ := signRelease(t, r, other, "1.4.0", []string{"new"})
	if code, _, errs := cli("ota", "publish", "--dir", rel, otherRes.Envelope, other); code != 1 || !strings.Contains(errs, "already published") {
		t.Fatalf("republish 1.4.0 with another artifact: %d %s", code, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(rel, "1.4.0.manifest.json")); !bytes.Equal(b, r.envelopeBytes) {
		t.Fatal("1.4.0.manifest.json replaced")
	}
	// A URL that does not name the artifact by its hash gets a note: the
	// kiosks will not download what this directory serves.
	named := filepath.Join(r.dir, "named.json")
	signRelease(t, r, r.artifact, "1.4.0", []string{"new"}, "--url", "https://updates.example/kioskd.bin", "--out", named)
	if code, _, errs := cli("ota", "publish", "--dir", t.TempDir(), named, r.artifact); code != 0 || !strings.Contains(errs, "note: kiosks download from https://updates.example/kioskd.bin") {
		t.Fatalf("publish with a fixed url: %d %s", code, errs)
	}

	for _, args := range [][]string{
		{"ota", "publish", r.envelope, r.artifact},
		{"ota", "publish", "--dir", rel, r.envelope},
	} {
		if code, _, _ := cli(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestOtaStatus(t *testing.T) {
	b := broker(t)
	pub := client(t, b, "sim")
	now := time.Now().UTC()
	pct := 42.5
	publish(t, pub, telemetry.Topic("k1", telemetry.TopicStatus), true,
		telemetry.Status{State: "online", Version: "1.3.0", Board: "rpi4b", TS: now.Add(-time.Hour)})
	publish(t, pub, telemetry.Topic("k1", telemetry.TopicOTA), true,
		otaState{Job: "r-14", Version: "1.4.0", State: "downloading", Progress: &pct, TS: now.Add(-90 * time.Second)})
	publish(t, pub, telemetry.Topic("k2", telemetry.TopicStatus), true,
		telemetry.Status{State: "offline", Version: "1.3.0", Board: "rpi4b", TS: now.Add(-time.Hour)})
	publish(t, pub, telemetry.Topic("k2", telemetry.TopicOTA), true,
		`{"job":"r-14","version":"1.4.0","state":"rolled_back","progress":100,"error":"crashed 3 times in trial","slot":"b"}`)
	publish(t, pub, telemetry.Topic("k3", telemetry.TopicStatus), true,
		telemetry.Status{State: "online", Version: "1.4.0", Board: "cm4", TS: now})
	publish(t, pub, telemetry.Topic("k4", telemetry.TopicOTA), true, "{broken")

	code, out, errs := cli("ota", "status", "--broker", b.URL(), "--json")
	if code != 0 {
		t.Fatalf("status: %d %s", code, errs)
	}
	var rep otaReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Kiosks) != 4 || rep.States["downloading"] != 1 || rep.States["rolled_back"] != 1 || rep.States["none"] != 2 {
		t.Fatalf("report %+v", rep)
	}
	k1, k2, k3, k4 := rep.Kiosks[0], rep.Kiosks[1], rep.Kiosks[2], rep.Kiosks[3]
	if k1.Kiosk != "k1" || k1.Status != "online" || k1.Running != "1.3.0" || k1.Job != "r-14" || k1.Version != "1.4.0" ||
		k1.State != "downloading" || k1.Progress == nil || *k1.Progress != 42.5 || k1.Updated == nil || !k1.Updated.Equal(now.Add(-90*time.Second)) {
		t.Fatalf("k1 %+v", k1)
	}
	if k2.Status != "offline" || k2.State != "rolled_back" || k2.Error != "crashed 3 times in trial" || k2.Updated != nil {
		t.Fatalf("k2 %+v", k2)
	}
	if k3.State != "none" || k3.Running != "1.4.0" || k3.Job != "" || k3.Progress != nil {
		t.Fatalf("k3 %+v", k3)
	}
	if k4.Status != "unknown" || k4.State != "none" || len(k4.Errors) != 1 {
		t.Fatalf("k4 %+v", k4)
	}

	code, out, errs = cli("--broker", b.URL(), "ota", "status")
	if code != 0 {
		t.Fatalf("status: %d %s", code, errs)
	}
	rows := lines(out)
	if len(rows) != 6 || !strings.HasPrefix(rows[0], "KIOSK") || strings.Contains(out, "\x1b[") {
		t.Fatalf("table:\n%s", out)
	}
	for i, want := range [][]string{
		{"k1", "online", "1.3.0", "r-14", "1.4.0", "downloading", "42%", "1m ago"},
		{"k2", "offline", "rolled_back", "100%", "crashed 3 times in trial"},
		{"k3", "online", "1.4.0", "none"},
		{"k4", "unknown", "none", "unreadable"},
	} {
		for _, w := range want {
			if !strings.Contains(rows[i+1], w) {
				t.Fatalf("row %d lacks %q:\n%s", i+1, w, out)
			}
		}
	}
	if rows[5] != "4 kiosks: 1 downloading, 2 none, 1 rolled_back" {
		t.Fatalf("summary %q", rows[5])
	}

	// A cleared job (empty retained payload) leaves the kiosk without one.
	publish(t, pub, telemetry.Topic("k1", telemetry.TopicOTA), true, []byte{})
	code, out, _ = cli("ota", "status", "--broker", b.URL(), "--json")
	rep = otaReport{}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Kiosks[0].State != "none" {
		t.Fatalf("after clearing k1's job: %d %v %s", code, err, out)
	}

	if code, _, _ := cli("ota", "status", "--broker", b.URL(), "--wait", "0s"); code != 2 {
		t.Fatalf("--wait 0: %d", code)
	}
	if code, _, _ := cli("ota", "status", "--broker", b.URL(), "k1"); code != 2 {
		t.Fatalf("status with an argument: %d", code)
	}
}

// TestOtaSignAndPublishADelta: sign --delta-base writes a delta against the
// previous release beside the artifact and names it in the manifest;
// publish puts it beside the artifact, content-addressed; it rebuilds the
// release from the base.
func TestOtaSignAndPublishADelta(t *testing.T) {
	r := newOTARelease(t)
	next := append(append([]byte(nil), r.artifactBytes[:30_000]...), []byte("a small code change")...)
	next = append(next, r.artifactBytes[30_000:]...)
	nextPath := filepath.Join(r.dir, "kioskd-1.5.0")
	if err := os.WriteFile(nextPath, next, 0o644); err != nil {
		t.Fatal(err)
	}
	res, env := signRelease(t, r, nextPath, "1.5.0", []string{"new"}, "--delta-base", r.artifact,
		"--delta-base-version", "1.4.0", "--delta-url", "https://updates.example/kioskd/{sha256}")
	m, _, _, err := ota.Open(env, storeOf(t, r.keys, "new"))
	if err != nil {
		t.Fatal(err)
	}
	d := m.Delta
	if d == nil || d.BaseVersion.String() != "1.4.0" || d.BaseSHA256 != r.sum || d.URL != "https://updates.example/kioskd/"+d.SHA256 {
		t.Fatalf("delta %+v", d)
	}
	if d.Size*10 > int64(len(next)) {
		t.Fatalf("a %d-byte delta for a %d-byte release with a 19-byte change", d.Size, len(next))
	}
	patch := nextPath + ".delta-from-1.4.0.zst"
	out := filepath.Join(t.TempDir(), "rebuilt")
	if err := ota.ApplyDelta(context.Background(), r.artifact, patch, out, m.Size, m.SHA256); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(r.dir, "releases")
	if code, _, errs := cli("ota", "publish", "--dir", rel, res.Envelope, nextPath); code != 0 {
		t.Fatalf("publish: %d %s", code, errs)
	}
	for _, sum := range []string{m.SHA256, d.SHA256} {
		if _, err := os.Stat(filepath.Join(rel, sum)); err != nil {
			t.Errorf("not published: %v", err)
		}
	}
}
