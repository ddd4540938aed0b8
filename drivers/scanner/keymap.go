package scanner

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// keymap is a keyboard layout: the characters a key types at its three
// levels (plain, Shift, AltGr), as xkeyboard-config's symbols files give
// them. A scanner in keyboard-wedge mode is set to a layout and types
// each character with the keys that layout needs; the host must decode
// with the same layout.
type keymap struct {
	name   string
	keys   map[uint16][3]rune // 0 where the level has no character (or a dead key)
	typing map[rune]stroke    // how to type a character, for the emulator
}

// stroke is one key press with its modifiers.
type stroke struct {
	key          uint16
	shift, altgr bool
}

var (
	usLayout = newKeymap("us", usKeys)
	layouts  = map[string]*keymap{"us": usLayout, "fr": newKeymap("fr", frKeys)}
)

// Layouts returns the names of the keyboard layouts HIDOpts.Layout and
// KeyboardOpts.Layout accept.
func Layouts() []string {
	names := make([]string, 0, len(layouts))
	for n := range layouts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func layoutByName(name string) (*keymap, error) {
	if name == "" {
		return usLayout, nil
	}
	if k, ok := layouts[name]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("scanner: unknown keyboard layout %q (have %s)", name, strings.Join(Layouts(), ", "))
}

// usKeys is xkeyboard-config symbols/us, "basic".
func usKeys(m map[uint16][3]rune) {
	row(m, key1, "1234567890-=", "!@#$%^&*()_+", "")
	row(m, keyQ, "qwertyuiop[]", "QWERTYUIOP{}", "")
	row(m, keyA, "asdfghjkl;'`", "ASDFGHJKL:\"~", "")
	row(m, keyBackslash, `\`, "|", "")
	row(m, keyZ, "zxcvbnm,./", "ZXCVBNM<>?", "")
}

// frKeys is xkeyboard-config symbols/fr, "basic" (AZERTY): the digits
// need Shift. Dead keys and the AltGr characters it takes from "latin"
// are left out.
func frKeys(m map[uint16][3]rune) {
	row(m, key1, `&é"'(-è_çà)=`, "1234567890°+", "¹~#{[|`\\^@]}")
	row(m, keyQ, "azertyuiop\x00$", "AZERTYUIOP\x00£", "æ«€\x00\x00\x00\x00\x00\x00\x00\x00¤")
	row(m, keyA, "qsdfghjklmù²", "QSDFGHJKLM%~", "@\x00\x00\x00\x00\x00\x00\x00\x00µ\x00¬")
	row(m, keyBackslash, "*", "µ", "")
	row(m, key102nd, "<", ">", "")
	row(m, keyZ, "wxcvbn,;:!", "WXCVBN?./§", "ł\x00\x00\x00\x00\x00\x00•·\x00")
}

// row sets consecutive keys from first: the i-th character of each level
// string goes to key first+i. An empty string leaves the level empty.
func row(m map[uint16][3]rune, first uint16, levels ...string) {
	for l, s := range levels {
		for i, r := range []rune(s) {
			k := m[first+uint16(i)]
			k[l] = r
			m[first+uint16(i)] = k
		}
	}
}

func newKeymap(name string, fill func(map[uint16][3]rune)) *keymap {
	k := &keymap{name: name, keys: map[uint16][3]rune{}, typing: map[rune]stroke{}}
	fill(k.keys)
	k.keys[keySpace] = [3]rune{' ', ' '}
	codes := make([]uint16, 0, len(k.keys))
	for c := range k.keys {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		for l, r := range k.keys[c] {
			if _, dup := k.typing[r]; r != 0 && !dup {
				k.typing[r] = stroke{key: c, shift: l == 1, altgr: l == 2}
			}
		}
	}
	// The keypad types the same in every layout (with Num Lock on, which
	// scanners that use it assume); the emulator types on the main keys.
	row(k.keys, keyKP7, "789-456+1230.")
	k.keys[keyKPAsterisk] = [3]rune{'*'}
	k.keys[keyKPSlash] = [3]rune{'/'}
	return k
}

// char returns the character key types with the given modifiers; false
// when it types none. Caps Lock shifts letters only.
func (k *keymap) char(key uint16, shift, altgr, caps bool) (rune, bool) {
	lv, ok := k.keys[key]
	if !ok {
		return 0, false
	}
	letter := unicode.IsLetter(lv[0]) && unicode.ToUpper(lv[0]) == lv[1] && lv[0] != lv[1]
	var r rune
	switch {
	case altgr:
		r = lv[2]
	case shift != (caps && letter):
		r = lv[1]
	default:
		r = lv[0]
	}
	return r, r != 0
}
