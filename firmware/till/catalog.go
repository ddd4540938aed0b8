package till

import (
	"errors"
	"fmt"

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

// Catalog is what the till can sell, looked up by SKU or scanned code.
// It is immutable; a new price list is a new Catalog.
type Catalog struct {
	products []Product
	bySKU    map[string]int
	byCode   map[string]int
}

// MaxProducts bounds a catalog; stalls sell 8-12 SKUs.
const MaxProducts = 500

// NewCatalog checks a product list: every SKU and barcode unique, every
// GS1 barcode's check digit right, every price a sane amount.
func NewCatalog(products []Product) (*Catalog, error) {
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
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: catalog: %w", ErrInvalid, err)
	}
	return c, nil
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
