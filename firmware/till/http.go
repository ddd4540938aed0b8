package till

import (
	"context"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/microretail/kioskd/firmware/httpjson"
	"github.com/microretail/kioskd/firmware/ledger"
	"github.com/microretail/kioskd/firmware/printing"
)

// MaxBody bounds a request body. The largest real request, a checkout of
// 100 lines, is a few KB.
const MaxBody = 64 << 10

// Identity is what the kiosk says about itself on /healthz and /api/state.
type Identity struct {
	KioskID  string
	Board    string
	Version  string
	Currency string
	Shop     string // the stall's name, as the screen and receipts show it
}

// ServerOptions configures the till's HTTP API.
type ServerOptions struct {
	Identity Identity
	Logger   zerolog.Logger
	Clock    func() time.Time
	// Sim, on the sim board only, serves /api/sim/…: the emulators' view of
	// the physical world. Elsewhere those paths are 404.
	Sim http.Handler
	// Events streams what happens at the kiosk on GET /api/events.
	Events http.Handler
	// Peripherals reports the hardware on /api/state; nil shows none.
	Peripherals Peripherals
	// PrintReport queues a Z-report on the receipt printer; nil when the
	// kiosk has none, and POST /api/zreport/print is then 503.
	PrintReport func(ledger.Report) error
}

// Peripherals is what /api/state shows about the kiosk's hardware.
type Peripherals interface {
	// DeviceStates maps each configured device to ok, degraded or offline.
	DeviceStates() map[string]string
	// StateExtras are further /api/state fields: "power", "lights", ….
	StateExtras() map[string]any
}

// Server is the till's HTTP API. It serves /healthz from the moment it
// starts; until SetTill, everything else is 503 with the reason.
type Server struct {
	id      Identity
	log     zerolog.Logger
	clock   func() time.Time
	started time.Time
	till    atomic.Pointer[Till]
	waiting atomic.Pointer[string]
	mux     *http.ServeMux
	periph  Peripherals
	printZ  func(ledger.Report) error
}

// NewServer builds the API.
func NewServer(opts ServerOptions) *Server {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	s := &Server{id: opts.Identity, log: opts.Logger.With().Str("component", "http").Logger(), clock: opts.Clock, mux: http.NewServeMux(), periph: opts.Peripherals,
		printZ: opts.PrintReport}
	s.started = s.clock()
	s.SetWaiting("starting")
	s.mux.HandleFunc("GET /{$}", s.page)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /api/state", s.withTill(s.state))
	s.mux.HandleFunc("POST /api/cart/scan", s.withTill(s.scan))
	s.mux.HandleFunc("POST /api/cart/add", s.withTill(s.add))
	s.mux.HandleFunc("POST /api/cart/set", s.withTill(s.set))
	s.mux.HandleFunc("POST /api/cart/clear", s.withTill(s.clear))
	s.mux.HandleFunc("POST /api/checkout", s.withTill(s.checkout))
	s.mux.HandleFunc("POST /api/refund", s.withTill(s.refund))
	s.mux.HandleFunc("POST /api/reprint", s.withTill(s.reprint))
	s.mux.HandleFunc("POST /api/subscribe", s.withTill(s.subscribe))
	s.mux.HandleFunc("GET /api/sales", s.withTill(s.sales))
	s.mux.HandleFunc("GET /api/sales/{id}", s.withTill(s.sale))
	s.mux.HandleFunc("GET /api/zreport", s.withTill(s.zreport))
	s.mux.HandleFunc("POST /api/zreport/print", s.withTill(s.zprint))
	s.mux.HandleFunc("POST /api/till", s.withTill(s.setTrading))
	s.mux.HandleFunc("POST /api/wallet/topup", s.withTill(s.topUp))
	s.mux.HandleFunc("GET /api/wallet/{card}", s.withTill(s.wallet))
	if opts.Events != nil {
		s.mux.Handle("GET /api/events", opts.Events)
	}
	if opts.Sim != nil {
		s.mux.Handle("/api/sim/", opts.Sim)
	}
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	return s
}

// SetTill starts serving the till.
func (s *Server) SetTill(t *Till) { s.till.Store(t) }

// SetWaiting records why the till is not up yet, for /healthz.
func (s *Server) SetWaiting(reason string) { s.waiting.Store(&reason) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// statusOf maps an error to the HTTP status a caller acts on.
func statusOf(err error) int {
	switch {
	case errors.Is(err, httpjson.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalid), errors.Is(err, ledger.ErrInvalid), errors.Is(err, httpjson.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknown), errors.Is(err, ledger.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ledger.ErrConflict), errors.Is(err, ledger.ErrSoldOut),
		errors.Is(err, ErrNotOnSale), errors.Is(err, ErrNotTrading):
		return http.StatusConflict
	case errors.Is(err, ledger.ErrInsufficient), errors.Is(err, ledger.ErrLimit):
		return http.StatusPaymentRequired
	case errors.Is(err, ErrClosed), errors.Is(err, ledger.ErrUnavailable), errors.Is(err, printing.ErrBusy),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// reply writes v, or the error in its place.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, v)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	ev := s.log.Debug()
	if status >= 500 {
		ev = s.log.Error()
	}
	ev.Err(err).Str("path", r.URL.Path).Int("status", status).Msg("request refused")
	httpjson.Error(w, status, err.Error())
}

// decode reads one JSON object, strictly: unknown fields, trailing data and
// oversized bodies are refused.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return httpjson.Decode(w, r, v, MaxBody)
}

func (s *Server) withTill(h func(w http.ResponseWriter, r *http.Request, t *Till)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t := s.till.Load()
		if t == nil {
			httpjson.Error(w, http.StatusServiceUnavailable, "till not ready: "+*s.waiting.Load())
			return
		}
		h(w, r, t)
	}
}

//go:embed page.html
var placeholderPage []byte

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(placeholderPage)
}

func (s *Server) uptime() int64 { return int64(s.clock().Sub(s.started) / time.Second) }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	t := s.till.Load()
	if t == nil {
		httpjson.Write(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": *s.waiting.Load()})
		return
	}
	if err := t.Ready(); err != nil {
		httpjson.Write(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": err.Error()})
		return
	}
	l := t.Ledger()
	httpjson.Write(w, http.StatusOK, map[string]any{
		"ready": true, "kiosk_id": s.id.KioskID, "board": s.id.Board, "version": s.id.Version,
		"uptime_s": s.uptime(), "head_seq": l.Head(), "outbox": l.OutboxLen(),
	})
}

type ledgerState struct {
	Ready   bool   `json:"ready"`
	Error   string `json:"error,omitempty"`
	HeadSeq uint64 `json:"head_seq"`
	Acked   uint64 `json:"acked_seq"`
	Outbox  uint64 `json:"outbox"`
}

func (s *Server) state(w http.ResponseWriter, r *http.Request, t *Till) {
	l := t.Ledger()
	ls := ledgerState{Ready: true, HeadSeq: l.Head(), Acked: l.Acked(), Outbox: l.OutboxLen()}
	if err := t.Ready(); err != nil {
		ls.Ready, ls.Error = false, err.Error()
	}
	now := s.clock()
	body := map[string]any{
		"kiosk_id": s.id.KioskID, "board": s.id.Board, "version": s.id.Version, "currency": s.id.Currency,
		"uptime_s": s.uptime(),
		"now":      now,
		"shop":     map[string]string{"name": s.id.Shop},
		"trading":  t.Trading(),
		"closing":  t.ClosingReason(),
		"catalog":  t.catalogView(now),
		"plans":    t.Catalog().Plans(),
		"wallet":   map[string]int64{"offline_limit": t.limit},
		"cart":     t.Cart(),
		"devices":  map[string]string{},
		"ledger":   ls,
	}
	if s.periph != nil {
		for k, v := range s.periph.StateExtras() {
			body[k] = v
		}
		body["devices"] = s.periph.DeviceStates()
	}
	if tot, err := l.DayTotals(l.Today()); err == nil {
		body["today"] = tot.Report()
	}
	httpjson.Write(w, http.StatusOK, body)
}

func (s *Server) scan(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		Code string `json:"code"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := t.Scan(req.Code)
	s.reply(w, r, res, err)
}

func (s *Server) add(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		SKU string `json:"sku"`
		Qty *int64 `json:"qty"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	qty := int64(1)
	if req.Qty != nil {
		qty = *req.Qty
	}
	cart, err := t.Add(req.SKU, qty)
	s.reply(w, r, map[string]any{"cart": cart}, err)
}

func (s *Server) set(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		SKU string `json:"sku"`
		Qty *int64 `json:"qty"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Qty == nil {
		s.fail(w, r, fmt.Errorf("%w: qty is required; 0 takes the line out", ErrInvalid))
		return
	}
	cart, err := t.SetQty(req.SKU, *req.Qty)
	s.reply(w, r, map[string]any{"cart": cart}, err)
}

func (s *Server) clear(w http.ResponseWriter, r *http.Request, t *Till) {
	if r.ContentLength > 0 {
		var req struct{}
		if err := decode(w, r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"cart": t.Clear()})
}

func parseCard(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 7 && len(b) != 10) {
		return nil, fmt.Errorf("%w: card uid %q is not 4, 7 or 10 bytes of hex", ErrInvalid, s)
	}
	return b, nil
}

// parsePayment reads a request's payment and card: a wallet payment needs
// the card; a card given with cash is checked all the same.
func parsePayment(payment, card string) (ledger.Payment, []byte, error) {
	if payment == "" {
		return 0, nil, fmt.Errorf("%w: payment is required: cash or wallet", ErrInvalid)
	}
	pay, err := ledger.ParsePayment(payment)
	if err != nil {
		return 0, nil, err
	}
	if card == "" && pay != ledger.PaymentWallet {
		return pay, nil, nil
	}
	uid, err := parseCard(card)
	return pay, uid, err
}

func (s *Server) checkout(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		Payment        string        `json:"payment"`
		IdempotencyKey string        `json:"idempotency_key"`
		Lines          []LineRequest `json:"lines"`
		Card           string        `json:"card"`
		Tendered       int64         `json:"tendered"` // cash handed over, minor units
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	pay, card, err := parsePayment(req.Payment, req.Card)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Lines != nil && len(req.Lines) == 0 {
		s.fail(w, r, fmt.Errorf("%w: lines is empty; leave it out to sell the cart", ErrInvalid))
		return
	}
	c := Checkout{Payment: pay, Key: req.IdempotencyKey, Lines: req.Lines, Tendered: req.Tendered, Card: card}
	e, err := t.Checkout(r.Context(), c)
	s.reply(w, r, e, err)
}

func (s *Server) refund(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		SaleID         string `json:"sale_id"`
		IdempotencyKey string `json:"idempotency_key"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := t.Refund(r.Context(), req.SaleID, req.IdempotencyKey)
	s.reply(w, r, e, err)
}

func (s *Server) reprint(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		SaleID string `json:"sale_id"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	j, err := t.Reprint(r.Context(), req.SaleID)
	s.reply(w, r, map[string]any{"sale_id": req.SaleID, "job": j}, err)
}

// MaxSalesPage bounds one /api/sales response.
const MaxSalesPage = 1000

func (s *Server) sales(w http.ResponseWriter, r *http.Request, t *Till) {
	q := r.URL.Query()
	num := func(name string, def, min, max uint64) (uint64, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n < min || n > max {
			return 0, fmt.Errorf("%w: %s=%q is not a number from %d to %d", ErrInvalid, name, v, min, max)
		}
		return n, nil
	}
	from, err := num("from_seq", 1, 1, 1<<62)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := num("limit", 100, 1, MaxSalesPage)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	l := t.Ledger()
	entries, err := l.Range(from, int(limit))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if entries == nil {
		entries = []ledger.Entry{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"entries": entries, "head_seq": l.Head(), "acked_seq": l.Acked()})
}

func (s *Server) zreport(w http.ResponseWriter, r *http.Request, t *Till) {
	rep, err := dayReport(t.Ledger(), r.URL.Query().Get("day"))
	s.reply(w, r, map[string]any{"kiosk_id": s.id.KioskID, "currency": s.id.Currency, "report": rep}, err)
}

// dayReport is the Z-report of a business day, "YYYY-MM-DD", or of today's
// when day is empty.
func dayReport(l *ledger.Ledger, day string) (ledger.Report, error) {
	d := l.Today()
	if day != "" {
		var err error
		if d, err = ledger.ParseDay(day); err != nil {
			return ledger.Report{}, err
		}
	}
	tot, err := l.DayTotals(d)
	if err != nil {
		return ledger.Report{}, err
	}
	return tot.Report(), nil
}

func (s *Server) topUp(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		Card           string `json:"card"`
		Amount         int64  `json:"amount"`
		Tendered       int64  `json:"tendered"`
		IdempotencyKey string `json:"idempotency_key"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	card, err := parseCard(req.Card)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := t.TopUp(r.Context(), card, req.Amount, req.Tendered, req.IdempotencyKey)
	s.reply(w, r, e, err)
}

func (s *Server) wallet(w http.ResponseWriter, r *http.Request, t *Till) {
	card, err := parseCard(r.PathValue("card"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	bal, err := t.Ledger().WalletBalance(card)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"card": hex.EncodeToString(card), "balance": bal, "currency": s.id.Currency,
		"offline_spent": t.Ledger().OfflineSpent(card), "offline_limit": t.limit})
}

func (s *Server) subscribe(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		Phone          string `json:"phone"`
		Plan           string `json:"plan"`
		Payment        string `json:"payment"`
		Card           string `json:"card"`
		Tendered       int64  `json:"tendered"`
		IdempotencyKey string `json:"idempotency_key"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	pay, card, err := parsePayment(req.Payment, req.Card)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := t.Subscribe(r.Context(), Subscription{Phone: req.Phone, Plan: req.Plan, Payment: pay, Card: card,
		Tendered: req.Tendered, Key: req.IdempotencyKey})
	s.reply(w, r, e, err)
}

func (s *Server) sale(w http.ResponseWriter, r *http.Request, t *Till) {
	rec, err := t.Receipt(r.PathValue("id"))
	s.reply(w, r, rec, err)
}

func (s *Server) zprint(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		Day string `json:"day"`
	}
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if s.printZ == nil {
		httpjson.Error(w, http.StatusServiceUnavailable, "this kiosk has no receipt printer")
		return
	}
	rep, err := dayReport(t.Ledger(), req.Day)
	if err == nil {
		err = s.printZ(rep)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"queued": true, "day": rep.Day})
}

func (s *Server) setTrading(w http.ResponseWriter, r *http.Request, t *Till) {
	var req struct {
		Trading *bool `json:"trading"`
	}
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Trading == nil {
		s.fail(w, r, fmt.Errorf("%w: trading is required: true opens the till, false closes it for the day", ErrInvalid))
		return
	}
	if err := t.SetTrading(*req.Trading); err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"trading": t.Trading()})
}
