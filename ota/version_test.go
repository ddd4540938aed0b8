package ota

import (
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
		str  string // canonical form; "" means in
	}{
		{"1.2.3", Version{Major: 1, Minor: 2, Patch: 3}, ""},
		{"v1.2.3", Version{Major: 1, Minor: 2, Patch: 3}, "1.2.3"},
		{"0.0.0", Version{}, ""},
		{"10.20.30", Version{Major: 10, Minor: 20, Patch: 30}, ""},
		{"1.2.3-rc.1", Version{Major: 1, Minor: 2, Patch: 3, Pre: "rc.1"}, ""},
		{"1.2.3-alpha-beta.0", Version{Major: 1, Minor: 2, Patch: 3, Pre: "alpha-beta.0"}, ""},
		{"v1.2.0-3-g6747d14", Version{Major: 1, Minor: 2, Commits: 3, Commit: "6747d14"}, "1.2.0-3-g6747d14"},
		{"v1.2.0-3-g6747d14-dirty", Version{Major: 1, Minor: 2, Commits: 3, Commit: "6747d14", Dirty: true}, "1.2.0-3-g6747d14-dirty"},
		{"v1.2.0-0-g6747d14", Version{Major: 1, Minor: 2, Commit: "6747d14"}, "1.2.0-0-g6747d14"},
		{"v1.2.0-dirty", Version{Major: 1, Minor: 2, Dirty: true}, "1.2.0-dirty"},
		{"v1.2.1-rc.1-12-gdeadbeef", Version{Major: 1, Minor: 2, Patch: 1, Pre: "rc.1", Commits: 12, Commit: "deadbeef"}, "1.2.1-rc.1-12-gdeadbeef"},
		{"dev", Version{Dev: true}, ""},
		{"6747d14", Version{Dev: true, Commit: "6747d14"}, ""},
		{"6747d14-dirty", Version{Dev: true, Commit: "6747d14", Dirty: true}, ""},
		// A tag "v1.2.3-dirty" built dirty: the pre-release "dirty", then git's mark.
		{"1.2.3-dirty-dirty", Version{Major: 1, Minor: 2, Patch: 3, Pre: "dirty", Dirty: true}, ""},
		{"18446744073709551615.0.0", Version{Major: 1<<64 - 1}, ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			v, err := ParseVersion(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if v != tc.want {
				t.Fatalf("got %+v, want %+v", v, tc.want)
			}
			want := tc.str
			if want == "" {
				want = tc.in
			}
			if v.String() != want {
				t.Fatalf("String() = %q, want %q", v.String(), want)
			}
		})
	}
}

func TestParseVersionRefuses(t *testing.T) {
	for _, in := range []string{
		"", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "-1.2.3", "1.2.-3",
		"a.b.c", "1.2.3-", "1.2.3-rc..1", "1.2.3-rc.01", "1.2.3-rc_1", "1.2.3+build.5",
		"1.2.3-rc.1+build", "V1.2.3", "vv1.2.3", "18446744073709551616.0.0", "1.2.0-03-g6747d14",
		"dev-dirty", "DEV", "abc", "6747D14", "v6747d14", "1.2.3 ", " 1.2.3", "1.2.3\n",
		strings.Repeat("1", 129), "1.2.3-rc.1\x00",
	} {
		t.Run(in, func(t *testing.T) {
			v, err := ParseVersion(in)
			if err == nil {
				t.Fatalf("accepted as %+v", v)
			}
			if !strings.HasPrefix(err.Error(), "ota: version ") {
				t.Fatalf("error %q lacks the prefix", err)
			}
		})
	}
}

// TestCompareOrder checks every pair of an ordered list; versions in one
// group are equal.
func TestCompareOrder(t *testing.T) {
	order := [][]string{
		{"dev", "6747d14", "abcd1234-dirty"},
		{"0.0.0-alpha"},
		{"0.0.0"},
		{"0.9.9"},
		{"1.0.0-alpha"},
		{"1.0.0-alpha.1"},
		{"1.0.0-alpha.beta"},
		{"1.0.0-beta"},
		{"1.0.0-beta.2"},
		{"1.0.0-beta.11"},
		{"1.0.0-rc.1"},
		{"1.0.0-rc.1-2-gabcdef0"},
		{"1.0.0-rc.2"},
		{"1.0.0-dirty"},
		{"1.0.0", "v1.0.0", "1.0.0-0-gabcdef0"},
		{"1.0.0-1-gabcdef0-dirty"},
		{"1.0.0-1-gabcdef0", "1.0.0-1-g1234567"},
		{"1.0.0-2-gabcdef0"},
		{"1.0.0-10-gabcdef0"},
		{"1.0.1-rc.1"},
		{"1.0.1"},
		{"1.0.10"},
		{"1.2.0"},
		{"1.10.0"},
		{"2.0.0"},
		{"18446744073709551615.0.0"},
	}
	type item struct {
		s     string
		v     Version
		group int
	}
	var all []item
	for g, group := range order {
		for _, s := range group {
			v, err := ParseVersion(s)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, item{s, v, g})
		}
	}
	for _, a := range all {
		for _, b := range all {
			want := cmpUint(uint64(a.group), uint64(b.group))
			if got := Compare(a.v, b.v); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a.s, b.s, got, want)
			}
		}
	}
}

func TestVersionText(t *testing.T) {
	var v Version
	if err := v.UnmarshalText([]byte("v1.4.0-rc.2")); err != nil {
		t.Fatal(err)
	}
	b, _ := v.MarshalText()
	if string(b) != "1.4.0-rc.2" {
		t.Fatalf("MarshalText = %q", b)
	}
	if err := v.UnmarshalText([]byte("1.4")); err == nil {
		t.Fatal("UnmarshalText accepted 1.4")
	}
	if v.String() != "1.4.0-rc.2" {
		t.Fatalf("a failed UnmarshalText changed the version to %s", v)
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.2.3", "v1.2.3-rc.1", "v1.2.0-3-g6747d14-dirty", "dev", "6747d14", "1.0.0-alpha.beta.11", "1.2.3-rc.1-2-gabc-dirty", "0.0.0-0"} {
		f.Add(s, "1.2.3")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, errA := ParseVersion(a)
		vb, errB := ParseVersion(b)
		if errA == nil {
			again, err := ParseVersion(va.String())
			if err != nil || again != va {
				t.Fatalf("%q parsed as %+v, whose String %q parses as %+v (%v)", a, va, va.String(), again, err)
			}
			if Compare(va, va) != 0 {
				t.Fatalf("%q is not equal to itself", a)
			}
		}
		if errA == nil && errB == nil {
			if ab, ba := Compare(va, vb), Compare(vb, va); ab != -ba {
				t.Fatalf("Compare(%q, %q) = %d but Compare(%q, %q) = %d", a, b, ab, b, a, ba)
			}
		}
	})
}
