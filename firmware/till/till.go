// Package till is the sale flow of the kiosk: the catalog, the cart on the
// counter, checkout, refunds and wallet top-ups, and the till's HTTP API.
// Every sale it makes is a ledger entry, reported only once it is durable.
package till

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/drivers/barcode"
	"github.com/microretail/kioskd/firmware/ledger"
)

// Errors the till returns besides the ledger's. Test with errors.Is.
var (
	// ErrInvalid: the request is malformed or asks for nonsense.
	ErrInvalid = errors.New("till: invalid")
	// ErrUnknown: no product has that code or SKU.
	ErrUnknown = errors.New("till: unknown")
	// ErrClosed: the kiosk is shutting down and takes no new sales.
	ErrClosed = errors.New("till: closed")
)

// Till sells. It is safe for concurrent use: the touch screen, the scanner
// and API callers all reach the same cart.
type Till struct {
	ledger  *ledger.Ledger
	log     zerolog.Logger
	newKey  func() string
	catalog atomic.Pointer[Catalog]
	closed  atomic.Bool
	receipt bool // queue a receipt with every entry
	drawer  bool // and open the cash drawer when cash changes hands

	mu   sync.Mutex
	cart cart
}

// Options configures a Till.
type Options struct {
	Ledger  *ledger.Ledger
	Catalog *Catalog
	Logger  zerolog.Logger
	// NewKey makes idempotency keys for carts and for checkouts that bring
	// none; default: 128 random bits in hex.
	NewKey func() string
	// Receipts queues a receipt print job with every entry, in the same
	// durable write; Drawer also opens the cash drawer with it whenever
	// cash changes hands (cash sales, top-ups and refunds of cash sales).
	Receipts, Drawer bool
}

// New makes a till selling from opts.Catalog into opts.Ledger.
func New(opts Options) *Till {
	if opts.NewKey == nil {
		opts.NewKey = randomKey
	}
	t := &Till{ledger: opts.Ledger, log: opts.Logger.With().Str("component", "till").Logger(), newKey: opts.NewKey,
		receipt: opts.Receipts, drawer: opts.Receipts && opts.Drawer}
	t.catalog.Store(opts.Catalog)
	t.cart.key = t.newKey()
	return t
}

func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}

// Catalog is the price list the till sells from now.
func (t *Till) Catalog() *Catalog { return t.catalog.Load() }

// SetCatalog replaces the price list. Lines already in the cart keep their
// SKUs and are priced from the new list at checkout.
func (t *Till) SetCatalog(c *Catalog) { t.catalog.Store(c) }

// Ledger is the ledger the till records into.
func (t *Till) Ledger() *ledger.Ledger { return t.ledger }

// Close stops the till taking new sales; a checkout already committing
// completes. It is safe to call twice.
func (t *Till) Close() { t.closed.Store(true) }

// Ready is nil when the till can take a sale, or why it cannot.
func (t *Till) Ready() error {
	if t.closed.Load() {
		return fmt.Errorf("%w: the kiosk is shutting down", ErrClosed)
	}
	return t.ledger.Health()
}

// cart is the sale being built on the counter. Its idempotency key stays
// the same until the cart is sold or cleared, so a checkout retried after a
// timeout or a storage failure can never sell the cart twice.
type cart struct {
	lines   []cartLine
	key     string
	version uint64 // bumps on every change
}

type cartLine struct {
	SKU string
	Qty int64
}

// CartLine is one line of the cart as the screen shows it.
type CartLine struct {
	SKU   string `json:"sku"`
	Name  string `json:"name"`
	Qty   int64  `json:"qty"`
	Price int64  `json:"price"`
	Total int64  `json:"total"`
}

// CartView is the cart priced from the current catalog.
type CartView struct {
	Lines          []CartLine `json:"lines"`
	Items          int64      `json:"items"`
	Total          int64      `json:"total"`
	IdempotencyKey string     `json:"idempotency_key"`
}

// Cart returns the cart as it stands.
func (t *Till) Cart() CartView {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.viewLocked()
}

func (t *Till) viewLocked() CartView {
	cat := t.Catalog()
	v := CartView{Lines: []CartLine{}, IdempotencyKey: t.cart.key}
	for _, l := range t.cart.lines {
		p, _ := cat.BySKU(l.SKU)
		name := p.Name
		if name == "" {
			name = l.SKU + " (no longer sold)"
		}
		v.Lines = append(v.Lines, CartLine{SKU: l.SKU, Name: name, Qty: l.Qty, Price: p.Price, Total: p.Price * l.Qty})
		v.Items += l.Qty
		v.Total += p.Price * l.Qty
	}
	return v
}

// Scan adds one of the product with the scanned code to the cart, exactly as
// a scanner read does.
func (t *Till) Scan(code string) (Product, CartView, error) {
	code = strings.TrimSpace(code)
	if _, err := barcode.Classify(code); err != nil {
		return Product{}, CartView{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	p, ok := t.Catalog().ByCode(code)
	if !ok {
		return Product{}, CartView{}, fmt.Errorf("%w: no product has the code %s", ErrUnknown, code)
	}
	v, err := t.Add(p.SKU, 1)
	return p, v, err
}

// Add puts qty more of a SKU in the cart.
func (t *Till) Add(sku string, qty int64) (CartView, error) {
	if qty < 1 || qty > ledger.MaxQty {
		return CartView{}, fmt.Errorf("%w: quantity %d is not between 1 and %d", ErrInvalid, qty, ledger.MaxQty)
	}
	if _, ok := t.Catalog().BySKU(sku); !ok {
		return CartView{}, fmt.Errorf("%w: no product has the sku %q", ErrUnknown, sku)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.cart.lines {
		l := &t.cart.lines[i]
		if l.SKU == sku {
			if l.Qty+qty > ledger.MaxQty {
				return CartView{}, fmt.Errorf("%w: %d of %s is more than one line holds (%d)", ErrInvalid, l.Qty+qty, sku, ledger.MaxQty)
			}
			l.Qty += qty
			t.cart.version++
			return t.viewLocked(), nil
		}
	}
	if len(t.cart.lines) >= ledger.MaxLines {
		return CartView{}, fmt.Errorf("%w: the cart holds %d lines already", ErrInvalid, ledger.MaxLines)
	}
	t.cart.lines = append(t.cart.lines, cartLine{SKU: sku, Qty: qty})
	t.cart.version++
	return t.viewLocked(), nil
}

// Clear empties the cart and starts a new one with a new key.
func (t *Till) Clear() CartView {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cart = cart{key: t.newKey(), version: t.cart.version + 1}
	return t.viewLocked()
}

// LineRequest is a line a caller asks to sell: a SKU and a quantity.
type LineRequest struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// Checkout is a request to sell.
type Checkout struct {
	Payment ledger.Payment
	// Key is the idempotency key. Empty means the cart's key for a cart
	// checkout; required when Lines are given.
	Key string
	// Lines, when non-nil, are sold instead of the cart, which is left alone.
	Lines []LineRequest
	// Card is the wallet card's UID, for wallet payments.
	Card []byte
	// Tendered is the cash handed over, in minor units, so the receipt
	// shows the change; 0 when not counted.
	Tendered int64
}

// commitTimeout bounds how long the till waits on the ledger for one entry.
// It does not follow the caller's context: once a sale is submitted, the
// till waits for its outcome even if the caller has gone, so the cart is
// settled exactly when the sale is recorded.
const commitTimeout = 15 * time.Second

func (t *Till) append(ctx context.Context, d ledger.Draft) (ledger.Entry, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	return t.ledger.Append(ctx, d)
}

// Checkout sells the cart (or c.Lines) and returns the ledger entry once it
// is durable. A cart checkout empties the cart only when it succeeds.
//
// Retries are safe when they carry the same key: a cart checkout retried
// after its sale was recorded (the reply lost, say) finds the cart empty
// and returns the recorded sale. Selling given lines needs a key, since a
// retry without one would sell twice.
func (t *Till) Checkout(ctx context.Context, c Checkout) (ledger.Entry, error) {
	if err := t.Ready(); err != nil {
		return ledger.Entry{}, err
	}
	fromCart := c.Lines == nil
	var cartKey string
	var version uint64
	if fromCart {
		t.mu.Lock()
		for _, l := range t.cart.lines {
			c.Lines = append(c.Lines, LineRequest(l))
		}
		cartKey, version = t.cart.key, t.cart.version
		t.mu.Unlock()
		if c.Key == "" {
			c.Key = cartKey
		}
		if len(c.Lines) == 0 {
			if e, err := t.ledger.ByKey(c.Key); err == nil && e.Kind == ledger.KindSale {
				return e, nil // a retry of a cart sold already
			}
			return ledger.Entry{}, fmt.Errorf("%w: the cart is empty", ErrInvalid)
		}
	} else if c.Key == "" {
		return ledger.Entry{}, fmt.Errorf("%w: selling given lines needs an idempotency_key, or a retry would sell twice", ErrInvalid)
	}
	if len(c.Lines) == 0 {
		return ledger.Entry{}, fmt.Errorf("%w: no lines to sell", ErrInvalid)
	}
	d := ledger.Draft{Kind: ledger.KindSale, Payment: c.Payment, IdempotencyKey: c.Key, Card: c.Card, Tendered: c.Tendered,
		Receipt: t.receipt, Drawer: t.drawer && c.Payment == ledger.PaymentCash}
	cat := t.Catalog()
	for i, l := range c.Lines {
		p, ok := cat.BySKU(l.SKU)
		if !ok {
			return ledger.Entry{}, fmt.Errorf("%w: line %d: no product has the sku %q", ErrUnknown, i+1, l.SKU)
		}
		if l.Qty < 1 || l.Qty > ledger.MaxQty {
			return ledger.Entry{}, fmt.Errorf("%w: line %d (%s): quantity %d is not between 1 and %d", ErrInvalid, i+1, l.SKU, l.Qty, ledger.MaxQty)
		}
		d.Lines = append(d.Lines, ledger.Line{SKU: p.SKU, Name: p.Name, Qty: l.Qty, Price: p.Price})
	}
	e, err := t.append(ctx, d)
	if err != nil {
		t.log.Warn().Err(err).Str("key", c.Key).Msg("checkout failed")
		return ledger.Entry{}, err
	}
	t.log.Info().Uint64("seq", e.Seq).Str("id", e.ID.String()).Int64("total", e.Total()).
		Stringer("payment", e.Payment).Msg("sale")
	if fromCart {
		t.settleCart(version, cartKey, c.Lines)
	}
	return e, nil
}

// settleCart takes a sold cart off the counter. cartKey is the cart's own
// key when the sale was taken from it, whatever key the sale was recorded
// under. If the cart changed while the sale committed, only what was sold
// comes off.
func (t *Till) settleCart(version uint64, cartKey string, sold []LineRequest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cart.key != cartKey {
		return // cleared meanwhile, or settled by a concurrent retry
	}
	if t.cart.version == version {
		t.cart = cart{key: t.newKey(), version: version + 1}
		return
	}
	left := t.cart.lines[:0]
	for _, l := range t.cart.lines {
		for _, s := range sold {
			if s.SKU == l.SKU {
				l.Qty -= s.Qty
			}
		}
		if l.Qty > 0 {
			left = append(left, l)
		}
	}
	t.cart = cart{lines: left, key: t.newKey(), version: t.cart.version + 1}
}

// Refund gives a sale back in full, as a new ledger entry.
func (t *Till) Refund(ctx context.Context, saleID, key string) (ledger.Entry, error) {
	if err := t.Ready(); err != nil {
		return ledger.Entry{}, err
	}
	id, err := ledger.ParseID(strings.TrimSpace(saleID))
	if err != nil {
		return ledger.Entry{}, err
	}
	if id.Ledger != t.ledger.LedgerID() {
		return ledger.Entry{}, fmt.Errorf("%w: sale %s was not made on this kiosk", ledger.ErrNotFound, id)
	}
	if key == "" {
		return ledger.Entry{}, fmt.Errorf("%w: a refund needs an idempotency key", ErrInvalid)
	}
	sale, err := t.ledger.Get(id.Seq)
	if err != nil {
		return ledger.Entry{}, err
	}
	e, err := t.append(ctx, ledger.Draft{Kind: ledger.KindRefund, IdempotencyKey: key, RefundOf: id.Seq,
		Receipt: t.receipt, Drawer: t.drawer && sale.Payment == ledger.PaymentCash})
	if err != nil {
		return ledger.Entry{}, err
	}
	t.log.Info().Uint64("seq", e.Seq).Uint64("refund_of", e.RefundOf).Int64("total", e.Total()).Msg("refund")
	return e, nil
}

// TopUp credits a wallet card with cash taken at the counter.
func (t *Till) TopUp(ctx context.Context, card []byte, amount int64, key string) (ledger.Entry, error) {
	if err := t.Ready(); err != nil {
		return ledger.Entry{}, err
	}
	if amount < 1 || amount > ledger.MaxPrice {
		return ledger.Entry{}, fmt.Errorf("%w: top-up amount %d", ErrInvalid, amount)
	}
	if key == "" {
		return ledger.Entry{}, fmt.Errorf("%w: a top-up needs an idempotency_key, or a retry would credit twice", ErrInvalid)
	}
	e, err := t.append(ctx, ledger.Draft{
		Kind: ledger.KindTopUp, Payment: ledger.PaymentCash, Card: card, IdempotencyKey: key,
		Lines:   []ledger.Line{{SKU: TopUpSKU, Name: "Wallet top-up", Qty: 1, Price: amount}},
		Receipt: t.receipt, Drawer: t.drawer,
	})
	if err != nil {
		return ledger.Entry{}, err
	}
	t.log.Info().Uint64("seq", e.Seq).Hex("card", card).Int64("amount", amount).Msg("wallet top-up")
	return e, nil
}

// TopUpSKU is the line SKU of a wallet top-up.
const TopUpSKU = "WALLET-TOPUP"

// Reprint queues another copy of an entry's receipt. It is the only way a
// receipt prints twice, so it is logged.
func (t *Till) Reprint(ctx context.Context, saleID string) (ledger.Job, error) {
	id, err := ledger.ParseID(strings.TrimSpace(saleID))
	if err != nil {
		return ledger.Job{}, err
	}
	if id.Ledger != t.ledger.LedgerID() {
		return ledger.Job{}, fmt.Errorf("%w: sale %s was not made on this kiosk", ledger.ErrNotFound, id)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	j, err := t.ledger.Reprint(ctx, id.Seq)
	if err != nil {
		return ledger.Job{}, err
	}
	t.log.Warn().Str("id", id.String()).Uint32("copy", j.Copy).Msg("receipt reprint requested")
	return j, nil
}
