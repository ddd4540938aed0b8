package till

import (
	"errors"
	"fmt"
	"time"

	"slices"

	"github.com/microretail/kioskd/drivers/barcode"
	"github.com/microretail/kioskd/firmware/ledger"
)

// Product is one thing the stall sells.
type Product struct {
	SKU     string `json:"sku" toml:"sku"`
	Name    string `json:"name" toml:"name"`
	Barcode string `json:"barcode" toml:"barcode"`
	Price   int64  `json:"price" toml:"price"` // minor units (paisa)
}

// Drop is a limited release of one product: it is on sale only from
// Starts until Ends, and only Stock units of it are sold in all. Several
// drops of one SKU (a nightly release, say) must not overlap.
type Drop struct {
	ID     string    `json:"id" toml:"id"`
	SKU    string    `json:"sku" toml:"sku"`
	Starts time.Time `json:"starts" toml:"starts"`
	Ends   time.Time `json:"ends,omitzero" toml:"ends"` // zero: until sold out
	Stock  int64     `json:"stock" toml:"stock"`
}

// Open reports whether the drop's window holds t.
func (d Drop) Open(t time.Time) bool {
	return !t.Before(d.Starts) && (d.Ends.IsZero() || t.Before(d.Ends))
}

// Plan is a subscription the stall sells at the counter: a daily chai for a
// month, say.
type Plan struct {
	ID     string `json:"id" toml:"id"`
	Name   string `json:"name" toml:"name"`
	Price  int64  `json:"price" toml:"price"`   // minor units, per period
	Period string `json:"period" toml:"period"` // "week", "month", … as the buyer reads it
}

// Menu is everything the till sells: products, the drops of some of them,
// and subscription plans.
type Menu struct {
	Products []Product
	Drops    []Drop
	Plans    []Plan
}

// Catalog is what the till can sell, looked up by SKU or scanned code.
// It is immutable; a new price list is a new Catalog.
type Catalog struct {
	products []Product
	bySKU    map[string]int
	byCode   map[string]int
	drops    map[string][]Drop // by SKU, in time order
	plans    []Plan
}

// MaxProducts bounds a catalog; stalls sell 8-12 SKUs.
const MaxProducts = 500

// NewCatalog checks a product list: every SKU and barcode unique, every
// GS1 barcode's check digit right, every price a sane amount.
func NewCatalog(products []Product) (*Catalog, error) { return BuildCatalog(Menu{Products: products}) }

// BuildCatalog checks a menu: the products as NewCatalog does, every drop
// of a listed product with a window and a stock and no overlap, every plan
// named and priced.
func BuildCatalog(m Menu) (*Catalog, error) {
	products := m.Products
	if len(products) > MaxProducts {
		return nil, fmt.Errorf("%w: %d products, at most %d", ErrInvalid, len(products), MaxProducts)
	}
	c := &Catalog{
		products: append([]Product(nil), products...),
		bySKU:    map[string]int{},
		byCode:   map[string]int{},
	}
	var errs []error
	for i, p := range c.products {
		switch {
		case p.SKU == "" || len(p.SKU) > ledger.MaxTextLen:
			errs = append(errs, fmt.Errorf("product %d: sku %q", i+1, p.SKU))
		case p.Name == "" || len(p.Name) > ledger.MaxTextLen:
			errs = append(errs, fmt.Errorf("%s: name %q", p.SKU, p.Name))
		case p.Price < 0 || p.Price > ledger.MaxPrice:
			errs = append(errs, fmt.Errorf("%s: price %d", p.SKU, p.Price))
		}
		if _, dup := c.bySKU[p.SKU]; dup {
			errs = append(errs, fmt.Errorf("sku %s listed twice", p.SKU))
		}
		c.bySKU[p.SKU] = i
		if p.Barcode == "" {
			continue
		}
		if _, err := barcode.Classify(p.Barcode); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.SKU, err))
		}
		code := barcode.Normalize(p.Barcode)
		if j, dup := c.byCode[code]; dup {
			errs = append(errs, fmt.Errorf("barcode %s used by %s and %s", p.Barcode, c.products[j].SKU, p.SKU))
		}
		c.byCode[code] = i
	}
	errs = append(errs, c.addDrops(m.Drops)...)
	errs = append(errs, c.addPlans(m.Plans)...)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: catalog: %w", ErrInvalid, err)
	}
	return c, nil
}

func (c *Catalog) addDrops(drops []Drop) []error {
	var errs []error
	ids := map[string]bool{}
	c.drops = map[string][]Drop{}
	for i, d := range drops {
		switch {
		case d.ID == "" || len(d.ID) > ledger.MaxTextLen:
			errs = append(errs, fmt.Errorf("drop %d: id %q", i+1, d.ID))
		case ids[d.ID]:
			errs = append(errs, fmt.Errorf("drop %s listed twice", d.ID))
		case d.Starts.IsZero():
			errs = append(errs, fmt.Errorf("drop %s: no start time", d.ID))
		case !d.Ends.IsZero() && !d.Ends.After(d.Starts):
			errs = append(errs, fmt.Errorf("drop %s: ends before it starts", d.ID))
		case d.Stock < 1 || d.Stock > ledger.MaxQty*ledger.MaxLines:
			errs = append(errs, fmt.Errorf("drop %s: stock %d", d.ID, d.Stock))
		}
		if _, ok := c.bySKU[d.SKU]; !ok {
			errs = append(errs, fmt.Errorf("drop %s: no product has the sku %q", d.ID, d.SKU))
		}
		ids[d.ID] = true
		c.drops[d.SKU] = append(c.drops[d.SKU], d)
	}
	for sku, ds := range c.drops {
		slices.SortFunc(ds, func(a, b Drop) int { return a.Starts.Compare(b.Starts) })
		for i := 1; i < len(ds); i++ {
			if prev := ds[i-1]; prev.Ends.IsZero() || prev.Ends.After(ds[i].Starts) {
				errs = append(errs, fmt.Errorf("drops %s and %s of %s overlap", prev.ID, ds[i].ID, sku))
			}
		}
	}
	return errs
}

func (c *Catalog) addPlans(plans []Plan) []error {
	var errs []error
	ids := map[string]bool{}
	for i, p := range plans {
		switch {
		case p.ID == "" || len(p.ID) > ledger.MaxTextLen-len(planSKU):
			errs = append(errs, fmt.Errorf("plan %d: id %q", i+1, p.ID))
		case ids[p.ID]:
			errs = append(errs, fmt.Errorf("plan %s listed twice", p.ID))
		case p.Name == "" || len(p.Name) > ledger.MaxTextLen:
			errs = append(errs, fmt.Errorf("plan %s: name %q", p.ID, p.Name))
		case p.Price < 1 || p.Price > ledger.MaxPrice:
			errs = append(errs, fmt.Errorf("plan %s: price %d", p.ID, p.Price))
		}
		ids[p.ID] = true
	}
	c.plans = append([]Plan(nil), plans...)
	return errs
}

// planSKU prefixes a plan's id to make the SKU of its ledger line.
const planSKU = "PLAN-"

// Menu is what the catalog was built from: products, drops (in time order
// by SKU) and plans.
func (c *Catalog) Menu() Menu {
	m := Menu{Products: c.Products(), Plans: c.Plans()}
	skus := make([]string, 0, len(c.drops))
	for sku := range c.drops {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	for _, sku := range skus {
		m.Drops = append(m.Drops, c.drops[sku]...)
	}
	return m
}

// Plans lists the subscription plans.
func (c *Catalog) Plans() []Plan { return append([]Plan(nil), c.plans...) }

// Plan finds a plan by id.
func (c *Catalog) Plan(id string) (Plan, bool) {
	for _, p := range c.plans {
		if p.ID == id {
			return p, true
		}
	}
	return Plan{}, false
}

// DropAt is the drop of sku that matters at t: the one open, else the next
// to open, else the last that ended. ok is false for a product never
// dropped, which is on sale whenever the till is.
func (c *Catalog) DropAt(sku string, t time.Time) (d Drop, ok bool) {
	ds := c.drops[sku]
	for _, d := range ds {
		if d.Open(t) || t.Before(d.Starts) {
			return d, true
		}
	}
	if len(ds) == 0 {
		return Drop{}, false
	}
	return ds[len(ds)-1], true
}

// Products lists the catalog in its configured order.
func (c *Catalog) Products() []Product { return append([]Product(nil), c.products...) }

// BySKU finds a product by SKU.
func (c *Catalog) BySKU(sku string) (Product, bool) {
	i, ok := c.bySKU[sku]
	if !ok {
		return Product{}, false
	}
	return c.products[i], true
}

// ByCode finds a product by a scanned code, whether the scanner sent a
// UPC-A or its EAN-13 form.
func (c *Catalog) ByCode(code string) (Product, bool) {
	i, ok := c.byCode[barcode.Normalize(code)]
	if !ok {
		return Product{}, false
	}
	return c.products[i], true
}

// SimMenu is the sim board's stock with a drop and plans to show them:
// Kashmiri chai dropped for three hours from the start of the hour now
// falls in (24 cups), gola ganda dropped the hour after (12), and two
// subscriptions.
func SimMenu(now time.Time) Menu {
	hour := now.Truncate(time.Hour)
	drop := func(sku string, from time.Time, hours, stock int64) Drop {
		return Drop{ID: fmt.Sprintf("%s-%s", sku, from.UTC().Format("20060102T15")), SKU: sku,
			Starts: from, Ends: from.Add(time.Duration(hours) * time.Hour), Stock: stock}
	}
	return Menu{
		Products: SimCatalog(),
		Drops:    []Drop{drop("KASHMIRI", hour, 3, 24), drop("GOLA", hour.Add(time.Hour), 1, 12)},
		Plans: []Plan{
			{ID: "chai-month", Name: "Chai every evening", Price: 200000, Period: "month"},
			{ID: "snack-week", Name: "Samosa and chai", Price: 70000, Period: "week"},
		},
	}
}

// SimCatalog is the sim board's stock: a Karachi night-market chai and
// snack stall. Barcodes are EAN-13 under GS1 Pakistan's 896 prefix; prices
// are in paisa.
func SimCatalog() []Product {
	return []Product{
		{SKU: "CHAI", Name: "Doodh patti chai", Barcode: "8964000100011", Price: 8000},
		{SKU: "KASHMIRI", Name: "Kashmiri chai", Barcode: "8964000100028", Price: 15000},
		{SKU: "SAMOSA", Name: "Aloo samosa", Barcode: "8964000100035", Price: 5000},
		{SKU: "PAKORA", Name: "Pakora (250 g)", Barcode: "8964000100042", Price: 12000},
		{SKU: "BUNKEBAB", Name: "Bun kebab", Barcode: "8964000100059", Price: 25000},
		{SKU: "GOLA", Name: "Gola ganda", Barcode: "8964000100066", Price: 10000},
		{SKU: "PAAN", Name: "Meetha paan", Barcode: "8964000100073", Price: 7000},
		{SKU: "WATER", Name: "Mineral water 500 ml", Barcode: "8964000100080", Price: 6000},
		{SKU: "PAKOLA", Name: "Pakola 345 ml", Barcode: "8964000100097", Price: 9000},
		{SKU: "NIMKO", Name: "Nimko mix (100 g)", Barcode: "8964000100103", Price: 11000},
	}
}

// ProductView is a product as the screen shows it: with its drop, if it
// has one, and what is left of it.
type ProductView struct {
	Product
	Drop *DropView `json:"drop,omitempty"`
}

// DropView is a drop's state at one moment.
type DropView struct {
	Drop
	Sold  int64  `json:"sold"`
	Left  int64  `json:"left"`
	State string `json:"state"` // upcoming, open, sold_out, ended or unknown
}

// Drop states.
const (
	DropUpcoming = "upcoming"
	DropOpen     = "open"
	DropSoldOut  = "sold_out"
	DropEnded    = "ended"
	DropUnknown  = "unknown" // the ledger cannot say what was sold
)

// catalogView lists the catalog with each drop's state at now.
func (t *Till) catalogView(now time.Time) []ProductView {
	cat := t.Catalog()
	out := make([]ProductView, 0, len(cat.products))
	for _, p := range cat.products {
		v := ProductView{Product: p}
		if d, ok := cat.DropAt(p.SKU, now); ok {
			sold, err := t.ledger.Sold(d.ID)
			dv := &DropView{Drop: d, Sold: sold, Left: max(d.Stock-sold, 0)}
			switch {
			case err != nil:
				// The ledger is down: nothing sells until it is back,
				// and the screen still shows why.
				dv.State, dv.Left = DropUnknown, 0
			case now.Before(d.Starts):
				dv.State = DropUpcoming
			case dv.Left == 0:
				dv.State = DropSoldOut
			case d.Open(now):
				dv.State = DropOpen
			default:
				dv.State = DropEnded
			}
			v.Drop = dv
		}
		out = append(out, v)
	}
	return out
}
