package sim

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/microretail/kioskd/boards"
	"github.com/microretail/kioskd/drivers/emu"
	"github.com/microretail/kioskd/drivers/pn532"
	"github.com/microretail/kioskd/firmware/httpjson"
)

// maxBody bounds a sim request body.
const maxBody = 4 << 10

// DefaultHold is how long a tapped card stays in the field.
const DefaultHold = 1500 * time.Millisecond

// Handler serves /api/sim/…: mains, battery, tap, fault, scan, printer
// and world.
func (w *World) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/sim/mains", w.postMains)
	mux.HandleFunc("POST /api/sim/battery", w.postBattery)
	mux.HandleFunc("POST /api/sim/tap", w.postTap)
	mux.HandleFunc("POST /api/sim/fault", w.postFault)
	mux.HandleFunc("POST /api/sim/scan", w.postScan)
	mux.HandleFunc("GET /api/sim/printer", w.getPrinter)
	mux.HandleFunc("POST /api/sim/printer", w.postPrinter)
	mux.HandleFunc("GET /api/sim/world", func(rw http.ResponseWriter, r *http.Request) {
		httpjson.Write(rw, http.StatusOK, w.State())
	})
	mux.HandleFunc("/api/sim/", func(rw http.ResponseWriter, r *http.Request) {
		httpjson.Error(rw, http.StatusNotFound, fmt.Sprintf("no sim endpoint %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func fail(rw http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	if errors.Is(err, httpjson.ErrTooLarge) {
		status = http.StatusRequestEntityTooLarge
	}
	httpjson.Error(rw, status, err.Error())
}

func (w *World) postMains(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		On *bool `json:"on"`
	}
	if err := httpjson.Decode(rw, r, &req, maxBody); err != nil {
		fail(rw, err)
		return
	}
	if req.On == nil {
		fail(rw, errors.New(`sim: "on" is required: true or false`))
		return
	}
	w.SetMains(*req.On)
	httpjson.Write(rw, http.StatusOK, w.State())
}

func (w *World) postBattery(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		SOC     *float64 `json:"soc"`
		Drain   *float64 `json:"drain_pct_per_min"`
		Present *bool    `json:"present"`
		Scale   *float64 `json:"time_scale"`
	}
	if err := httpjson.Decode(rw, r, &req, maxBody); err != nil {
		fail(rw, err)
		return
	}
	if req.SOC != nil && (*req.SOC < 0 || *req.SOC > 100) {
		fail(rw, fmt.Errorf("sim: soc %v is not 0-100", *req.SOC))
		return
	}
	if req.Drain != nil && (*req.Drain < 0 || *req.Drain > 100) {
		fail(rw, fmt.Errorf("sim: drain_pct_per_min %v is not 0-100", *req.Drain))
		return
	}
	if req.Scale != nil {
		if err := w.SetTimeScale(*req.Scale); err != nil {
			fail(rw, err)
			return
		}
	}
	w.SetBattery(req.SOC, req.Drain, req.Present)
	httpjson.Write(rw, http.StatusOK, w.State())
}

func (w *World) postTap(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		UID    string `json:"uid"`
		HoldMS *int64 `json:"hold_ms"`
	}
	if err := httpjson.Decode(rw, r, &req, maxBody); err != nil {
		fail(rw, err)
		return
	}
	uid, err := hex.DecodeString(req.UID)
	if err != nil || (len(uid) != 4 && len(uid) != 7 && len(uid) != 10) {
		fail(rw, fmt.Errorf("sim: uid %q is not 4, 7 or 10 bytes of hex", req.UID))
		return
	}
	hold := DefaultHold
	if req.HoldMS != nil {
		if *req.HoldMS < 50 || *req.HoldMS > 60_000 {
			fail(rw, fmt.Errorf("sim: hold_ms %d is not 50-60000", *req.HoldMS))
			return
		}
		hold = time.Duration(*req.HoldMS) * time.Millisecond
	}
	card := pn532.Card{UID: uid, SensRes: 0x0004, SelRes: 0x08} // a MIFARE Classic 1K answer for 4-byte UIDs
	if len(uid) == 7 {
		card = pn532.NTAG213(uid)
	} else if len(uid) == 10 {
		card.SensRes, card.SelRes = 0x0084, 0x20 // triple-size UID, ISO 14443-4
	}
	if err := w.Tap(card, hold); err != nil {
		httpjson.Error(rw, http.StatusNotFound, err.Error())
		return
	}
	httpjson.Write(rw, http.StatusOK, map[string]any{"uid": hex.EncodeToString(uid), "hold_ms": hold.Milliseconds()})
}

// postFault injects a fault on a device's address: "nack", "bus-error",
// "stuck", "garbage", "none" (clear), or "reset" (a power-on reset of the
// chip). count bounds the faulty transactions; -1 or absent is until
// cleared.
func (w *World) postFault(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		Device string `json:"device"`
		Fault  string `json:"fault"`
		Count  *int   `json:"count"`
	}
	if err := httpjson.Decode(rw, r, &req, maxBody); err != nil {
		fail(rw, err)
		return
	}
	if req.Device == boards.RoleMainsDetect {
		w.postLineFault(rw, req.Device, req.Fault)
		return
	}
	addr, ok := w.Addr(req.Device)
	if !ok {
		fail(rw, fmt.Errorf("sim: no I2C device %q (have %s, %s, %s, %s)", req.Device,
			boards.RoleFuelGauge, boards.RoleBatteryShunt, boards.RoleNFC, boards.RoleLights))
		return
	}
	if req.Fault == "reset" {
		w.Bus.Reset(addr)
		httpjson.Write(rw, http.StatusOK, map[string]any{"device": req.Device, "reset": true})
		return
	}
	f, err := emu.ParseFault(req.Fault)
	if err != nil {
		fail(rw, err)
		return
	}
	n := -1
	if req.Count != nil {
		if *req.Count == 0 || *req.Count < -1 {
			fail(rw, fmt.Errorf("sim: count %d: want a positive number, or -1 for until cleared", *req.Count))
			return
		}
		n = *req.Count
	}
	w.Bus.Inject(addr, f, n)
	httpjson.Write(rw, http.StatusOK, map[string]any{"device": req.Device, "fault": f.String(), "count": n})
}

// postLineFault sticks the mains-detect line where it is ("stuck") or
// frees it ("none").
func (w *World) postLineFault(rw http.ResponseWriter, device, fault string) {
	switch fault {
	case "stuck":
		w.StickMains(true)
	case "none":
		w.StickMains(false)
	default:
		fail(rw, fmt.Errorf("sim: fault %q on the %s line: want stuck or none", fault, device))
		return
	}
	httpjson.Write(rw, http.StatusOK, map[string]any{"device": device, "fault": fault})
}
