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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/drivers/barcode"
	"github.com/microretail/kioskd/firmware/events"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/firmware/receipt"
)

// Errors the till returns besides the ledger's. Test with errors.Is.
var (
	// ErrInvalid: the request is malformed or asks for nonsense.
	ErrInvalid = errors.New("till: invalid")
	// ErrUnknown: no product has that code or SKU.
	ErrUnknown = errors.New("till: unknown")
	// ErrClosed: the kiosk is shutting down and takes no new sales.
	ErrClosed = errors.New("till: closed")
	// ErrNotTrading: the till is closed for the day; the operator opens it.
	ErrNotTrading = errors.New("till: closed for the day")
	// ErrNotOnSale: a drop's product outside its drop's window.
	ErrNotOnSale = errors.New("till: not on sale")
)

// Till sells. It is safe for concurrent use: the touch screen, the scanner
// and API callers all reach the same cart.
type Till struct {
	ledger  *ledger.Ledger
	log     zerolog.Logger
	newKey  func() string
	clock   func() time.Time
	loc     *time.Location
	events  *events.Hub
	catalog atomic.Pointer[Catalog]
	closed  atomic.Bool
	closing atomic.Pointer[string] // why the kiosk is closing; nil while it is not
	receipt bool                   // queue a receipt with every entry
	drawer  bool                   // and open the cash drawer when cash changes hands
	limit   int64                  // what a wallet card may spend unacknowledged; 0 = no limit
	trading trading

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
	// Events receives a sale event for every entry recorded and a cart
	// event for every change to the cart; may be nil.
	Events   *events.Hub
	Clock    func() time.Time // drop windows; default time.Now
	Location *time.Location   // the shop's time zone, for drop times in messages; default UTC
	// OfflineLimit bounds what one wallet card may spend in entries the
	// fleet has not acknowledged yet, in minor units; 0 is no limit.
	OfflineLimit int64
	// TradingFile keeps whether the till is open for the day across
	// restarts; empty keeps it in memory only. A till starts open.
	TradingFile string
	// OnTrading is called when the till opens or closes for the day, and
	// once from New with the state it starts in: the lights follow it.
	OnTrading func(open bool)
}

// New makes a till selling from opts.Catalog into opts.Ledger.
func New(opts Options) *Till {
	if opts.NewKey == nil {
		opts.NewKey = randomKey
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	t := &Till{loc: opts.Location, ledger: opts.Ledger, log: opts.Logger.With().Str("component", "till").Logger(), newKey: opts.NewKey,
		clock: opts.Clock, events: opts.Events, receipt: opts.Receipts, drawer: opts.Receipts && opts.Drawer,
		limit: opts.OfflineLimit}
	t.catalog.Store(opts.Catalog)
	t.cart.key = t.newKey()
	t.trading.load(opts.TradingFile, opts.OnTrading, t.log)
	return t
}

// publish hands an event to the hub, if there is one.
func (t *Till) publish(typ string, data any) {
	if t.events != nil {
		t.events.Publish(typ, data)
	}
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

// Closing puts the till into its last minutes before a shutdown the kiosk
// cannot avoid (the battery is nearly empty): the screen shows why, the
// sale on the counter can still be paid for, and nothing new can start:
// no items added, no new sale, top-up, refund or sign-up. Close follows
// once the counter is clear or the time allowed is up. It is safe to call
// twice; the first reason stands.
func (t *Till) Closing(reason string) {
	t.mu.Lock() // no cart change is half-way past the check in change
	swapped := t.closing.CompareAndSwap(nil, &reason)
	t.mu.Unlock()
	if swapped {
		t.log.Warn().Str("reason", reason).Msg("closing: only the sale on the counter can be finished")
		t.publish(events.Closing, map[string]string{"reason": reason})
	}
}

// Reopen ends Closing: the reason to close has gone (mains came back to
// a kiosk waiting for it after a battery shutdown). A till already
// closed by Close stays closed.
func (t *Till) Reopen() {
	if t.closed.Load() {
		return
	}
	t.mu.Lock()
	was := t.closing.Swap(nil)
	t.mu.Unlock()
	if was != nil {
		t.log.Info().Msg("closing over: selling again")
		t.publish(events.Closing, map[string]string{"reason": ""})
	}
}

// ClosingReason is why the till is closing, or "" while it is not.
func (t *Till) ClosingReason() string {
	if r := t.closing.Load(); r != nil {
		return *r
	}
	return ""
}

// CounterClear reports whether no sale is being built on the counter.
func (t *Till) CounterClear() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.cart.lines) == 0
}

// Ready is nil when the till can take a sale, or why it cannot.
func (t *Till) Ready() error {
	if t.closed.Load() {
		if r := t.ClosingReason(); r != "" {
			return fmt.Errorf("%w: the kiosk is shutting down (%s); every sale made is saved", ErrClosed, r)
		}
		return fmt.Errorf("%w: the kiosk is shutting down", ErrClosed)
	}
	return t.ledger.Health()
}

// closingRefusal is why nothing new may start while closing, or nil.
func (t *Till) closingRefusal() error {
	if r := t.ClosingReason(); r != "" {
		return fmt.Errorf("%w: the kiosk is closing (%s): only the sale on the counter can be finished", ErrClosed, r)
	}
	return nil
}

// admit is nil when the till may record the entry with this idempotency
// key now: it is ready and open for the day. A closed till still answers
// a retry whose reply was lost (the key is recorded already): the ledger
// replays the recorded entry, or refuses a different request. While
// closing, only counter (the checkout of the cart on the counter, under
// its key) and such retries are let through.
func (t *Till) admit(key string, counter bool) error {
	if err := t.Ready(); err != nil {
		return err
	}
	if err := t.closingRefusal(); err != nil && !(counter && t.onCounter(key)) && !t.recorded(key) {
		return err
	}
	if t.trading.open.Load() || t.recorded(key) {
		return nil
	}
	return fmt.Errorf("%w: open the till to sell", ErrNotTrading)
}

// onCounter reports whether key is the sale being built on the counter.
func (t *Till) onCounter(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return key != "" && key == t.cart.key && len(t.cart.lines) > 0
}

// recorded reports whether an entry carries key. It is asked only where the
// till would refuse, so the checkout path does not look every key up twice:
// the ledger's sequencer does that.
func (t *Till) recorded(key string) bool {
	if key == "" {
		return false
	}
	_, err := t.ledger.ByKey(key)
	return err == nil
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

// Scanned is what a scanned code turned out to be: a product, now one more
// in the cart, or a receipt of this kiosk, whose sale the screen offers to
// refund.
type Scanned struct {
	Product *Product  `json:"product,omitempty"`
	Cart    *CartView `json:"cart,omitempty"`
	Receipt *Receipt  `json:"receipt,omitempty"`
}

// Receipt is a recorded entry as a scanned receipt finds it.
type Receipt struct {
	Entry      ledger.Entry `json:"entry"`
	RefundedBy *ledger.ID   `json:"refunded_by,omitempty"`
}

// Scan handles a scanned code, exactly as a scanner read does: a product's
// barcode adds one of it to the cart; a receipt's QR code (the sale id)
// looks the sale up.
func (t *Till) Scan(code string) (Scanned, error) {
	code = strings.TrimSpace(code)
	if _, err := ledger.ParseID(code); err == nil {
		r, err := t.Receipt(code)
		if err != nil {
			return Scanned{}, err
		}
		return Scanned{Receipt: &r}, nil
	}
	if _, err := barcode.Classify(code); err != nil {
		return Scanned{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	p, ok := t.Catalog().ByCode(code)
	if !ok {
		return Scanned{}, fmt.Errorf("%w: no product has the code %s", ErrUnknown, code)
	}
	v, err := t.Add(p.SKU, 1)
	if err != nil {
		return Scanned{}, err
	}
	return Scanned{Product: &p, Cart: &v}, nil
}

// Receipt finds an entry of this kiosk by its id, and its refund if any.
func (t *Till) Receipt(saleID string) (Receipt, error) {
	id, err := t.ownID(saleID)
	if err != nil {
		return Receipt{}, err
	}
	e, err := t.ledger.Get(id.Seq)
	if err != nil {
		return Receipt{}, err
	}
	r := Receipt{Entry: e}
	by, err := t.ledger.RefundedBy(id.Seq)
	if err != nil {
		return Receipt{}, err
	}
	if by != 0 {
		r.RefundedBy = &ledger.ID{Ledger: id.Ledger, Seq: by}
	}
	return r, nil
}

// ownID parses an entry id and checks it was made on this kiosk.
func (t *Till) ownID(s string) (ledger.ID, error) {
	id, err := ledger.ParseID(strings.TrimSpace(s))
	if err != nil {
		return ledger.ID{}, err
	}
	if id.Ledger != t.ledger.LedgerID() {
		return ledger.ID{}, fmt.Errorf("%w: sale %s was not made on this kiosk", ledger.ErrNotFound, id)
	}
	return id, nil
}

// Add puts qty more of a SKU in the cart.
func (t *Till) Add(sku string, qty int64) (CartView, error) {
	if qty < 1 || qty > ledger.MaxQty {
		return CartView{}, fmt.Errorf("%w: quantity %d is not between 1 and %d", ErrInvalid, qty, ledger.MaxQty)
	}
	return t.change(sku, qty, true)
}

// SetQty sets how many of a SKU the cart holds; 0 takes the line out.
func (t *Till) SetQty(sku string, qty int64) (CartView, error) {
	if qty < 0 || qty > ledger.MaxQty {
		return CartView{}, fmt.Errorf("%w: quantity %d is not between 0 and %d", ErrInvalid, qty, ledger.MaxQty)
	}
	return t.change(sku, qty, false)
}

// change sets a line's quantity to qty, or adds qty to it when more is
// true, in one step under the lock, so a scan racing a checkout or another
// scan is neither lost nor carried into the next cart. A drop's product is
// checked against its window and what is left first, so the screen says
// "sold out" before checkout does; checkout is what enforces it.
func (t *Till) change(sku string, qty int64, more bool) (CartView, error) {
	cat := t.Catalog()
	p, ok := cat.BySKU(sku)
	t.mu.Lock()
	want := qty
	if more {
		want += t.qtyLocked(sku)
	}
	t.mu.Unlock()
	if want > 0 {
		if !ok {
			return CartView{}, fmt.Errorf("%w: no product has the sku %q", ErrUnknown, sku)
		}
		if err := t.onSale(cat, p, want); err != nil {
			return CartView{}, err
		}
	}
	t.mu.Lock()
	if more {
		qty += t.qtyLocked(sku) // as the cart stands now
	}
	if err := t.closingRefusal(); err != nil && qty > t.qtyLocked(sku) {
		t.mu.Unlock()
		return CartView{}, err // taking items off stays possible
	}
	v, err := t.setLocked(sku, qty)
	t.mu.Unlock()
	if err == nil {
		t.publish(events.Cart, v)
	}
	return v, err
}

func (t *Till) qtyLocked(sku string) int64 {
	for _, l := range t.cart.lines {
		if l.SKU == sku {
			return l.Qty
		}
	}
	return 0
}

func (t *Till) setLocked(sku string, qty int64) (CartView, error) {
	if qty > ledger.MaxQty {
		return CartView{}, fmt.Errorf("%w: %d of %s is more than one line holds (%d)", ErrInvalid, qty, sku, ledger.MaxQty)
	}
	for i := range t.cart.lines {
		if t.cart.lines[i].SKU != sku {
			continue
		}
		if qty == 0 {
			t.cart.lines = slices.Delete(t.cart.lines, i, i+1)
		} else {
			t.cart.lines[i].Qty = qty
		}
		t.cart.version++
		return t.viewLocked(), nil
	}
	if qty == 0 {
		return t.viewLocked(), nil
	}
	if len(t.cart.lines) >= ledger.MaxLines {
		return CartView{}, fmt.Errorf("%w: the cart holds %d lines already", ErrInvalid, ledger.MaxLines)
	}
	t.cart.lines = append(t.cart.lines, cartLine{SKU: sku, Qty: qty})
	t.cart.version++
	return t.viewLocked(), nil
}

// onSale checks that qty of a product may be sold now: a drop's product
// only inside its window and while enough is left.
func (t *Till) onSale(cat *Catalog, p Product, qty int64) error {
	now := t.clock()
	d, ok := cat.DropAt(p.SKU, now)
	if !ok {
		return nil
	}
	if !d.Open(now) {
		return t.dropClosed(p, d, now)
	}
	sold, err := t.ledger.Sold(d.ID)
	if err != nil {
		return err
	}
	if left := d.Stock - sold; qty > left {
		return soldOut(p, left)
	}
	return nil
}

func (t *Till) dropClosed(p Product, d Drop, now time.Time) error {
	if now.Before(d.Starts) {
		return fmt.Errorf("%w: %s goes on sale at %s", ErrNotOnSale, p.Name, d.Starts.In(t.loc).Format("Jan 2 15:04"))
	}
	return fmt.Errorf("%w: the %s drop has ended", ErrNotOnSale, p.Name)
}

func soldOut(p Product, left int64) error {
	if left <= 0 {
		return fmt.Errorf("%w: %s is sold out", ledger.ErrSoldOut, p.Name)
	}
	return fmt.Errorf("%w: only %d %s left", ledger.ErrSoldOut, left, p.Name)
}

// Clear empties the cart and starts a new one with a new key.
func (t *Till) Clear() CartView {
	t.mu.Lock()
	t.cart = cart{key: t.newKey(), version: t.cart.version + 1}
	v := t.viewLocked()
	t.mu.Unlock()
	t.publish(events.Cart, v)
	return v
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
	if err := t.admit(c.Key, fromCart && c.Key == cartKey); err != nil {
		return ledger.Entry{}, err
	}
	d := ledger.Draft{Kind: ledger.KindSale, Payment: c.Payment, IdempotencyKey: c.Key, Card: c.Card, Tendered: c.Tendered,
		Receipt: t.receipt, Drawer: t.drawer && c.Payment == ledger.PaymentCash}
	cat, now := t.Catalog(), t.clock()
	for i, l := range c.Lines {
		p, ok := cat.BySKU(l.SKU)
		if !ok {
			return ledger.Entry{}, fmt.Errorf("%w: line %d: no product has the sku %q", ErrUnknown, i+1, l.SKU)
		}
		if l.Qty < 1 || l.Qty > ledger.MaxQty {
			return ledger.Entry{}, fmt.Errorf("%w: line %d (%s): quantity %d is not between 1 and %d", ErrInvalid, i+1, l.SKU, l.Qty, ledger.MaxQty)
		}
		line := ledger.Line{SKU: p.SKU, Name: p.Name, Qty: l.Qty, Price: p.Price}
		if drop, ok := cat.DropAt(p.SKU, now); ok {
			if !drop.Open(now) && !t.recorded(c.Key) {
				return ledger.Entry{}, t.dropClosed(p, drop, now)
			}
			if d.Stock == nil {
				d.Stock = map[string]int64{}
			}
			line.Drop, d.Stock[drop.ID] = drop.ID, drop.Stock
		}
		d.Lines = append(d.Lines, line)
	}
	e, err := t.record(ctx, d)
	if err != nil {
		if errors.Is(err, ledger.ErrSoldOut) {
			err = t.soldOutIn(d.Lines, err)
		}
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

// record appends an entry, bounding a wallet payment by the offline limit,
// and tells the screen.
func (t *Till) record(ctx context.Context, d ledger.Draft) (ledger.Entry, error) {
	if d.Payment == ledger.PaymentWallet {
		d.SpendLimit = t.limit
	}
	head := t.ledger.Head()
	e, err := t.append(ctx, d)
	if err != nil {
		return ledger.Entry{}, t.walletRefusal(d, err)
	}
	if e.Seq > head {
		// New: a replay answers with an entry already told of. (A
		// retry racing its own first attempt may tell twice; listeners
		// key on the entry's id.)
		t.publish(events.Sale, e)
	}
	return e, nil
}

// walletRefusal says why a card cannot pay in money the cashier reads, not
// in minor units.
func (t *Till) walletRefusal(d ledger.Draft, err error) error {
	var total int64
	for _, l := range d.Lines {
		total += l.Total()
	}
	cur, tail := t.ledger.Currency(), fmt.Sprintf("%X", d.Card)
	tail = tail[max(len(tail)-4, 0):]
	switch {
	case errors.Is(err, ledger.ErrInsufficient):
		bal, berr := t.ledger.WalletBalance(d.Card)
		if berr != nil {
			return err
		}
		return fmt.Errorf("%w: card …%s holds %s, this is %s", ledger.ErrInsufficient, tail,
			receipt.Money(cur, bal), receipt.Money(cur, total))
	case errors.Is(err, ledger.ErrLimit):
		return fmt.Errorf("%w: card …%s has spent %s here since the fleet last synced; %s more would pass its offline limit of %s",
			ledger.ErrLimit, tail, receipt.Money(cur, t.ledger.OfflineSpent(d.Card)), receipt.Money(cur, total), receipt.Money(cur, t.limit))
	}
	return err
}

// soldOutIn says which product of a refused sale ran out, in the shop's
// words, from the stock as it stands now.
func (t *Till) soldOutIn(lines []ledger.Line, err error) error {
	cat := t.Catalog()
	for _, l := range lines {
		if l.Drop == "" {
			continue
		}
		p, _ := cat.BySKU(l.SKU)
		if serr := t.onSale(cat, p, l.Qty); serr != nil {
			return serr
		}
	}
	return err
}

// settleCart takes a sold cart off the counter. cartKey is the cart's own
// key when the sale was taken from it, whatever key the sale was recorded
// under. If the cart changed while the sale committed, only what was sold
// comes off.
func (t *Till) settleCart(version uint64, cartKey string, sold []LineRequest) {
	t.mu.Lock()
	if t.cart.key != cartKey {
		t.mu.Unlock()
		return // cleared meanwhile, or settled by a concurrent retry
	}
	t.settleLocked(version, sold)
	v := t.viewLocked()
	t.mu.Unlock()
	t.publish(events.Cart, v)
}

func (t *Till) settleLocked(version uint64, sold []LineRequest) {
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
	if err := t.admit(key, false); err != nil {
		return ledger.Entry{}, err
	}
	id, err := t.ownID(saleID)
	if err != nil {
		return ledger.Entry{}, err
	}
	if key == "" {
		return ledger.Entry{}, fmt.Errorf("%w: a refund needs an idempotency key", ErrInvalid)
	}
	sale, err := t.ledger.Get(id.Seq)
	if err != nil {
		return ledger.Entry{}, err
	}
	e, err := t.record(ctx, ledger.Draft{Kind: ledger.KindRefund, IdempotencyKey: key, RefundOf: id.Seq,
		Receipt: t.receipt, Drawer: t.drawer && sale.Payment == ledger.PaymentCash})
	if err != nil {
		return ledger.Entry{}, err
	}
	t.log.Info().Uint64("seq", e.Seq).Uint64("refund_of", e.RefundOf).Int64("total", e.Total()).Msg("refund")
	return e, nil
}

// TopUp credits a wallet card with cash taken at the counter.
func (t *Till) TopUp(ctx context.Context, card []byte, amount, tendered int64, key string) (ledger.Entry, error) {
	if err := t.admit(key, false); err != nil {
		return ledger.Entry{}, err
	}
	if amount < 1 || amount > ledger.MaxPrice {
		return ledger.Entry{}, fmt.Errorf("%w: top-up amount %d", ErrInvalid, amount)
	}
	if key == "" {
		return ledger.Entry{}, fmt.Errorf("%w: a top-up needs an idempotency_key, or a retry would credit twice", ErrInvalid)
	}
	e, err := t.record(ctx, ledger.Draft{
		Kind: ledger.KindTopUp, Payment: ledger.PaymentCash, Card: card, IdempotencyKey: key, Tendered: tendered,
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
	id, err := t.ownID(saleID)
	if err != nil {
		return ledger.Job{}, err
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
