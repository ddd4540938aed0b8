package transport

import "testing"

func TestPortStatus(t *testing.T) {
	for _, tc := range []struct {
		s                      PortStatus
		paper, selected, fault bool
		text                   string
	}{
		{0x18, false, true, false, "selected"},                   // ready
		{0x38, true, true, false, "paper empty, selected"},       // paper out, still on line
		{0x30, true, true, true, "paper empty, selected, fault"}, // paper out, nError low
		{0x08, false, false, false, "not selected"},              // off line
		{0x00, false, false, true, "not selected, fault"},        // nothing answers
		{0xdf, false, true, false, "selected"},                   // reserved bits ignored
	} {
		t.Run(tc.text, func(t *testing.T) {
			if tc.s.PaperEmpty() != tc.paper || tc.s.Selected() != tc.selected || tc.s.Fault() != tc.fault {
				t.Errorf("%#02x: paper empty %v, selected %v, fault %v", byte(tc.s), tc.s.PaperEmpty(), tc.s.Selected(), tc.s.Fault())
			}
			if got := tc.s.String(); got != tc.text {
				t.Errorf("String = %q, want %q", got, tc.text)
			}
		})
	}
}
