package telemetry

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microretail/kioskd/firmware/till"
)

// menuStore is a ConfigStore applying to a till catalog as kioskd does.
func menuStore(t *testing.T, path string, cat **till.Catalog) (*ConfigStore, error) {
	t.Helper()
	return OpenConfigStore(path, func(d DesiredConfig) (func(), error) {
		m, err := d.Menu((*cat).Menu())
		if err != nil {
			return nil, err
		}
		c, err := till.BuildCatalog(m)
		if err != nil {
			return nil, err
		}
		return func() { *cat = c }, nil
	})
}

func TestConfigVersionsApplyAtomicallyAndPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	cat, _ := till.BuildCatalog(till.Menu{Products: []till.Product{{SKU: "CHAI", Name: "Chai", Price: 8000}}})
	s, err := menuStore(t, path, &cat)
	if err != nil {
		t.Fatal(err)
	}
	offer := func(args string) (map[string]any, error) {
		t.Helper()
		data, err := s.Offer(json.RawMessage(args))
		m, _ := data.(map[string]any)
		return m, err
	}
	if m, err := offer(`{"version":2,"prices":{"CHAI":9000}}`); err != nil || m["applied"] != true {
		t.Fatalf("v2: %v %v", m, err)
	}
	if p, _ := cat.BySKU("CHAI"); p.Price != 9000 {
		t.Fatalf("price %d after v2", p.Price)
	}
	// Older and equal versions change nothing.
	for _, v := range []string{`{"version":1,"prices":{"CHAI":1}}`, `{"version":2,"prices":{"CHAI":1}}`} {
		if m, err := offer(v); err != nil || m["applied"] != false {
			t.Fatalf("%s: %v %v", v, m, err)
		}
	}
	// A config that fails part-way applies none of it: the catalog and the
	// held version stay as they were.
	for _, bad := range []string{
		`{"version":3,"catalog":[{"sku":"A","name":"A","price":100},{"sku":"A","name":"again","price":100}]}`,
		`{"version":3,"prices":{"NOPE":100}}`,
		`{"version":3,"power":{"low_soc":10,"critical_soc":20,"critical_cell_volts":3.5}}`,
		`{"version":3,"colour":"red"}`,
	} {
		if _, err := offer(bad); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
	if p, _ := cat.BySKU("CHAI"); p.Price != 9000 || s.Version() != 2 {
		t.Fatalf("after refusals: price %d, version %d", p.Price, s.Version())
	}
	if m, err := offer(`{"version":5,"catalog":[{"sku":"CHAI","name":"Chai","price":8500},{"sku":"BUN","name":"Bun kebab","price":12000}],
		"power":{"debounce":"5s","low_soc":30,"critical_soc":15,"critical_cell_volts":3.5,"critical_runtime":"5m","restore_hysteresis_soc":5}}`); err != nil || m["applied"] != true {
		t.Fatalf("v5: %v %v", m, err)
	}
	// v6 only reprices what v5 added: what is held is both together.
	if m, err := offer(`{"version":6,"prices":{"BUN":13000}}`); err != nil || m["applied"] != true {
		t.Fatalf("v6: %v %v", m, err)
	}
	// A restart comes back with v5 and v6 applied over the kiosk's own menu.
	cat, _ = till.BuildCatalog(till.Menu{Products: []till.Product{{SKU: "CHAI", Name: "Chai", Price: 8000}}})
	s, err = menuStore(t, path, &cat)
	if err != nil || s.Version() != 6 {
		t.Fatalf("reopen: version %d, %v", s.Version(), err)
	}
	if p, ok := cat.BySKU("BUN"); !ok || p.Price != 13000 {
		t.Fatalf("after a restart BUN is %+v (%v), want v5's product at v6's price", p, ok)
	}
	if d, _ := s.Held(); time.Duration(d.Power.CriticalRuntime) != 5*time.Minute {
		t.Fatalf("power thresholds: %+v", d.Power)
	}
}

// TestClearedListsStayClearedAfterARestart: "drops":[] clears the drops of
// the kiosk's own menu, and still does after a restart.
func TestClearedListsStayClearedAfterARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	base := till.Menu{Products: []till.Product{{SKU: "A", Name: "A", Price: 100}, {SKU: "B", Name: "B", Price: 200}},
		Drops: []till.Drop{{ID: "d1", SKU: "B", Starts: time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC), Stock: 5}}}
	var cat *till.Catalog
	prepare := func(d DesiredConfig) (func(), error) {
		m, err := d.Menu(base)
		if err != nil {
			return nil, err
		}
		c, err := till.BuildCatalog(m)
		if err != nil {
			return nil, err
		}
		return func() { cat = c }, nil
	}
	s, err := OpenConfigStore(path, prepare)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Offer(json.RawMessage(`{"version":1,"catalog":[{"sku":"A","name":"A","price":100}],"drops":[]}`)); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenConfigStore(path, prepare); err != nil || s.Version() != 1 {
		t.Fatalf("reopen: version %d, %v", s.Version(), err)
	}
	if _, ok := cat.BySKU("B"); ok || len(cat.Menu().Drops) != 0 {
		t.Fatalf("after a restart the menu is %+v", cat.Menu())
	}
}

func TestDamagedConfigIsSetAsideNotFatal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"version":`), 0o600); err != nil {
		t.Fatal(err)
	}
	cat, _ := till.BuildCatalog(till.Menu{})
	s, err := menuStore(t, path, &cat)
	if err == nil || s == nil || s.Version() != 0 {
		t.Fatalf("store %v, err %v", s, err)
	}
	if _, err := os.Stat(path + ".bad"); err != nil {
		t.Fatal("damaged config not kept aside")
	}
}

func TestParseCommand(t *testing.T) {
	for _, c := range []struct {
		in, id, err string
	}{
		{`{"id":"a","cmd":"ping"}`, "a", ""},
		{`{"id":"a","cmd":"ping","args":{"x":1}}`, "a", ""},
		{`{"id":"a","cmd":"ping","args":null}`, "a", ""},
		{`{"id":"a","cmd":""}`, "a", "no cmd"},
		{`{"id":"a","cmd":"x","args":"str"}`, "a", "object"},
		{`[1,2]`, "", "malformed"},
		{`{"id":"` + strings.Repeat("x", 200) + `","cmd":"ping"}`, strings.Repeat("x", MaxCommandID), "longer"},
		{`{"id":"b","cmd":7}`, "b", "malformed"},
	} {
		got, err := ParseCommand([]byte(c.in))
		if got.ID != c.id || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%.40s: id %q, err %v", c.in, got.ID, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%.40s: %v is not ErrMalformed", c.in, err)
		}
	}
}

func TestAvailability(t *testing.T) {
	t0 := time.Unix(0, 0)
	a := NewAvailability(t0)
	a.Observe(false, t0.Add(10*time.Second)) // starting up
	a.Observe(true, t0.Add(100*time.Second))
	a.Observe(false, t0.Add(110*time.Second)) // ledger stalled
	a.Observe(true, t0.Add(200*time.Second))
	if got := a.Fraction(t0.Add(200 * time.Second)); got != 180.0/200 {
		t.Fatalf("availability %v, want 0.9", got)
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{`{"id":"a","cmd":"ping"}`, `{"id":"a","cmd":"lights","args":{"scene":"open"}}`, `{`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCommand(b)
		if len(c.ID) > MaxCommandID {
			t.Fatalf("id of %d bytes came back", len(c.ID))
		}
		if err == nil && (c.ID == "" || c.Cmd == "") {
			t.Fatalf("accepted %q without id or cmd", b)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v is not ErrMalformed", err)
		}
	})
}

func FuzzParseDesiredConfig(f *testing.F) {
	for _, s := range []string{`{"version":1}`, `{"version":2,"prices":{"CHAI":9000}}`,
		`{"version":3,"catalog":[{"sku":"A","name":"A","barcode":"","price":1}],"drops":[{"id":"d","sku":"A","starts":"2026-12-01T18:00:00+05:00","stock":5}]}`,
		`{"version":4,"power":{"debounce":"5s","low_soc":30,"critical_soc":15,"critical_cell_volts":3.5,"critical_runtime":"5m","restore_hysteresis_soc":5}}`} {
		f.Add([]byte(s))
	}
	base, _ := till.BuildCatalog(till.Menu{Products: []till.Product{{SKU: "A", Name: "A", Price: 100}}})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDesiredConfig(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if d.Version == 0 {
			t.Fatal("accepted a config without a version")
		}
		if p := d.Power; p != nil && !(p.CriticalSoC > 0 && p.CriticalSoC < p.LowSoC && p.LowSoC <= 100) {
			t.Fatalf("accepted thresholds %+v", p)
		}
		// Whatever parses, building the till's menu from it errs or works;
		// it never panics.
		if m, err := d.Menu(base.Menu()); err == nil {
			_, _ = till.BuildCatalog(m)
		}
	})
}
