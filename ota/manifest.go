package ota

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors Open and Check return, each wrapped with the detail; test them
// with errors.Is. All of them mean "do not install this".
var (
	// ErrMalformed: the envelope or the manifest inside it is not what
	// kioskctl ota sign writes.
	ErrMalformed = errors.New("ota: malformed manifest")
	// ErrUnsigned: the envelope carries no signature at all.
	ErrUnsigned = errors.New("ota: manifest is not signed")
	// ErrUnknownKey: no signature is by a key in the trust store.
	ErrUnknownKey = errors.New("ota: manifest is not signed by a trusted key")
	// ErrBadSignature: a signature by a trusted key does not verify, so
	// the manifest or the signature was altered.
	ErrBadSignature = errors.New("ota: bad manifest signature")
	// ErrWrongBoard: the release is not built for this kiosk's board.
	ErrWrongBoard = errors.New("ota: release is for another board")
	// ErrDowngrade: the release is not newer than what runs, and the
	// manifest is not forced.
	ErrDowngrade = errors.New("ota: release is not newer than the running version")
	// ErrTooOld: the running version is older than the release's
	// min_version; an intermediate release must be installed first.
	ErrTooOld = errors.New("ota: running version is too old for this release")
)

// Kind says what an artifact replaces, and so which installer takes it.
type Kind string

const (
	// KindBinary is a kioskd binary, installed into the A/B binary slots.
	KindBinary Kind = "binary"
	// KindImage is a full Raspberry Pi OS image, installed through tryboot.
	KindImage Kind = "image"
)

// Bounds on what a manifest may describe and how large the documents are.
const (
	// MaxEnvelopeSize bounds a signed envelope; read no more than this.
	MaxEnvelopeSize = 128 << 10
	// maxManifestSize bounds the manifest inside; base64 makes it 4/3
	// larger in the envelope.
	maxManifestSize = 64 << 10
	maxSignatures   = 8
	maxBoards       = 32
	maxURLLen       = 2048
	// A kioskd binary is tens of MB; an image a few GB.
	maxBinarySize int64 = 1 << 30
	maxImageSize  int64 = 64 << 30
)

// signingDomain prefixes the manifest bytes that are signed, so a
// signature made with an OTA key for anything else never passes as a
// manifest signature, and this one never passes for anything else.
const signingDomain = "kioskd-ota-manifest-v1\n"

// Manifest describes one release artifact. On the wire it is JSON:
//
//	{"version":"1.4.0","boards":["rpi4b","cm4"],"kind":"binary",
//	 "sha256":"<64 hex>","size":31457280,"url":"https://…/kioskd-1.4.0",
//	 "min_version":"1.0.0","force":false,"created":"2026-03-01T10:00:00Z",
//	 "delta":{"base_version":"1.3.2","base_sha256":"<64 hex>",
//	          "sha256":"<64 hex>","size":81920,"url":"https://…"}}
//
// min_version, force, created and delta are optional; kind defaults to
// "binary". "board":"rpi4b" is accepted for "boards":["rpi4b"] (the
// DESIGN.md spelling); one of the two is required, and there is no
// wildcard: a release names every board it was tested on.
type Manifest struct {
	Version Version  `json:"version"`
	Boards  []string `json:"boards"`
	Kind    Kind     `json:"kind"`
	// SHA256 (lowercase hex) and Size are of the artifact at URL.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// URL is http or https: the signed SHA256 protects the artifact, so
	// plain HTTP caches and mirrors are safe to use.
	URL string `json:"url"`
	// MinVersion is the oldest running version that may install this
	// release directly (say, one that migrated its state format); nil
	// means any. Dev builds are exempt (see Check).
	MinVersion *Version `json:"min_version,omitempty"`
	// Force allows installing a release that is not newer than what runs:
	// a downgrade or a reinstall.
	Force   bool      `json:"force,omitempty"`
	Created time.Time `json:"created,omitzero"`
	Delta   *Delta    `json:"delta,omitempty"`
}

// Delta is a zstd patch that rebuilds the artifact from the one a kiosk
// already runs. The rebuilt artifact is checked against the manifest's
// SHA256 and Size like a full download; on any mismatch the kiosk falls
// back to the full artifact.
type Delta struct {
	// BaseVersion and BaseSHA256 name the artifact the patch applies to;
	// a kiosk uses the delta only when its running artifact hashes to
	// BaseSHA256.
	BaseVersion Version `json:"base_version"`
	BaseSHA256  string  `json:"base_sha256"`
	// SHA256, Size and URL are of the patch itself.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	URL    string `json:"url"`
}

// The wire forms, with strings where a field must be checked by hand.
type manifestWire struct {
	Version    string     `json:"version"`
	Board      *string    `json:"board"`
	Boards     []string   `json:"boards"`
	Kind       string     `json:"kind"`
	SHA256     string     `json:"sha256"`
	Size       int64      `json:"size"`
	URL        string     `json:"url"`
	MinVersion *string    `json:"min_version"`
	Force      bool       `json:"force"`
	Created    time.Time  `json:"created"`
	Delta      *deltaWire `json:"delta"`
}

type deltaWire struct {
	BaseVersion string `json:"base_version"`
	BaseSHA256  string `json:"base_sha256"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	URL         string `json:"url"`
}

var (
	manifestFields = []string{"version", "board", "boards", "kind", "sha256", "size", "url", "min_version", "force", "created", "delta"}
	deltaFields    = []string{"base_version", "base_sha256", "sha256", "size", "url"}
)

// ParseManifest decodes and checks a manifest. It is strict, because the
// kiosk acts on what it reads: unknown, misspelt or repeated fields,
// missing ones, sizes out of bounds, hashes that are not 64 hex digits,
// URLs that are not http(s) and versions that are not one release are all
// ErrMalformed.
func ParseManifest(b []byte) (Manifest, error) {
	m, err := parseManifest(b)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %s", ErrMalformed, err)
	}
	return m, nil
}

// UnmarshalJSON decodes as strictly as ParseManifest.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	v, err := ParseManifest(b)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

func parseManifest(b []byte) (Manifest, error) {
	if len(b) > maxManifestSize {
		return Manifest{}, fmt.Errorf("%d bytes, more than %d", len(b), maxManifestSize)
	}
	var w manifestWire
	fields, err := strictDecode(b, &w, manifestFields)
	if err != nil {
		return Manifest{}, err
	}
	if raw, ok := fields["delta"]; ok && !isNull(raw) {
		if _, err := strictDecode(raw, new(deltaWire), deltaFields); err != nil {
			return Manifest{}, fmt.Errorf("delta: %s", err)
		}
	}
	var m Manifest
	if m.Version, err = releaseVersion("version", w.Version); err != nil {
		return Manifest{}, err
	}
	switch {
	case w.Board != nil && w.Boards != nil:
		return Manifest{}, errors.New(`both "board" and "boards": give one`)
	case w.Board != nil:
		m.Boards = []string{*w.Board}
	default:
		m.Boards = w.Boards
	}
	if err := checkBoards(m.Boards); err != nil {
		return Manifest{}, err
	}
	switch Kind(w.Kind) {
	case "", KindBinary:
		m.Kind = KindBinary
	case KindImage:
		m.Kind = KindImage
	default:
		return Manifest{}, fmt.Errorf("kind %.20q: want %q or %q", w.Kind, KindBinary, KindImage)
	}
	maxSize := maxBinarySize
	if m.Kind == KindImage {
		maxSize = maxImageSize
	}
	if m.SHA256, err = checkSHA256("sha256", w.SHA256); err != nil {
		return Manifest{}, err
	}
	if m.Size, err = checkSize("size", w.Size, maxSize); err != nil {
		return Manifest{}, err
	}
	if m.URL, err = checkURL("url", w.URL); err != nil {
		return Manifest{}, err
	}
	if w.MinVersion != nil {
		mv, err := releaseVersion("min_version", *w.MinVersion)
		if err != nil {
			return Manifest{}, err
		}
		if Compare(mv, m.Version) > 0 {
			return Manifest{}, fmt.Errorf("min_version %s is newer than the release %s itself", mv, m.Version)
		}
		m.MinVersion = &mv
	}
	m.Force, m.Created = w.Force, w.Created
	if d := w.Delta; d != nil {
		var md Delta
		if md.BaseVersion, err = releaseVersion("delta.base_version", d.BaseVersion); err != nil {
			return Manifest{}, err
		}
		if md.BaseSHA256, err = checkSHA256("delta.base_sha256", d.BaseSHA256); err != nil {
			return Manifest{}, err
		}
		if md.SHA256, err = checkSHA256("delta.sha256", d.SHA256); err != nil {
			return Manifest{}, err
		}
		if md.Size, err = checkSize("delta.size", d.Size, maxSize); err != nil {
			return Manifest{}, err
		}
		if md.URL, err = checkURL("delta.url", d.URL); err != nil {
			return Manifest{}, err
		}
		m.Delta = &md
	}
	return m, nil
}

// strictDecode decodes one JSON object into v, refusing what
// encoding/json lets through: repeated keys (the last would win), keys
// that match a field only case-insensitively, unknown keys, invalid UTF-8
// (silently replaced otherwise) and anything after the object. It checks
// only the outer object's keys and returns its fields, raw, so the caller
// can check nested objects in turn.
func strictDecode(b []byte, v any, allowed []string) (map[string]json.RawMessage, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("not UTF-8")
	}
	if err := checkJSONKeys(b); err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, errors.New("not a JSON object")
	}
	if fields == nil {
		return nil, errors.New("null, not a JSON object")
	}
	for k := range fields {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("unknown field %.40q", k)
		}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, jsonError(err)
	}
	return fields, nil
}

// checkJSONKeys walks b, which must be exactly one JSON value, and
// refuses an object that repeats a key.
func checkJSONKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := walkJSON(dec, 0); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func walkJSON(dec *json.Decoder, depth int) error {
	if depth > 16 {
		return errors.New("nested too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := t.(string)
			if seen[key] {
				return fmt.Errorf("field %.40q repeated", key)
			}
			seen[key] = true
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	case json.Delim('['):
		for dec.More() {
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	}
	return err
}

// jsonError shortens decoding errors to what an operator can act on.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q: %s is the wrong type", te.Field, te.Value)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated JSON")
	}
	return fmt.Errorf("bad JSON: %s", err)
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// releaseVersion parses a manifest's version field, which must name one
// build: not a dev build, not a dirty tree.
func releaseVersion(field, s string) (Version, error) {
	if s == "" {
		return Version{}, fmt.Errorf("%s missing", field)
	}
	v, err := parseVersion(s)
	if err != nil {
		return Version{}, fmt.Errorf("%s %.40q: %s", field, s, err)
	}
	if !v.release() {
		return Version{}, fmt.Errorf("%s %q is a dev or dirty build, which names no one build", field, s)
	}
	return v, nil
}

func checkBoards(boards []string) error {
	if len(boards) == 0 {
		return errors.New("boards missing")
	}
	if len(boards) > maxBoards {
		return fmt.Errorf("%d boards, more than %d", len(boards), maxBoards)
	}
	for i, b := range boards {
		if !validBoard(b) {
			return fmt.Errorf("board %.40q: want lowercase letters, digits, '-' or '_', at most 32", b)
		}
		if slices.Contains(boards[:i], b) {
			return fmt.Errorf("board %q listed twice", b)
		}
	}
	return nil
}

// validBoard accepts board profile names such as rpi4b, rpizero2w, cm4.
func validBoard(b string) bool {
	if b == "" || len(b) > 32 {
		return false
	}
	for _, c := range []byte(b) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// checkSHA256 accepts 64 hex digits in either case and returns them in
// lowercase, as sha256sum prints them.
func checkSHA256(field, s string) (string, error) {
	if len(s) != 64 {
		return "", fmt.Errorf("%s: %d characters, want 64 hex digits", field, len(s))
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("%s: not hex", field)
	}
	return strings.ToLower(s), nil
}

func checkSize(field string, n, max int64) (int64, error) {
	if n <= 0 {
		return 0, fmt.Errorf("%s %d: must be positive", field, n)
	}
	if n > max {
		return 0, fmt.Errorf("%s %d: more than %d", field, n, max)
	}
	return n, nil
}

// checkURL wants an absolute http or https URL with a host and no
// credentials: a manifest is published to the whole fleet.
func checkURL(field, s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%s missing", field)
	}
	if len(s) > maxURLLen {
		return "", fmt.Errorf("%s: longer than %d", field, maxURLLen)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fmt.Errorf("%s: contains spaces or control characters", field)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%s: %s", field, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%s %.60q: want http or https", field, s)
	case u.Host == "":
		return "", fmt.Errorf("%s %.60q: no host", field, s)
	case u.User != nil:
		return "", fmt.Errorf("%s: must not carry credentials", field)
	}
	return s, nil
}

// The signed envelope, what travels:
//
//	{"manifest":"<base64 of the manifest JSON bytes>",
//	 "signatures":[{"key_id":"<KeyID>","sig":"<base64 ed25519>"}]}
//
// Each sig is ed25519 over signingDomain followed by the manifest bytes.
// The manifest travels as the exact bytes signed, so no re-encoding can
// change what was signed; several signatures let a key be rotated.
type envelopeWire struct {
	Manifest   string          `json:"manifest"`
	Signatures []signatureWire `json:"signatures"`
}

type signatureWire struct {
	KeyID string `json:"key_id"`
	Sig   string `json:"sig"`
}

var (
	envelopeFields  = []string{"manifest", "signatures"}
	signatureFields = []string{"key_id", "sig"}
	b64             = base64.StdEncoding.Strict()
)

// Sign checks manifest with ParseManifest, so nothing a kiosk would refuse
// gets signed, and returns the envelope signed by each key (old and new
// during a key rotation).
func Sign(manifest []byte, keys ...ed25519.PrivateKey) ([]byte, error) {
	if len(keys) == 0 {
		return nil, errors.New("ota: sign: no signing key")
	}
	if len(keys) > maxSignatures {
		return nil, fmt.Errorf("ota: sign: %d keys, at most %d", len(keys), maxSignatures)
	}
	if _, err := ParseManifest(manifest); err != nil {
		return nil, fmt.Errorf("ota: sign: %w", err)
	}
	msg := signedMessage(manifest)
	env := envelopeWire{Manifest: b64.EncodeToString(manifest)}
	for i, k := range keys {
		if err := checkPrivateKey(k); err != nil {
			return nil, fmt.Errorf("ota: sign: key %d: %w", i, err)
		}
		id := KeyID(k.Public().(ed25519.PublicKey))
		if slices.ContainsFunc(env.Signatures, func(s signatureWire) bool { return s.KeyID == id }) {
			return nil, fmt.Errorf("ota: sign: key %s given twice", id)
		}
		env.Signatures = append(env.Signatures, signatureWire{KeyID: id, Sig: b64.EncodeToString(ed25519.Sign(k, msg))})
	}
	return json.Marshal(env)
}

func signedMessage(manifest []byte) []byte {
	return append([]byte(signingDomain), manifest...)
}

// Open verifies a signed envelope against the trust store and returns the
// manifest, its exact signed bytes, and the id of the trusted key that
// signed it. Signatures by keys the store does not hold are ignored (a
// kiosk may not know a rotation's new key yet), but every signature by a
// trusted key must verify. The manifest is parsed only once a signature
// holds.
func Open(envelope []byte, store *TrustStore) (m Manifest, raw []byte, keyID string, err error) {
	env, err := parseEnvelope(envelope)
	if err != nil {
		return Manifest{}, nil, "", err
	}
	raw, err = b64.DecodeString(env.Manifest)
	if err != nil {
		return Manifest{}, nil, "", fmt.Errorf("%w: manifest is not base64", ErrMalformed)
	}
	if len(raw) == 0 || len(raw) > maxManifestSize {
		return Manifest{}, nil, "", fmt.Errorf("%w: manifest is %d bytes", ErrMalformed, len(raw))
	}
	msg := signedMessage(raw)
	var unknown []string
	for _, s := range env.Signatures {
		pub, ok := store.lookup(s.KeyID)
		if !ok {
			unknown = append(unknown, s.KeyID)
			continue
		}
		sig, _ := b64.DecodeString(s.Sig) // checked by parseEnvelope
		if !ed25519.Verify(pub, msg, sig) {
			return Manifest{}, nil, "", fmt.Errorf("%w: the signature by trusted key %s does not match the manifest", ErrBadSignature, s.KeyID)
		}
		if keyID == "" {
			keyID = s.KeyID
		}
	}
	if keyID == "" {
		trusted := "none"
		if ids := store.KeyIDs(); len(ids) > 0 {
			trusted = strings.Join(ids, ", ")
		}
		return Manifest{}, nil, "", fmt.Errorf("%w: signed by %s; this kiosk trusts %s", ErrUnknownKey, strings.Join(unknown, ", "), trusted)
	}
	m, err = ParseManifest(raw)
	if err != nil {
		return Manifest{}, nil, "", fmt.Errorf("%w (signed by trusted key %s)", err, keyID)
	}
	return m, raw, keyID, nil
}

func parseEnvelope(b []byte) (envelopeWire, error) {
	var env envelopeWire
	bad := func(format string, a ...any) (envelopeWire, error) {
		return envelopeWire{}, fmt.Errorf("%w: envelope: "+format, append([]any{ErrMalformed}, a...)...)
	}
	if len(b) > MaxEnvelopeSize {
		return bad("%d bytes, more than %d", len(b), MaxEnvelopeSize)
	}
	fields, err := strictDecode(b, &env, envelopeFields)
	if err != nil {
		if looksLikeManifest(b) {
			return envelopeWire{}, fmt.Errorf("%w: this is a bare manifest; sign it with kioskctl ota sign", ErrUnsigned)
		}
		return bad("%s", err)
	}
	if raw, ok := fields["signatures"]; ok && !isNull(raw) {
		var sigs []json.RawMessage
		if err := json.Unmarshal(raw, &sigs); err != nil {
			return bad("signatures: not a list")
		}
		for i, s := range sigs {
			if _, err := strictDecode(s, new(signatureWire), signatureFields); err != nil {
				return bad("signature %d: %s", i, err)
			}
		}
	}
	if env.Manifest == "" {
		return bad("manifest missing")
	}
	if len(env.Signatures) == 0 {
		return envelopeWire{}, fmt.Errorf("%w: the envelope has no signatures", ErrUnsigned)
	}
	if len(env.Signatures) > maxSignatures {
		return bad("%d signatures, at most %d", len(env.Signatures), maxSignatures)
	}
	for i, s := range env.Signatures {
		if len(s.KeyID) != 16 || !isHash(s.KeyID) {
			return bad("signature %d: key_id %.40q is not 16 lowercase hex digits", i, s.KeyID)
		}
		if slices.ContainsFunc(env.Signatures[:i], func(o signatureWire) bool { return o.KeyID == s.KeyID }) {
			return bad("key %s signed twice", s.KeyID)
		}
		if sig, err := b64.DecodeString(s.Sig); err != nil || len(sig) != ed25519.SignatureSize {
			return bad("signature %d: sig is not %d bytes of base64", i, ed25519.SignatureSize)
		}
	}
	return env, nil
}

// looksLikeManifest tells a bare manifest sent where an envelope belongs,
// for a clearer refusal than "unknown field".
func looksLikeManifest(b []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(b, &probe) != nil {
		return false
	}
	_, hasVersion := probe["version"]
	_, hasManifest := probe["manifest"]
	return hasVersion && !hasManifest
}

// Check decides whether a verified manifest may be installed on this
// kiosk: built for its board, not older than what runs unless forced, and
// installable from the running version. Force never overrides the board
// or min_version. A dev build is older than every release and is not held
// to min_version, so any signed release for the board installs on it.
func Check(m Manifest, board string, running Version) error {
	if !slices.Contains(m.Boards, board) {
		return fmt.Errorf("%w: release %s is built for %s; this kiosk is %q", ErrWrongBoard, m.Version, strings.Join(m.Boards, ", "), board)
	}
	if m.MinVersion != nil && !running.Dev && Compare(running, *m.MinVersion) < 0 {
		return fmt.Errorf("%w: release %s installs only over %s or newer, and this kiosk runs %s; install %s (or later) first",
			ErrTooOld, m.Version, m.MinVersion, running, m.MinVersion)
	}
	if c := Compare(m.Version, running); c <= 0 && !m.Force {
		what := "older than"
		if c == 0 {
			what = "the same as"
		}
		return fmt.Errorf("%w: release %s is %s the running %s; a downgrade or reinstall needs a manifest signed with force",
			ErrDowngrade, m.Version, what, running)
	}
	return nil
}
