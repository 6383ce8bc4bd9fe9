package portalsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// Refusal codes of the admin API, beside those of pkg/protocol.
const (
	CodeNotFound = "not_found"
	CodeConflict = "conflict"
	// CodeRuleRefused: a licence change the portal's rules forbid (409);
	// the message names the rule.
	CodeRuleRefused = "rule_refused"
)

// apiError is a refusal: an HTTP status and a protocol.Error body.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter time.Duration // sets Retry-After when positive
}

func (e *apiError) Error() string { return e.msg }

func errBadRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, code: protocol.CodeBadRequest, msg: fmt.Sprintf(format, args...)}
}

func errNotFound(format string, args ...any) error {
	return &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: fmt.Sprintf(format, args...)}
}

func errConflict(format string, args ...any) error {
	return &apiError{status: http.StatusConflict, code: CodeConflict, msg: fmt.Sprintf(format, args...)}
}

func errClosed() error {
	return &apiError{status: http.StatusServiceUnavailable, code: protocol.CodeUnavailable, msg: "the portal is shutting down"}
}

// writeError writes err as a JSON refusal. Errors that are not refusals
// are internal errors.
func writeError(w http.ResponseWriter, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = &apiError{status: http.StatusInternalServerError, code: protocol.CodeUnavailable, msg: err.Error()}
	}
	if e.retryAfter > 0 {
		secs := int64((e.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	writeJSON(w, e.status, protocol.Error{Message: e.msg, Code: e.code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) // the client may be gone; nothing to do about it
}
