package localapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// apiError is an answer other than success: its status, its code and a
// message for people. err, when set, is the cause, logged for server errors.
type apiError struct {
	status int
	code   string
	msg    string
	err    error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

func tooLarge() *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: apitype.CodeTooLarge,
		msg: fmt.Sprintf("request body is larger than %d KiB", maxBodyBytes>>10)}
}

// handleError answers every failed request: {"error", "code"} with the
// status of its apiError, or 500 for anything else. Server errors are logged.
func (s *Server) handleError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &mbe):
		ae = tooLarge()
	default:
		ae = &apiError{status: http.StatusInternalServerError, code: apitype.CodeInternal, msg: err.Error(), err: err}
	}
	level := slog.LevelDebug
	switch {
	case ae.status == http.StatusInternalServerError:
		level = slog.LevelError
	case ae.status >= 500:
		level = slog.LevelWarn
	}
	s.log.Log(r.Context(), level, "local API request failed", "method", r.Method, "path", r.URL.Path,
		"status", ae.status, "code", ae.code, "err", ae.msg, peerAttr(r))
	if ae.status == http.StatusRequestEntityTooLarge {
		// Close rather than read the rest of the body: the server would
		// otherwise wait for it before answering.
		w.Header().Set("Connection", "close")
	} else if r.Body != nil && r.ContentLength <= maxBodyBytes {
		// A refused request's small body is read before the answer:
		// net/http does not read it for a connection it closes next
		// (HTTP/1.0), and closing with it unread makes the kernel reset the
		// connection, which a client may see before the answer.
		io.CopyN(io.Discard, r.Body, maxBodyBytes)
	}
	if werr := writeJSON(w, ae.status, apitype.ErrorBody{Error: ae.msg, Code: ae.code}); werr != nil {
		s.log.Error("local API: writing an error answer", "err", werr)
	}
}

func setCommonHeaders(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
}

// writeJSON answers v as JSON. A value that does not encode is an error
// returned before anything is written.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding answer: %w", err)
	}
	setCommonHeaders(w.Header(), "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return nil
}

func writeText(w http.ResponseWriter, status int, s string) {
	setCommonHeaders(w.Header(), "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, s)
}

// decodeJSON reads a JSON request body into v: Content-Type
// application/json, at most maxBodyBytes, one value, no unknown fields.
func decodeJSON(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &apiError{status: http.StatusUnsupportedMediaType, code: apitype.CodeUnsupportedMediaType,
			msg: "the body must be JSON sent with Content-Type: application/json"}
	}
	if r.ContentLength > maxBodyBytes {
		return tooLarge() // without reading it
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		if err == nil {
			err = errors.New("more than one JSON value")
		}
		return bodyError(err)
	}
	return nil
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge()
	}
	// encoding/json errors name offsets, types and fields, never values:
	// safe to show and log even for a body holding a key.
	return &apiError{status: http.StatusBadRequest, code: apitype.CodeBadRequest, msg: "invalid JSON body: " + err.Error()}
}

// peerAttr describes the request's peer for logs.
func peerAttr(r *http.Request) slog.Attr {
	ci := connFrom(r.Context())
	if ci.creds == nil {
		return slog.Group("peer", "kind", ci.kind.String())
	}
	return slog.Group("peer", "kind", ci.kind.String(), "uid", ci.creds.uid, "gid", ci.creds.gid, "pid", ci.creds.pid)
}

// peerString describes the request's peer for the audit log: "uid 1001
// pid 4242", or the listener's kind when the peer is unknown.
func peerString(r *http.Request) string {
	ci := connFrom(r.Context())
	if ci.creds == nil {
		return ci.kind.String()
	}
	return fmt.Sprintf("uid %d pid %d", ci.creds.uid, ci.creds.pid)
}
