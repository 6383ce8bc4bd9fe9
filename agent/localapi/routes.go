package localapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// perm is what a route asks of its peer.
type perm int

const (
	permUnset      perm = iota // a route must say; a test checks
	permAny                    // any peer, even one with no rights: health probes
	permRead                   // the read group, write peers, and TCP peers
	permWrite                  // root, the daemon's user, api.write_groups; never TCP, never a browser
	permAdmit                  // the read group and write peers, on the unix socket only; never a browser
	permReadSocket             // the read group and write peers, on the unix socket only: the audit log
)

func (p perm) String() string {
	return [...]string{"unset", "any", "read", "write", "admit", "read-socket"}[p]
}

// handler serves one route. It opens with its own permission check, and
// returns errors for handleError to answer.
type handler func(*Server, http.ResponseWriter, *http.Request) error

type route struct {
	perm perm
	h    handler
}

// routes is the whole API, keyed "METHOD /path". Keep it sorted (a test
// checks) and give every route a permission.
var routes = map[string]route{
	"GET /":              {permRead, (*Server).servePage},
	"GET /healthz":       {permAny, (*Server).serveHealthz},
	"GET /metrics":       {permRead, (*Server).serveMetrics},
	"GET /readyz":        {permAny, (*Server).serveReadyz},
	"GET /v1/audit":      {permReadSocket, (*Server).serveAudit},
	"GET /v1/status":     {permRead, (*Server).serveStatus},
	"POST /v1/activate":  {permWrite, (*Server).serveActivate},
	"POST /v1/admission": {permAdmit, (*Server).serveAdmission},

	"POST /v1/offline/licence": {permWrite, (*Server).serveOfflineLicence},
	"POST /v1/offline/report":  {permWrite, (*Server).serveOfflineReport},
	"POST /v1/offline/request": {permWrite, (*Server).serveOfflineRequest},

	"POST /v1/refresh":   {permWrite, (*Server).serveRefresh},
	"POST /v1/ssh/close": {permWrite, (*Server).serveSSHClose},
}

// ServeHTTP routes a request: 404 or 405 when no route matches, otherwise the
// route's permission, then its handler, with one place answering errors.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ci := connFrom(r.Context())
	if lc, ok := ci.conn.(*limitConn); ok && lc.owner != nil {
		lc.owner.serving(lc) // not a slow client: see limitListener
	}
	if ci.kind == TCP {
		// Every request on TCP, reads included, is addressed to a loopback
		// name: a web page that rebinds its own name to 127.0.0.1 sends
		// that name, and may not read the status through the browser.
		if err := loopbackHost(r.Host); err != nil {
			s.handleError(w, r, err)
			return
		}
		if ci.gate != nil {
			select {
			case ci.gate <- struct{}{}:
				defer func() { <-ci.gate }()
			case <-r.Context().Done():
				return
			}
		}
	}
	var err error
	if rt, ok := routes[r.Method+" "+r.URL.Path]; ok {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if r.ContentLength > maxBodyBytes {
			// Refused unread, on every route, whether it reads a body or not.
			err = tooLarge()
		} else if err = s.permit(r, rt.perm); err == nil {
			err = rt.h(s, w, r)
		}
	} else {
		err = notRouted(w, r)
	}
	if err != nil {
		s.handleError(w, r, err)
	}
}

func notRouted(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for key := range routes {
		method, path, _ := strings.Cut(key, " ")
		if path == r.URL.Path {
			allow = append(allow, method)
		}
	}
	if len(allow) == 0 {
		return &apiError{status: http.StatusNotFound, code: apitype.CodeNotFound, msg: "no such endpoint: " + r.URL.Path}
	}
	slices.Sort(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	return &apiError{status: http.StatusMethodNotAllowed, code: apitype.CodeMethod,
		msg: fmt.Sprintf("%s %s is not allowed: use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))}
}

// permit is the door: nil when the request's peer has the permission need.
// Write endpoints also refuse requests made by a web browser, so that a web
// page cannot drive the API through CSRF or DNS rebinding.
func (s *Server) permit(r *http.Request, need perm) error {
	ci := connFrom(r.Context())
	switch need {
	case permAny:
		return nil
	case permRead:
		if ci.access >= accessRead {
			return nil
		}
	case permWrite:
		if ci.access >= accessWrite {
			return browserGuard(r, ci)
		}
	case permAdmit:
		// Admission reserves seats: a TCP peer (any local process, or a
		// browser) may not, whatever its rights to read.
		if ci.kind == Unix && ci.access >= accessRead {
			return browserGuard(r, ci)
		}
	case permReadSocket:
		// Every local user reaches the TCP listener: what only the read
		// group may see is served on the socket alone.
		if ci.kind == Unix && ci.access >= accessRead {
			return nil
		}
	}
	return &apiError{status: http.StatusForbidden, code: apitype.CodeForbidden, msg: s.deniedMessage(ci, need)}
}

// loopbackHost refuses a request on the TCP listener whose Host is not a
// loopback name (localhost) or address, whatever the port; a request
// without Host (HTTP/1.0; browsers always send one) passes.
func loopbackHost(host string) error {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if name == "" || strings.EqualFold(name, "localhost") {
		return nil
	}
	if ip, err := netip.ParseAddr(name); err == nil && ip.Unmap().IsLoopback() {
		return nil
	}
	return &apiError{status: http.StatusForbidden, code: apitype.CodeForbidden,
		msg: fmt.Sprintf("Host %q is refused on the TCP listener: address it as 127.0.0.1 or localhost (a web page that rebinds its own name to this machine sends that name)", host)}
}

// browserGuard refuses requests carrying an Origin header, or a Host other
// than the listener's own names.
func browserGuard(r *http.Request, ci *connInfo) error {
	if _, ok := r.Header["Origin"]; ok {
		return &apiError{status: http.StatusForbidden, code: apitype.CodeForbidden,
			msg: "requests from web pages (with an Origin header) are refused on this endpoint"}
	}
	if !slices.Contains(ci.hosts, strings.ToLower(r.Host)) {
		return &apiError{status: http.StatusForbidden, code: apitype.CodeForbidden,
			msg: fmt.Sprintf("Host %q is refused on this endpoint: address the listener by its own name", r.Host)}
	}
	return nil
}

func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permAny); err != nil {
		return err
	}
	writeText(w, http.StatusOK, "ok\n")
	return nil
}

func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permAny); err != nil {
		return err
	}
	if !s.ready() {
		return &apiError{status: http.StatusServiceUnavailable, code: apitype.CodeNotReady, msg: "pbx-agent is starting: state not loaded or listeners not bound yet"}
	}
	writeText(w, http.StatusOK, "ok\n")
	return nil
}

// status is the backend's status with the listeners' states.
func (s *Server) status() apitype.Status {
	st := s.backend.Status()
	st.Listeners = s.listenersStatus()
	return st
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permRead); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.status())
}

// maxAuditLimit bounds ?limit= of GET /v1/audit; the log itself is capped.
const maxAuditLimit = 100000

// serveAudit answers the audit log, oldest first; ?limit=N keeps the last N.
func (s *Server) serveAudit(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permReadSocket); err != nil {
		return err
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxAuditLimit {
			return &apiError{status: http.StatusBadRequest, code: apitype.CodeBadRequest,
				msg: fmt.Sprintf("limit %q: want a whole number from 0 (everything) to %d", v, maxAuditLimit)}
		}
		limit = n
	}
	evs, err := s.backend.Audit(r.Context(), limit)
	if err != nil {
		return &apiError{status: http.StatusInternalServerError, code: apitype.CodeInternal, msg: "reading the audit log: " + err.Error(), err: err}
	}
	if evs == nil {
		evs = []audit.Event{}
	}
	return writeJSON(w, http.StatusOK, apitype.AuditLog{Events: evs})
}

// ActivateRequest is the body of POST /v1/activate.
type ActivateRequest struct {
	Key string `json:"key"`
}

func (s *Server) serveActivate(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permWrite); err != nil {
		return err
	}
	var req ActivateRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Key) == "" {
		return &apiError{status: http.StatusBadRequest, code: apitype.CodeInvalidKey, msg: `no key: the body is {"key": "<PBX key>"}`}
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTO)
	defer cancel()
	// The key is never logged: only the outcome and who asked.
	if err := s.backend.Activate(ctx, req.Key); err != nil {
		s.log.Info("activation through the local API failed", peerAttr(r), "err", err)
		return activationError(err)
	}
	st := s.status()
	s.log.Info("activated through the local API", peerAttr(r), "state", st.State)
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) serveRefresh(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permWrite); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTO)
	defer cancel()
	if err := s.backend.Refresh(ctx); err != nil {
		switch {
		case errors.Is(err, apitype.ErrNotActivated):
			return &apiError{status: http.StatusConflict, code: apitype.CodeNotActivated, msg: err.Error()}
		case errors.Is(err, apitype.ErrRefused):
			return &apiError{status: http.StatusConflict, code: apitype.CodeRefused, msg: err.Error()}
		}
		// Any other failure is the portal's: not reached, or answered badly.
		return &apiError{status: http.StatusServiceUnavailable, code: apitype.CodePortalUnreachable, msg: err.Error()}
	}
	return writeJSON(w, http.StatusOK, s.status())
}

// serveSSHClose closes support SSH access and answers the status.
func (s *Server) serveSSHClose(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permWrite); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTO)
	defer cancel()
	if err := s.backend.CloseSSH(ctx); err != nil {
		return &apiError{status: http.StatusInternalServerError, code: apitype.CodeInternal, msg: err.Error()}
	}
	return writeJSON(w, http.StatusOK, s.status())
}

// activationError maps a Backend.Activate error to its answer.
func activationError(err error) error {
	var le *license.Error
	switch {
	case errors.As(err, &le):
		// The daemon checked the key itself; the portal was not asked.
		return &apiError{status: http.StatusBadRequest, code: apitype.CodeInvalidKey, msg: apitype.ErrRefusedLocally.Error() + ": " + le.Error()}
	case errors.Is(err, apitype.ErrInvalidKey):
		return &apiError{status: http.StatusBadRequest, code: apitype.CodeInvalidKey, msg: err.Error()}
	case errors.Is(err, apitype.ErrRefused), errors.Is(err, apitype.ErrRefusedLocally):
		return &apiError{status: http.StatusConflict, code: apitype.CodeRefused, msg: err.Error()}
	case errors.Is(err, apitype.ErrUnreachable), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, code: apitype.CodePortalUnreachable, msg: err.Error()}
	}
	return &apiError{status: http.StatusInternalServerError, code: apitype.CodeInternal, msg: "activation failed: " + err.Error(), err: err}
}

// serveAdmission answers "may N more users of this profile be added":
// 200 {"allowed": true, "remaining": N}, 409 {"allowed": false, "reason"},
// 400 for an unknown profile or a bad count.
func (s *Server) serveAdmission(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permAdmit); err != nil {
		return err
	}
	var req apitype.AdmissionRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Profile) == "" {
		return &apiError{status: http.StatusBadRequest, code: apitype.CodeBadRequest,
			msg: `no profile: the body is {"profile": "uc-premium", "count": 1, "dry_run": false}`}
	}
	p, err := license.ParseProfile(req.Profile)
	if err != nil {
		return &apiError{status: http.StatusBadRequest, code: apitype.CodeUnknownProfile, msg: err.Error()}
	}
	count := 1
	if req.Count != nil {
		count = *req.Count
	}
	if count < 1 || count > apitype.MaxAdmissionCount {
		return &apiError{status: http.StatusBadRequest, code: apitype.CodeBadRequest,
			msg: fmt.Sprintf("count %d: ask for 1 to %d users", count, apitype.MaxAdmissionCount)}
	}
	adm := apitype.Admission{Profile: p, Count: count, DryRun: req.DryRun, Peer: peerString(r)}
	if ci := connFrom(r.Context()); ci.creds != nil {
		adm.PeerUID = &ci.creds.uid // the connection's, read only
	}
	ans := s.backend.Admit(r.Context(), adm)
	status := http.StatusOK
	if !ans.Allowed {
		status = http.StatusConflict
	}
	return writeJSON(w, status, ans)
}
