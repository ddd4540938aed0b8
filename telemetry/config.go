package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/firmware/till"
	"github.com/microretail/kioskd/internal/atomicfile"
)

// DesiredConfig is the fleet's versioned configuration for a kiosk, as
// the config command carries it. Every part is optional: a part left out
// keeps what the fleet set before, or else the kiosk's own config file.
// Prices override the catalog's by SKU, so a price change need not resend
// the catalog. What a kiosk holds is every version so far merged (Merge),
// applied over its config file's menu, at once and again at each start.
type DesiredConfig struct {
	Version uint64 `json:"version"`
	// A list left out (null) keeps what is there; an empty list clears
	// it. No omitempty: the persisted config must keep that difference.
	Catalog []till.Product   `json:"catalog"`
	Prices  map[string]int64 `json:"prices,omitempty"`
	Drops   []till.Drop      `json:"drops"`
	Plans   []till.Plan      `json:"plans"`
	Power   *PowerThresholds `json:"power,omitempty"`
}

// PowerThresholds are the [power] keys of DESIGN.md the fleet may set.
type PowerThresholds struct {
	Debounce             Duration `json:"debounce"`
	LowSoC               float64  `json:"low_soc"`
	CriticalSoC          float64  `json:"critical_soc"`
	CriticalCellVolts    float64  `json:"critical_cell_volts"`
	CriticalRuntime      Duration `json:"critical_runtime"`
	RestoreHysteresisSoC float64  `json:"restore_hysteresis_soc"`
}

// Duration is a time.Duration written as Go writes it: "5s", "2m30s".
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string like \"5s\": %v", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDesiredConfig reads a config command's args strictly: unknown
// fields, a missing version and out-of-range thresholds are refused. The
// catalog itself is checked when it is applied, against the till's rules.
func ParseDesiredConfig(b []byte) (DesiredConfig, error) {
	var d DesiredConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("%w: config: %v", ErrMalformed, err)
	}
	if dec.More() {
		return d, fmt.Errorf("%w: config: trailing data", ErrMalformed)
	}
	if d.Version == 0 {
		return d, fmt.Errorf("%w: config has no version (versions start at 1)", ErrMalformed)
	}
	for sku, p := range d.Prices {
		if p <= 0 || p > ledger.MaxPrice {
			return d, fmt.Errorf("%w: config: price of %q is %d", ErrMalformed, sku, p)
		}
	}
	if p := d.Power; p != nil {
		switch {
		case p.CriticalSoC <= 0 || p.LowSoC <= p.CriticalSoC || p.LowSoC > 100:
			return d, fmt.Errorf("%w: config: power wants 0 < critical_soc < low_soc <= 100, got %v and %v", ErrMalformed, p.CriticalSoC, p.LowSoC)
		case p.CriticalCellVolts < 2.5 || p.CriticalCellVolts > 4.2:
			return d, fmt.Errorf("%w: config: critical_cell_volts %v is not a Li-ion cell's cut-off (2.5-4.2)", ErrMalformed, p.CriticalCellVolts)
		case p.RestoreHysteresisSoC < 0 || p.RestoreHysteresisSoC > 50:
			return d, fmt.Errorf("%w: config: restore_hysteresis_soc %v out of 0-50", ErrMalformed, p.RestoreHysteresisSoC)
		case p.Debounce < 0 || time.Duration(p.Debounce) > 10*time.Minute:
			return d, fmt.Errorf("%w: config: debounce %v out of 0-10m", ErrMalformed, time.Duration(p.Debounce))
		case p.CriticalRuntime < 0 || time.Duration(p.CriticalRuntime) > 24*time.Hour:
			return d, fmt.Errorf("%w: config: critical_runtime %v out of 0-24h", ErrMalformed, time.Duration(p.CriticalRuntime))
		}
	}
	return d, nil
}

// Prepare checks a desired config (the merged whole, see Merge) against
// the kiosk's own config and builds what it would run, without changing
// anything; commit then switches to it in one step. Prepare's error
// refuses the config.
type Prepare func(DesiredConfig) (commit func(), err error)

// ConfigStore holds the fleet's desired config: the newest version
// offered, applied and persisted in one step, so a kiosk that restarts
// comes back with it and an older version arriving late changes nothing.
type ConfigStore struct {
	path    string
	prepare Prepare

	mu   sync.Mutex
	held DesiredConfig
}

// OpenConfigStore reads the persisted config at path, if any, and
// applies it with prepare. A persisted config that no longer applies (a
// damaged file, a catalog this build refuses) is moved aside to path.bad
// and reported; the store returned is still usable, holding nothing, so
// the fleet can send a new config.
func OpenConfigStore(path string, prepare Prepare) (*ConfigStore, error) {
	c := &ConfigStore{path: path, prepare: prepare}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("fleet config: %w", err)
	}
	d, err := ParseDesiredConfig(b)
	var commit func()
	if err == nil {
		commit, err = prepare(d)
	}
	if err != nil {
		_ = os.Rename(path, path+".bad")
		return c, fmt.Errorf("fleet config %s (moved to .bad): %w", path, err)
	}
	commit()
	c.held = d
	return c, nil
}

// Version is the version held, 0 for none.
func (c *ConfigStore) Version() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held.Version
}

// Held is the config held, if any.
func (c *ConfigStore) Held() (DesiredConfig, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held, c.held.Version > 0
}

// Offer applies a config command's args if its version is newer than the
// one held: checked, persisted, then switched to. An older or the same
// version is ignored and says so.
func (c *ConfigStore) Offer(args json.RawMessage) (any, error) {
	d, err := ParseDesiredConfig(args)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.Version <= c.held.Version {
		return map[string]any{"applied": false, "version": c.held.Version,
			"reason": fmt.Sprintf("version %d is not newer than the held version %d", d.Version, c.held.Version)}, nil
	}
	merged := c.held.Merge(d)
	commit, err := c.prepare(merged)
	if err != nil {
		return nil, fmt.Errorf("config version %d refused: %w", d.Version, err)
	}
	b, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(c.path, b, 0o640); err != nil {
		return nil, fmt.Errorf("config version %d not applied: cannot persist it: %w", d.Version, err)
	}
	commit()
	c.held = merged
	return map[string]any{"applied": true, "version": d.Version}, nil
}

// Merge is the config held after next arrives on top of d: next's version,
// and each part next sets replacing d's. A new catalog drops the prices d
// set for the old one; prices otherwise add up, the newer winning.
func (d DesiredConfig) Merge(next DesiredConfig) DesiredConfig {
	m := d
	m.Version = next.Version
	if next.Catalog != nil {
		m.Catalog, m.Prices = next.Catalog, nil
	}
	if len(next.Prices) > 0 {
		prices := make(map[string]int64, len(m.Prices)+len(next.Prices))
		for sku, p := range m.Prices {
			prices[sku] = p
		}
		for sku, p := range next.Prices {
			prices[sku] = p
		}
		m.Prices = prices
	}
	if next.Drops != nil {
		m.Drops = next.Drops
	}
	if next.Plans != nil {
		m.Plans = next.Plans
	}
	if next.Power != nil {
		m.Power = next.Power
	}
	return m
}

// Menu is what the till would sell under this config: current with the
// parts this config sets replaced and its prices applied. A price for a
// SKU the menu does not have is refused.
func (d DesiredConfig) Menu(current till.Menu) (till.Menu, error) {
	m := current
	if d.Catalog != nil {
		m.Products = d.Catalog
	}
	if d.Drops != nil {
		m.Drops = d.Drops
	}
	if d.Plans != nil {
		m.Plans = d.Plans
	}
	if len(d.Prices) > 0 {
		m.Products = append([]till.Product(nil), m.Products...)
		left := len(d.Prices)
		for i, p := range m.Products {
			if price, ok := d.Prices[p.SKU]; ok {
				m.Products[i].Price = price
				left--
			}
		}
		if left > 0 {
			for sku := range d.Prices {
				if !slicesContainsSKU(m.Products, sku) {
					return m, fmt.Errorf("price for %q, which the catalog does not have", sku)
				}
			}
		}
	}
	return m, nil
}

func slicesContainsSKU(ps []till.Product, sku string) bool {
	for _, p := range ps {
		if p.SKU == sku {
			return true
		}
	}
	return false
}
