package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/microretail/kioskd/internal/atomicfile"
	"github.com/microretail/kioskd/ota"
	"github.com/microretail/kioskd/telemetry"
)

// otaCommand runs `kioskctl ota SUBCOMMAND`: the release side of OTA
// (keys, signing, publishing) and the fleet's view of it (status). See
// ota/doc.go for the manifest, envelope and key formats.
func otaCommand(ctx context.Context, g *globals, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(g.stderr, usage)
		return 2
	}
	switch args[0] {
	case "keygen":
		return otaKeygen(g, args[1:])
	case "sign":
		return otaSign(g, args[1:])
	case "verify":
		return otaVerify(g, args[1:])
	case "publish":
		return otaPublish(g, args[1:])
	case "status":
		return otaStatus(ctx, g, args[1:])
	case "rollout":
		return otaRollout(ctx, g, args[1:])
	}
	fmt.Fprintf(g.stderr, "kioskctl ota: unknown command %q\n%s", args[0], usage)
	return 2
}

// badUsage reports a wrong argument of command name: exit code 2.
func (g *globals) badUsage(name, format string, args ...any) int {
	fmt.Fprintf(g.stderr, "kioskctl "+name+": "+format+"\n", args...)
	return 2
}

// listFlag is a flag that may be repeated; with split, each value may also
// be a comma-separated list.
type listFlag struct {
	vals  []string
	split bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }

func (l *listFlag) Set(s string) error {
	if !l.split {
		l.vals = append(l.vals, s)
		return nil
	}
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.vals = append(l.vals, p)
		}
	}
	return nil
}

// keygen

// otaKeygenResult is what `ota keygen --json` prints.
type otaKeygenResult struct {
	KeyID   string `json:"key_id"`
	Private string `json:"private"`
	Public  string `json:"public"`
}

func otaKeygen(g *globals, args []string) int {
	const name = "ota keygen"
	fs := g.flags(name)
	out := fs.String("out", "", "`dir` for the key pair")
	keyName := fs.String("name", "ota", "file `name` of the pair, without extension")
	pos, ok := g.parse(fs, args)
	switch {
	case !ok:
		return 2
	case len(pos) > 0:
		return g.badUsage(name, "unexpected argument %q", pos[0])
	case *out == "":
		return g.badUsage(name, "--out DIR is required")
	case !validKeyName(*keyName):
		return g.badUsage(name, "bad --name %q: letters, digits, '.', '-' or '_', not starting with '.'", *keyName)
	}
	privPath := filepath.Join(*out, *keyName+".key")
	pubPath := filepath.Join(*out, *keyName+".pub")
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return g.fail("%v", err)
	}
	// Check both before writing either, so a refusal leaves nothing behind.
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return g.fail("%s already exists; a signing key is never overwritten (choose another --name)", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return g.fail("%v", err)
		}
	}
	pub, priv, err := ota.GenerateKey(nil)
	if err != nil {
		return g.fail("%v", err)
	}
	if err := ota.WritePrivateKey(privPath, priv); err != nil {
		return g.fail("%v", err)
	}
	if err := ota.WritePublicKey(pubPath, pub); err != nil {
		os.Remove(privPath) // a private key without its public half is no use to anyone
		return g.fail("%v", err)
	}
	res := otaKeygenResult{KeyID: ota.KeyID(pub), Private: privPath, Public: pubPath}
	if g.json {
		if err := writeJSON(g.stdout, res); err != nil {
			return g.fail("%v", err)
		}
		return 0
	}
	fmt.Fprintf(g.stdout, "key id %s\n", res.KeyID)
	fmt.Fprintf(g.stdout, "  private key  %s  (signs releases: keep it offline, never on a kiosk)\n", privPath)
	fmt.Fprintf(g.stdout, "  public key   %s  (install on every kiosk in /etc/kioskd/ota-keys)\n", pubPath)
	return 0
}

// validKeyName accepts a plain file name for a key pair.
func validKeyName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// sign

// otaSignResult is what `ota sign --json` prints.
type otaSignResult struct {
	Manifest json.RawMessage `json:"manifest"` // what was signed (the envelope holds the exact bytes)
	KeyIDs   []string        `json:"key_ids"`
	Envelope string          `json:"envelope"` // the file written
}

func otaSign(g *globals, args []string) int {
	const name = "ota sign"
	fs := g.flags(name)
	var keys, boards listFlag
	boards.split = true
	fs.Var(&keys, "key", "private key `file` (repeat to sign with several keys, as during a key rotation)")
	artifact := fs.String("artifact", "", "the release artifact `file`")
	version := fs.String("version", "", "the release's `version`")
	fs.Var(&boards, "board", "`boards` the release is for, comma-separated or repeated")
	rawURL := fs.String("url", "", "where kiosks download the artifact; {sha256} and {version} in it are filled in")
	minVersion := fs.String("min-version", "", "oldest running `version` that may install this release")
	force := fs.Bool("force", false, "allow installing over a newer or the same version (a downgrade or reinstall)")
	kind := fs.String("kind", string(ota.KindBinary), "artifact `kind`: binary or image")
	out := fs.String("out", "", "envelope `file` to write (default ARTIFACT.manifest.json)")
	deltaBase := fs.String("delta-base", "", "the previous release's artifact `file`: also write a delta against it, for kiosks that run it")
	deltaBaseVersion := fs.String("delta-base-version", "", "the `version` of --delta-base")
	deltaURL := fs.String("delta-url", "", "where kiosks download the delta; {sha256} and {version} in it are filled in")
	pos, ok := g.parse(fs, args)
	switch {
	case !ok:
		return 2
	case len(pos) > 0:
		return g.badUsage(name, "unexpected argument %q", pos[0])
	case len(keys.vals) == 0:
		return g.badUsage(name, "--key FILE is required (repeat it to sign with several keys)")
	case *artifact == "" || *version == "" || len(boards.vals) == 0 || *rawURL == "":
		return g.badUsage(name, "--artifact, --version, --board and --url are required")
	case (*deltaBase == "") != (*deltaURL == "") || (*deltaBase == "") != (*deltaBaseVersion == ""):
		return g.badUsage(name, "--delta-base, --delta-base-version and --delta-url go together")
	}
	if *out == "" {
		*out = *artifact + ".manifest.json"
	}
	if filepath.Clean(*out) == filepath.Clean(*artifact) {
		return g.badUsage(name, "--out is the artifact itself")
	}
	v, err := ota.ParseVersion(*version)
	if err != nil {
		return g.badUsage(name, "--version: %v", err)
	}
	m := ota.Manifest{Version: v, Boards: boards.vals, Kind: ota.Kind(*kind), Force: *force,
		Created: clock().UTC().Truncate(time.Second)}
	if *minVersion != "" {
		mv, err := ota.ParseVersion(*minVersion)
		if err != nil {
			return g.badUsage(name, "--min-version: %v", err)
		}
		m.MinVersion = &mv
	}
	fill := func(sum string, size int64) ([]byte, error) {
		m.SHA256, m.Size = sum, size
		m.URL = strings.NewReplacer("{sha256}", sum, "{version}", v.String()).Replace(*rawURL)
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		_, err = ota.ParseManifest(b)
		return b, err
	}
	// Everything but the artifact's hash is checked first, so a mistyped
	// flag is reported before a multi-gigabyte image is read.
	if _, err := fill(strings.Repeat("0", 64), 1); err != nil {
		return g.badUsage(name, "%v", err)
	}
	privs := make([]ed25519.PrivateKey, 0, len(keys.vals))
	ids := make([]string, 0, len(keys.vals))
	for _, path := range keys.vals {
		priv, err := ota.ReadPrivateKey(path)
		if err != nil {
			return g.fail("%v", err)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(g.stderr, "kioskctl %s: warning: %s is readable by others (mode %v); chmod 600 it\n", name, path, fi.Mode().Perm())
		}
		privs = append(privs, priv)
		ids = append(ids, ota.KeyID(priv.Public().(ed25519.PublicKey)))
	}
	sum, size, err := hashFile(*artifact)
	if err != nil {
		return g.fail("artifact: %v", err)
	}
	if *deltaBase != "" {
		// The delta sits beside the artifact: ARTIFACT.delta-from-BASEVERSION.zst.
		bv, err := ota.ParseVersion(*deltaBaseVersion)
		if err != nil {
			return g.badUsage(name, "--delta-base-version: %v", err)
		}
		baseSum, _, err := hashFile(*deltaBase)
		if err != nil {
			return g.fail("delta base: %v", err)
		}
		patch := *artifact + ".delta-from-" + bv.String() + ".zst"
		info, err := ota.MakeDelta(*deltaBase, *artifact, patch)
		if err != nil {
			return g.fail("delta: %v", err)
		}
		m.Delta = &ota.Delta{BaseVersion: bv, BaseSHA256: baseSum, SHA256: info.SHA256, Size: info.Size,
			URL: strings.NewReplacer("{sha256}", info.SHA256, "{version}", v.String()).Replace(*deltaURL)}
		fmt.Fprintf(g.stderr, "kioskctl %s: delta from %s: %d bytes in %s\n", name, bv, info.Size, patch)
	}
	raw, err := fill(sum, size)
	if err != nil {
		return g.fail("%v", err)
	}
	env, err := ota.Sign(raw, privs...)
	if err != nil {
		return g.fail("%v", err)
	}
	if err := atomicfile.Write(*out, env, 0o644); err != nil {
		return g.fail("%v", err)
	}
	if g.json {
		if err := writeJSON(g.stdout, otaSignResult{Manifest: raw, KeyIDs: ids, Envelope: *out}); err != nil {
			return g.fail("%v", err)
		}
		return 0
	}
	fmt.Fprintf(g.stdout, "signed %s\n", describeRelease(m))
	fmt.Fprintf(g.stdout, "  url       %s\n", m.URL)
	fmt.Fprintf(g.stdout, "  keys      %s\n", strings.Join(ids, ", "))
	fmt.Fprintf(g.stdout, "  envelope  %s\n", *out)
	return 0
}

// describeRelease is one line about a release for the operator.
func describeRelease(m ota.Manifest) string {
	var extra string
	if m.MinVersion != nil {
		extra += ", min version " + m.MinVersion.String()
	}
	if m.Force {
		extra += ", forced"
	}
	return fmt.Sprintf("%s (%s for %s%s): %d bytes, sha256 %s", m.Version, m.Kind, strings.Join(m.Boards, ","), extra, m.Size, m.SHA256)
}

// hashFile returns the SHA-256 (lowercase hex) and size of a regular file.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// readEnvelope reads a signed envelope file, refusing one larger than any
// envelope can be.
func readEnvelope(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, ota.MaxEnvelopeSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > ota.MaxEnvelopeSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a signed envelope", path, ota.MaxEnvelopeSize)
	}
	return b, nil
}

// verify

// otaVerdict is what `ota verify --json` prints.
type otaVerdict struct {
	OK       bool            `json:"ok"`
	Envelope string          `json:"envelope"`
	KeyID    string          `json:"key_id,omitempty"`   // the trusted key that signed it
	Trusted  []string        `json:"trusted"`            // the key ids in --keys
	Manifest json.RawMessage `json:"manifest,omitempty"` // once a signature holds
	Board    string          `json:"board,omitempty"`    // what was checked
	Running  string          `json:"running,omitempty"`
	Reason   string          `json:"reason,omitempty"` // malformed, unsigned, unknown_key, bad_signature, wrong_board, downgrade, too_old
	Error    string          `json:"error,omitempty"`
}

// refusalReasons name ota's refusals for scripts.
var refusalReasons = []struct {
	err    error
	reason string
}{
	{ota.ErrMalformed, "malformed"},
	{ota.ErrUnsigned, "unsigned"},
	{ota.ErrUnknownKey, "unknown_key"},
	{ota.ErrBadSignature, "bad_signature"},
	{ota.ErrWrongBoard, "wrong_board"},
	{ota.ErrDowngrade, "downgrade"},
	{ota.ErrTooOld, "too_old"},
}

func refusalReason(err error) string {
	for _, r := range refusalReasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "error"
}

func otaVerify(g *globals, args []string) int {
	const name = "ota verify"
	fs := g.flags(name)
	keys := fs.String("keys", "", "trust store `dir` holding the fleet's *.pub keys")
	board := fs.String("board", "", "check the release installs on this `board`")
	running := fs.String("running", "", "check the release installs over this running `version`")
	pos, ok := g.parse(fs, args)
	switch {
	case !ok:
		return 2
	case *keys == "":
		return g.badUsage(name, "--keys DIR is required")
	case len(pos) != 1:
		return g.badUsage(name, "want one ENVELOPE file")
	}
	runningV := ota.Version{Dev: true} // a dev build installs any release for its board
	if *running != "" {
		v, err := ota.ParseVersion(*running)
		if err != nil {
			return g.badUsage(name, "--running: %v", err)
		}
		runningV = v
	}
	store, err := ota.LoadTrustStore(*keys)
	if store.Len() == 0 {
		return g.fail("%v", err)
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "kioskctl %s: warning: %v\n", name, err)
	}
	verdict := otaVerdict{Envelope: pos[0], Trusted: store.KeyIDs(), Board: *board, Running: *running}
	env, err := readEnvelope(pos[0])
	if err != nil {
		return g.fail("%v", err)
	}
	m, raw, keyID, err := ota.Open(env, store)
	if err == nil {
		verdict.KeyID, verdict.Manifest = keyID, raw
		if *board != "" || *running != "" {
			b := *board
			if b == "" {
				b = m.Boards[0] // without --board the board is not checked
			}
			err = ota.Check(m, b, runningV)
		}
	}
	verdict.OK = err == nil
	if err != nil {
		verdict.Reason, verdict.Error = refusalReason(err), err.Error()
	}
	if g.json {
		if err := writeJSON(g.stdout, verdict); err != nil {
			return g.fail("%v", err)
		}
	} else if verdict.OK {
		fmt.Fprintf(g.stdout, "ok: %s\n  signed by trusted key %s\n", describeRelease(m), keyID)
		switch {
		case *board != "" && *running != "":
			fmt.Fprintf(g.stdout, "  installs on board %s running %s\n", *board, runningV)
		case *board != "":
			fmt.Fprintf(g.stdout, "  built for %s (give --running to check the version too)\n", *board)
		case *running != "":
			fmt.Fprintf(g.stdout, "  installs over %s (give --board to check the board too)\n", runningV)
		}
	} else {
		fmt.Fprintf(g.stderr, "kioskctl %s: REFUSED (%s): %v\n", name, verdict.Reason, err)
	}
	if !verdict.OK {
		return 1
	}
	return 0
}

// publish

// otaPublished is what `ota publish --json` prints.
type otaPublished struct {
	Version  string `json:"version"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	Artifact string `json:"artifact"`
	Copied   bool   `json:"copied"` // false: the artifact was there already
	Manifest string `json:"manifest"`
	Latest   string `json:"latest,omitempty"` // empty: latest.json names a newer release and was kept
	Verified bool   `json:"signatures_verified"`
}

func otaPublish(g *globals, args []string) int {
	const name = "ota publish"
	fs := g.flags(name)
	dir := fs.String("dir", "", "releases `dir` an HTTP server serves")
	keys := fs.String("keys", "", "also check the signatures against the *.pub keys in `dir`")
	pos, ok := g.parse(fs, args)
	switch {
	case !ok:
		return 2
	case *dir == "":
		return g.badUsage(name, "--dir RELEASES is required")
	case len(pos) != 2:
		return g.badUsage(name, "want ENVELOPE ARTIFACT")
	}
	envPath, artifact := pos[0], pos[1]
	env, m, verified, code := g.release(name, envPath, *keys)
	if code != 0 {
		return code
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return g.fail("%v", err)
	}
	var err error
	res := otaPublished{Version: m.Version.String(), SHA256: m.SHA256, Size: m.Size, Verified: verified,
		Manifest: filepath.Join(*dir, m.Version.String()+".manifest.json")}

	// A version names one build: never republish it with another artifact
	// (re-signing the same artifact, with a new key say, is fine).
	if old, err := os.ReadFile(res.Manifest); err == nil {
		if om, err := envelopeManifest(old, nil); err == nil && om.SHA256 != m.SHA256 {
			return g.fail("%s is already published in %s for another artifact (sha256 %s); a version names one build: sign this one as a new version",
				m.Version, res.Manifest, om.SHA256)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return g.fail("%v", err)
	}

	// The artifact goes first, so no published manifest ever names a
	// missing artifact.
	res.Artifact, res.Copied, err = publishArtifact(*dir, artifact, m)
	if err != nil {
		return g.fail("%v", err)
	}
	if d := m.Delta; d != nil {
		// The delta sign wrote beside the artifact, content-addressed too.
		patch := artifact + ".delta-from-" + d.BaseVersion.String() + ".zst"
		if _, _, err := publishArtifact(*dir, patch, ota.Manifest{SHA256: d.SHA256, Size: d.Size}); err != nil {
			return g.fail("delta: %v (ota sign --delta-base writes it beside the artifact)", err)
		}
	}
	if err := atomicfile.Write(res.Manifest, env, 0o644); err != nil {
		return g.fail("%v", err)
	}
	latest := filepath.Join(*dir, "latest.json")
	var kept *ota.Manifest
	if old, err := os.ReadFile(latest); err == nil {
		if om, err := envelopeManifest(old, nil); err == nil && ota.Compare(om.Version, m.Version) > 0 && !m.Force {
			kept = &om
		}
	}
	if kept == nil {
		if err := atomicfile.Write(latest, env, 0o644); err != nil {
			return g.fail("%v", err)
		}
		res.Latest = latest
	}
	if g.json {
		if err := writeJSON(g.stdout, res); err != nil {
			return g.fail("%v", err)
		}
		return 0
	}
	fmt.Fprintf(g.stdout, "published %s\n", describeRelease(m))
	how := "copied"
	if !res.Copied {
		how = "already there, checked"
	}
	fmt.Fprintf(g.stdout, "  artifact  %s (%s)\n", res.Artifact, how)
	fmt.Fprintf(g.stdout, "  manifest  %s\n", res.Manifest)
	if kept != nil {
		fmt.Fprintf(g.stdout, "  latest    kept at %s, which is newer (sign with --force to roll the fleet back)\n", kept.Version)
	} else {
		fmt.Fprintf(g.stdout, "  latest    %s\n", res.Latest)
	}
	if !res.Verified {
		fmt.Fprintln(g.stdout, "  signatures not checked (give --keys DIR to check them against the fleet's keys)")
	}
	if u, err := url.Parse(m.URL); err != nil || path.Base(u.Path) != m.SHA256 {
		fmt.Fprintf(g.stderr, "kioskctl %s: note: kiosks download from %s, which does not end in /%s (sign with --url …/{sha256} to serve this directory)\n",
			name, m.URL, m.SHA256)
	}
	return 0
}

// release reads the signed envelope at path and its manifest, its
// signatures verified against the trust store in keys when it is given;
// a non-zero code is the command's exit on failure, said.
func (g *globals) release(name, path, keys string) (env []byte, m ota.Manifest, verified bool, code int) {
	env, err := readEnvelope(path)
	if err != nil {
		return nil, m, false, g.fail("%v", err)
	}
	var store *ota.TrustStore
	if keys != "" {
		s, err := ota.LoadTrustStore(keys)
		if s.Len() == 0 {
			return nil, m, false, g.fail("%v", err)
		}
		if err != nil {
			fmt.Fprintf(g.stderr, "kioskctl %s: warning: %v\n", name, err)
		}
		store = s
	}
	if m, err = envelopeManifest(env, store); err != nil {
		return nil, m, false, g.fail("%s: %v", path, err)
	}
	return env, m, store != nil, 0
}

// envelopeManifest returns the manifest in a signed envelope. With a trust
// store it is ota.Open's; without one the envelope is checked as strictly
// as ota.Open does and its signatures are left for the kiosks, which check
// them themselves.
func envelopeManifest(env []byte, store *ota.TrustStore) (ota.Manifest, error) {
	if store != nil {
		m, _, _, err := ota.Open(env, store)
		return m, err
	}
	// Against an empty store, a well-formed, signed envelope fails only
	// for want of a trusted key.
	if _, _, _, err := ota.Open(env, nil); !errors.Is(err, ota.ErrUnknownKey) {
		return ota.Manifest{}, err
	}
	var w struct {
		Manifest string `json:"manifest"`
	}
	if err := json.Unmarshal(env, &w); err != nil {
		return ota.Manifest{}, fmt.Errorf("%w: %v", ota.ErrMalformed, err)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(w.Manifest)
	if err != nil {
		return ota.Manifest{}, fmt.Errorf("%w: manifest is not base64", ota.ErrMalformed)
	}
	return ota.ParseManifest(raw)
}

// publishArtifact copies src into dir as <sha256>, checking on the way that
// it is the artifact m describes. What is hashed is what was copied, so the
// source cannot change between the check and the copy, and nothing appears
// under the name until it checks out. An artifact already there is hashed
// again and replaced only if it is damaged.
func publishArtifact(dir, src string, m ota.Manifest) (dst string, copied bool, err error) {
	dst = filepath.Join(dir, m.SHA256)
	if sum, size, err := hashFile(dst); err == nil && sum == m.SHA256 && size == m.Size {
		return dst, false, nil
	}
	in, err := os.Open(src)
	if err != nil {
		return "", false, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", false, err
	}
	if !fi.Mode().IsRegular() {
		return "", false, fmt.Errorf("%s is not a regular file", src)
	}
	if fi.Size() != m.Size {
		return "", false, fmt.Errorf("%s is %d bytes; the manifest says %d: not the artifact this envelope was signed for", src, fi.Size(), m.Size)
	}
	tmp, err := os.CreateTemp(dir, "."+m.SHA256+".*")
	if err != nil {
		return "", false, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), in)
	if err != nil {
		return "", false, fmt.Errorf("copy %s: %w", src, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != m.Size || sum != m.SHA256 {
		return "", false, fmt.Errorf("%s has sha256 %s (%d bytes); the manifest says %s (%d bytes): not the artifact this envelope was signed for",
			src, sum, n, m.SHA256, m.Size)
	}
	if err = tmp.Chmod(0o644); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err == nil {
		err = atomicfile.SyncDir(dir)
	}
	if err != nil {
		return "", false, err
	}
	return dst, true, nil
}

// status

// otaState is a kiosk's retained OTA job state on kiosk/<id>/ota (DESIGN.md
// "MQTT"). Progress is a percentage, 0 to 100. Fields the console does not
// know are ignored, so the kiosk may add more.
type otaState struct {
	Job      string    `json:"job"`
	Version  string    `json:"version"`
	State    string    `json:"state"`
	Progress *float64  `json:"progress"`
	Error    string    `json:"error"`
	TS       time.Time `json:"ts"`
}

// otaCollector gathers retained OTA job states, and the kiosks' status
// through the fleet collector, whose settle logic ends the collection.
// Its handler only decodes and stores; it never blocks.
type otaCollector struct {
	fleet *collector
	mu    sync.Mutex
	jobs  map[string]*otaState
	errs  map[string][]string // payloads that did not decode
}

func newOTACollector() *otaCollector {
	return &otaCollector{fleet: newCollector(), jobs: map[string]*otaState{}, errs: map[string][]string{}}
}

func (c *otaCollector) handle(cl mqtt.Client, m mqtt.Message) {
	kiosk, suffix, ok := telemetry.SplitTopic(m.Topic())
	switch {
	case !ok:
		return
	case suffix == telemetry.TopicStatus:
		c.fleet.handle(cl, m)
		return
	case suffix != telemetry.TopicOTA || len(m.Payload()) == 0: // an empty payload clears a retained message
		return
	}
	var st otaState
	err := json.Unmarshal(m.Payload(), &st)
	c.mu.Lock()
	if err != nil {
		c.errs[kiosk] = append(c.errs[kiosk], fmt.Sprintf("%s: %v", suffix, err))
	} else {
		c.jobs[kiosk] = &st
	}
	c.mu.Unlock()
	if m.Retained() {
		select {
		case c.fleet.arrived <- struct{}{}:
		default:
		}
	}
}

// otaRow is one kiosk in `kioskctl ota status`.
type otaRow struct {
	Kiosk    string     `json:"kiosk"`
	Status   string     `json:"status"`            // online, offline or unknown (no status message)
	Running  string     `json:"running,omitempty"` // the version its status reports
	Job      string     `json:"job,omitempty"`
	Version  string     `json:"version,omitempty"` // the version the job installs
	State    string     `json:"state"`             // the job's state; "none" when the kiosk reported no job
	Progress *float64   `json:"progress"`
	Error    string     `json:"error,omitempty"`
	Updated  *time.Time `json:"updated,omitempty"`
	Errors   []string   `json:"errors,omitempty"`
}

type otaReport struct {
	At     time.Time      `json:"at"`
	Kiosks []otaRow       `json:"kiosks"`
	States map[string]int `json:"states"` // kiosks per job state
}

func (c *otaCollector) rows(now time.Time) otaReport {
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := map[string]bool{}
	for id := range c.fleet.kiosks {
		ids[id] = true
	}
	for id := range c.jobs {
		ids[id] = true
	}
	for id := range c.errs {
		ids[id] = true
	}
	rep := otaReport{At: now, Kiosks: make([]otaRow, 0, len(ids)), States: map[string]int{}}
	for id := range ids {
		r := otaRow{Kiosk: id, Status: "unknown", State: "none", Errors: c.errs[id]}
		if k := c.fleet.kiosks[id]; k != nil {
			r.Errors = append(r.Errors, k.errs...)
			if s := k.status; s != nil {
				r.Status, r.Running = s.State, s.Version
			}
		}
		if j := c.jobs[id]; j != nil {
			r.Job, r.Version, r.Progress, r.Error = j.Job, j.Version, j.Progress, j.Error
			if j.State != "" {
				r.State = j.State
			}
			if !j.TS.IsZero() {
				r.Updated = &j.TS
			}
		}
		rep.States[r.State]++
		rep.Kiosks = append(rep.Kiosks, r)
	}
	sort.Slice(rep.Kiosks, func(i, j int) bool { return rep.Kiosks[i].Kiosk < rep.Kiosks[j].Kiosk })
	return rep
}

func otaStatus(ctx context.Context, g *globals, args []string) int {
	const name = "ota status"
	fs := g.flags(name)
	limit := fs.Duration("wait", 3*time.Second, "collect retained messages for at most `D`")
	pos, ok := g.parse(fs, args)
	switch {
	case !ok:
		return 2
	case len(pos) > 0:
		return g.badUsage(name, "unexpected argument %q", pos[0])
	case *limit <= 0:
		return g.badUsage(name, "--wait must be positive")
	}
	col := newOTACollector()
	c, err := g.connect(ctx, session{clientID: "kioskctl-" + randomID(), clean: true})
	if err != nil {
		return g.fail("%v", err)
	}
	defer c.Disconnect(100)
	err = subscribe(ctx, c, col.handle, telemetry.Topic("+", telemetry.TopicOTA), telemetry.Topic("+", telemetry.TopicStatus))
	if err != nil {
		return g.fail("%v", err)
	}
	col.fleet.settle(ctx, *limit)
	rep := col.rows(clock())
	if g.json {
		if err := writeJSON(g.stdout, rep); err != nil {
			return g.fail("%v", err)
		}
		return 0
	}
	g.printOTAStatus(rep)
	return 0
}

// otaStateColour: green for a committed update, red for one that failed or
// rolled back, amber while one is under way.
func otaStateColour(r otaRow) string {
	switch {
	case r.Error != "" || r.State == "failed" || r.State == "rolled_back":
		return colRed
	case r.State == "committed":
		return colGreen
	case r.State == "none" || r.State == "idle":
		return colPlain
	}
	return colAmber
}

func (g *globals) printOTAStatus(rep otaReport) {
	tw := newTable(g.stdout)
	fmt.Fprintln(tw, "KIOSK\tSTATUS\tRUNNING\tJOB\tTARGET\t"+g.paint(colPlain, "STATE")+"\tPROGRESS\tUPDATED\tERROR")
	for _, r := range rep.Kiosks {
		progress, updated := "-", "-"
		if r.Progress != nil {
			progress = fmt.Sprintf("%.0f%%", *r.Progress)
		}
		if r.Updated != nil {
			updated = age(rep.At.Sub(*r.Updated)) + " ago"
		}
		errText := r.Error
		if len(r.Errors) > 0 {
			errText = strings.TrimSpace(errText + " (unreadable: " + strings.Join(r.Errors, "; ") + ")")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Kiosk, r.Status, orDash(r.Running), orDash(r.Job),
			orDash(r.Version), g.paint(otaStateColour(r), r.State), progress, updated, orDash(errText))
	}
	tw.Flush()
	states := make([]string, 0, len(rep.States))
	for s := range rep.States {
		states = append(states, s)
	}
	sort.Strings(states)
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = fmt.Sprintf("%d %s", rep.States[s], s)
	}
	summary := ""
	if len(parts) > 0 {
		summary = ": " + strings.Join(parts, ", ")
	}
	fmt.Fprintf(g.stdout, "%d kiosks%s\n", len(rep.Kiosks), summary)
}
