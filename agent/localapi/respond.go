package localapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"

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

// Header values shared by every answer. http.Header.Set would allocate a
// slice for each on each request; these are only ever replaced, never
// written into, and appending to one (len == cap) copies it.
var (
	contentTypeJSON = []string{"application/json"}
	contentTypeText = []string{"text/plain; charset=utf-8"}
	contentTypeHTML = []string{"text/html; charset=utf-8"}
	nosniff         = []string{"nosniff"}
	noStore         = []string{"no-store"}
)

// setCommonHeaders sets the answer's type and the headers every answer
// carries. contentType is one of the contentType* values above.
func setCommonHeaders(h http.Header, contentType []string) {
	h["Content-Type"] = contentType
	h["X-Content-Type-Options"] = nosniff
	h["Cache-Control"] = noStore
}

// answerEncoder encodes answers into a buffer kept between requests: an
// admission is small and frequent, and a kept buffer and encoder save it
// the allocations of json.MarshalIndent. The output is MarshalIndent's
// with a final newline.
type answerEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// maxKeptAnswer is the largest answer whose buffers go back to the pool:
// the status fits, a long audit log does not and is not kept.
const maxKeptAnswer = 64 << 10

var answerEncoders = sync.Pool{New: func() any {
	e := &answerEncoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetIndent("", "  ")
	return e
}}

// writeJSON answers v as indented JSON. A value that does not encode is
// an error returned before anything is written.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	e := answerEncoders.Get().(*answerEncoder)
	defer func() {
		if e.buf.Cap() <= maxKeptAnswer {
			e.buf.Reset()
			answerEncoders.Put(e)
		}
	}()
	if err := e.enc.Encode(v); err != nil {
		return fmt.Errorf("encoding answer: %w", err)
	}
	setCommonHeaders(w.Header(), contentTypeJSON)
	w.WriteHeader(status)
	w.Write(e.buf.Bytes()) // copied into the connection's buffer: e may be reused
	return nil
}

func writeText(w http.ResponseWriter, status int, s string) {
	setCommonHeaders(w.Header(), contentTypeText)
	w.WriteHeader(status)
	io.WriteString(w, s)
}

// decodeJSON reads a JSON request body into v: Content-Type
// application/json, at most maxBodyBytes, one value, no unknown fields.
func decodeJSON(r *http.Request, v any) error {
	// Every client sends exactly "application/json": only another
	// spelling (parameters, case, spaces) is worth parsing.
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &apiError{status: http.StatusUnsupportedMediaType, code: apitype.CodeUnsupportedMediaType,
				msg: "the body must be JSON sent with Content-Type: application/json"}
		}
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
// pid 4242", or the listener's kind when the peer is unknown. It is worked
// out once per connection.
func peerString(r *http.Request) string {
	ci := connFrom(r.Context())
	if ci.peer == "" {
		return ci.describe() // a connInfo made outside Serve
	}
	return ci.peer
}
