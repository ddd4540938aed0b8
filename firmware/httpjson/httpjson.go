// Package httpjson is how kioskd's HTTP endpoints read and write JSON: one
// strict object per request body, bounded in size, and {"error":"…"} with a
// 4xx or 5xx when something is wrong.
package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Errors Decode returns. Test with errors.Is.
var (
	ErrInvalid  = errors.New("invalid request")        // 400: not one well-formed JSON object of the expected shape
	ErrTooLarge = errors.New("request body too large") // 413
)

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

// Write sends v as JSON with the given status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error sends {"error": msg} with the given status.
func Error(w http.ResponseWriter, status int, msg string) {
	Write(w, status, ErrorBody{Error: msg})
}

// Decode reads one JSON object from r's body into v, strictly: unknown
// fields, trailing data and bodies over limit bytes are refused.
func Decode(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	tooLarge := func(err error) bool {
		var mb *http.MaxBytesError
		return errors.As(err, &mb)
	}
	if err := dec.Decode(v); err != nil {
		switch {
		case tooLarge(err):
			return fmt.Errorf("%w: at most %d bytes", ErrTooLarge, limit)
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: empty body, expected a JSON object", ErrInvalid)
		}
		return fmt.Errorf("%w: malformed JSON: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if tooLarge(err) {
			return fmt.Errorf("%w: at most %d bytes", ErrTooLarge, limit)
		}
		return fmt.Errorf("%w: data after the JSON object", ErrInvalid)
	}
	return nil
}
