package ota

import (
	"fmt"
	"strconv"
	"strings"
)

// maxVersionLen bounds a version string; real ones are under 40 bytes.
const maxVersionLen = 128

// Version is what a kioskd build calls itself: a release ("1.4.0",
// "1.4.0-rc.1"), a build some commits past a release tag as `git describe`
// names it ("1.4.0-3-g6747d14", "-dirty" when the tree had uncommitted
// changes), or an unversioned dev build ("dev", or a bare commit hash when
// the repository has no tag yet).
//
// Versions are comparable with ==; order them with Compare.
type Version struct {
	Major, Minor, Patch uint64
	// Pre is the semver pre-release ("rc.1"), empty for a release.
	Pre string
	// Commits counts the commits past the tag, from git describe.
	Commits uint64
	// Commit is the abbreviated commit hash from git describe, or a dev
	// build's bare hash. It does not take part in ordering.
	Commit string
	// Dirty marks a build from a tree with uncommitted changes.
	Dirty bool
	// Dev marks an unversioned build: "dev" or a bare commit hash.
	Dev bool
}

// ParseVersion reads "1.2.3", "v1.2.3", "1.2.3-rc.1", a git describe
// string such as "v1.2.0-3-g6747d14" or "v1.2.0-3-g6747d14-dirty", and
// the dev builds "dev", "6747d14" and "6747d14-dirty" (what the Makefile's
// `git describe --always --dirty` gives in a repository without tags).
//
// A trailing "-<n>-g<hex>" is always read as git describe's, never as a
// semver pre-release, and a trailing "-dirty" as git's dirty mark. Build
// metadata ("+…") is refused: git describe would put its suffix after it,
// where semver cannot tell the two apart.
func ParseVersion(s string) (Version, error) {
	v, err := parseVersion(s)
	if err != nil {
		return Version{}, fmt.Errorf("ota: version %.40q: %s", s, err)
	}
	return v, nil
}

func parseVersion(s string) (Version, error) {
	switch {
	case s == "":
		return Version{}, errString("empty")
	case len(s) > maxVersionLen:
		return Version{}, errString("too long")
	case s == "dev":
		return Version{Dev: true}, nil
	}
	var v Version
	rest, dirty := strings.CutSuffix(s, "-dirty")
	v.Dirty = dirty
	if isHash(rest) {
		v.Dev, v.Commit = true, rest
		return v, nil
	}
	rest = strings.TrimPrefix(rest, "v")

	// git describe: <tag>-<commits>-g<hash>.
	if i := strings.LastIndexByte(rest, '-'); i >= 0 && strings.HasPrefix(rest[i+1:], "g") && isHash(rest[i+2:]) {
		if j := strings.LastIndexByte(rest[:i], '-'); j >= 0 && isDigits(rest[j+1:i]) {
			n, err := parseNumber(rest[j+1 : i])
			if err != nil {
				return Version{}, fmt.Errorf("commit count: %s", err)
			}
			v.Commits, v.Commit = n, rest[i+2:]
			rest = rest[:j]
		}
	}

	core, pre, hasPre := strings.Cut(rest, "-")
	if strings.ContainsRune(core, '+') || strings.ContainsRune(pre, '+') {
		return Version{}, errString("build metadata (+…) is not supported")
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return Version{}, errString("want MAJOR.MINOR.PATCH")
	}
	var nums [3]uint64
	for i, p := range parts {
		n, err := parseNumber(p)
		if err != nil {
			return Version{}, fmt.Errorf("%s number: %s", [...]string{"major", "minor", "patch"}[i], err)
		}
		nums[i] = n
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	if hasPre {
		if err := checkPre(pre); err != nil {
			return Version{}, err
		}
		v.Pre = pre
	}
	return v, nil
}

// checkPre enforces semver's pre-release grammar: dot-separated,
// non-empty identifiers of [0-9A-Za-z-], numeric ones without leading
// zeros.
func checkPre(pre string) error {
	for id := range strings.SplitSeq(pre, ".") {
		if id == "" {
			return errString("empty pre-release identifier")
		}
		for _, c := range []byte(id) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return fmt.Errorf("pre-release %q: character %q not allowed", id, c)
			}
		}
		if isDigits(id) && len(id) > 1 && id[0] == '0' {
			return fmt.Errorf("pre-release %q: leading zero", id)
		}
	}
	return nil
}

// parseNumber reads a decimal number without sign or leading zeros.
func parseNumber(s string) (uint64, error) {
	if !isDigits(s) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return n, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isHash reports whether s looks like a git commit hash as git prints one:
// 4 to 64 lowercase hex digits (SHA-1 or SHA-256 repositories).
func isHash(s string) bool {
	if len(s) < 4 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// String gives the canonical form, without a leading "v":
// "1.2.0-rc.1-3-g6747d14-dirty", "dev" or "6747d14-dirty".
func (v Version) String() string {
	var b strings.Builder
	switch {
	case v.Dev && v.Commit == "":
		b.WriteString("dev")
	case v.Dev:
		b.WriteString(v.Commit)
	default:
		fmt.Fprintf(&b, "%d.%d.%d", v.Major, v.Minor, v.Patch)
		if v.Pre != "" {
			b.WriteString("-" + v.Pre)
		}
		if v.Commit != "" {
			fmt.Fprintf(&b, "-%d-g%s", v.Commits, v.Commit)
		}
	}
	if v.Dirty {
		b.WriteString("-dirty")
	}
	return b.String()
}

// MarshalText writes the canonical form, so a Version is a JSON string.
func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText parses like ParseVersion.
func (v *Version) UnmarshalText(b []byte) error {
	w, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = w
	return nil
}

// release reports whether v names one build unambiguously, as a manifest
// must: not a dev build and not from a dirty tree.
func (v Version) release() bool { return !v.Dev && !v.Dirty }

// Compare orders versions: -1 if a is older than b, 0 if neither is newer,
// +1 if a is newer.
//
// Releases follow semver precedence (1.2.0-rc.1 < 1.2.0 < 1.2.1). A git
// describe build comes after its tag and before the next release
// (1.2.0 < 1.2.0-3-g… < 1.2.0-4-g… < 1.2.1-rc.1). A dirty build comes just
// before the same clean build, so the clean, signed one replaces it.
// Commit hashes are not compared: two builds the same distance past the
// same tag are equal here, and neither counts as an upgrade of the other.
//
// Dev builds ("dev" or a bare hash) are older than every release and equal
// to each other, so any signed release installs on a dev build.
func Compare(a, b Version) int {
	switch {
	case a.Dev || b.Dev:
		return cmpBool(!a.Dev, !b.Dev)
	case a.Major != b.Major:
		return cmpUint(a.Major, b.Major)
	case a.Minor != b.Minor:
		return cmpUint(a.Minor, b.Minor)
	case a.Patch != b.Patch:
		return cmpUint(a.Patch, b.Patch)
	}
	if c := comparePre(a.Pre, b.Pre); c != 0 {
		return c
	}
	if a.Commits != b.Commits {
		return cmpUint(a.Commits, b.Commits)
	}
	return cmpBool(!a.Dirty, !b.Dirty)
}

// comparePre is semver §11: no pre-release beats any; identifiers compare
// numerically when both are numbers, numbers sort before words, words
// compare in ASCII order, and a longer list wins a tie.
func comparePre(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, y := as[i], bs[i]
		xn, yn := isDigits(x), isDigits(y)
		switch {
		case xn && yn:
			// No leading zeros, so the longer number is the larger.
			if len(x) != len(y) {
				return cmpUint(uint64(len(x)), uint64(len(y)))
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		case xn != yn:
			return cmpBool(!xn, !yn)
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return cmpUint(uint64(len(as)), uint64(len(bs)))
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case b:
		return -1
	}
	return 1
}

type errString string

func (e errString) Error() string { return string(e) }
