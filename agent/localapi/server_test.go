package localapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/agent/localapi/localapitest"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func ptr[T any](v T) *T { return &v }

func sampleStatus() apitype.Status {
	t0 := time.Date(2026, 5, 31, 10, 0, 0, 0, time.UTC)
	return apitype.Status{
		State:   "active",
		Summary: "Licensed and in touch with the portal.",
		PBX:     &apitype.PBXStatus{ID: "pbx-42", Name: "acme.example", Model: "WPBX-VM"},
		License: &apitype.LicenseStatus{
			Term: "monthly", TermEnd: ptr(t0.Add(24 * time.Hour)), Revision: 7,
			Profiles: map[string]apitype.ProfileStatus{"uc-premium": {Licensed: 10, Used: 8, Reserved: 1}, "pbx-basic": {Licensed: 3}},
			Overuse:  map[string]int{"uc-business": 2},
		},
		Heartbeat: apitype.HeartbeatStatus{LastSuccess: ptr(t0.Add(-time.Minute)), Next: ptr(t0.Add(time.Minute))},
		Deadlines: apitype.Deadlines{OfflineGraceEnd: ptr(t0.Add(30 * 24 * time.Hour))},
		SSH:       apitype.SSHStatus{Open: true, Port: 2222, Until: ptr(t0.Add(time.Hour))},
		WMS:       apitype.WMSStatus{Version: "7.02.20250609.3"},
		Commands:  []apitype.CommandStatus{{ID: "c1", Type: "ssh.open", State: "done", Result: "ok"}},
		Clock:     apitype.ClockStatus{Now: t0, LocalBehind: "3 hours"},
	}
}

// logBuffer collects the server's logs, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// harness is an API served on a unix socket and a TCP listener.
type harness struct {
	backend *localapitest.Backend
	ready   *atomic.Bool
	logs    *logBuffer
	sock    string
	tcpAddr string
	unix    *http.Client
	tcp     *http.Client
}

func unixClient(sock string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
}

func newHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	h := &harness{backend: new(localapitest.Backend), ready: new(atomic.Bool), logs: new(logBuffer)}
	h.backend.SetStatus(sampleStatus())
	h.ready.Store(true)
	cfg := Config{
		Backend: h.backend,
		Logger:  slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Ready:   h.ready.Load,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.sock = filepath.Join(t.TempDir(), "run", "api.sock")
	uln, err := srv.ListenUnix(ctx, h.sock, "", 0o660)
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.tcpAddr = tln.Addr().String()
	done := make(chan error, 2)
	go func() { done <- srv.Serve(ctx, uln, Unix) }()
	go func() { done <- srv.Serve(ctx, tln, TCP) }()
	h.unix = unixClient(h.sock)
	h.tcp = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("server log:\n%s", h.logs)
		}
	})
	return h
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) errorBody(t *testing.T) apitype.ErrorBody {
	t.Helper()
	var eb apitype.ErrorBody
	if err := json.Unmarshal(a.body, &eb); err != nil {
		t.Fatalf("error body %q: %v", a.body, err)
	}
	return eb
}

type request struct {
	via    string // "unix" (default) or "tcp"
	method string
	path   string
	body   string
	ctype  string // Content-Type; "" sends application/json when there is a body
	host   string
	origin string
}

func (h *harness) do(t *testing.T, rq request) answer {
	t.Helper()
	base, client := "http://local", h.unix
	if rq.via == "tcp" {
		base, client = "http://"+h.tcpAddr, h.tcp
	}
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	req, err := http.NewRequest(rq.method, base+rq.path, body)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case rq.ctype != "":
		req.Header.Set("Content-Type", rq.ctype)
	case rq.body != "":
		req.Header.Set("Content-Type", "application/json")
	}
	if rq.host != "" {
		req.Host = rq.host
	}
	if rq.origin != "" {
		req.Header.Set("Origin", rq.origin)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

const testKey = "eyJhbGciOiJFZERTQSJ9.c2VjcmV0LWtleS1wYXlsb2Fk.c2lnbmF0dXJl"

func TestAPI(t *testing.T) {
	h := newHarness(t, nil)
	invalid := &license.Error{Doc: "PBX key", Kind: license.ErrExpired, Detail: "it expired on 2026-01-01", Fix: "ask the portal for a new key"}
	activate := request{method: "POST", path: "/v1/activate", body: `{"key": "` + testKey + `"}`}
	with := func(r request, edit func(*request)) request { edit(&r); return r }

	tests := []struct {
		name        string
		req         request
		activateErr error
		refreshErr  error
		wantStatus  int
		wantCode    string // error code; "" for a success
		wantMsg     string // part of the error message
		wantKeys    int    // Activate calls
		wantRefresh int    // Refresh calls
		wantStatusJSON,
		wantText bool
	}{
		{name: "status over unix", req: request{method: "GET", path: "/v1/status"}, wantStatus: 200, wantStatusJSON: true},
		{name: "status over tcp", req: request{via: "tcp", method: "GET", path: "/v1/status"}, wantStatus: 200, wantStatusJSON: true},
		{name: "status with origin is a read", req: request{method: "GET", path: "/v1/status", origin: "http://evil.example"}, wantStatus: 200, wantStatusJSON: true},
		{name: "healthz over unix", req: request{method: "GET", path: "/healthz"}, wantStatus: 200, wantText: true},
		{name: "healthz over tcp", req: request{via: "tcp", method: "GET", path: "/healthz"}, wantStatus: 200, wantText: true},

		{name: "activate", req: activate, wantStatus: 200, wantKeys: 1, wantStatusJSON: true},
		{name: "activate with host localhost", req: with(activate, func(r *request) { r.host = "localhost" }), wantStatus: 200, wantKeys: 1, wantStatusJSON: true},
		{name: "activate invalid key", req: activate, activateErr: fmt.Errorf("activating: %w", invalid),
			wantStatus: 400, wantCode: apitype.CodeInvalidKey, wantMsg: "refused by this appliance: " + invalid.Error(), wantKeys: 1},
		{name: "activate key refused by the portal", req: activate,
			activateErr: fmt.Errorf("%w (%w): PBX key expired", apitype.ErrRefused, apitype.ErrInvalidKey),
			wantStatus:  400, wantCode: apitype.CodeInvalidKey, wantMsg: "refused by the portal (invalid PBX key): PBX key expired", wantKeys: 1},
		{name: "activate refused locally", req: activate,
			activateErr: fmt.Errorf("%w: this appliance already holds PBX pbx-1", apitype.ErrRefusedLocally),
			wantStatus:  409, wantCode: apitype.CodeRefused, wantMsg: "refused by this appliance: this appliance already holds", wantKeys: 1},
		{name: "activate refused", req: activate, activateErr: fmt.Errorf("PBX pbx-42 is bound to another appliance: %w", apitype.ErrRefused),
			wantStatus: 409, wantCode: apitype.CodeRefused, wantMsg: "bound to another appliance", wantKeys: 1},
		{name: "activate unreachable", req: activate, activateErr: fmt.Errorf("dial tcp: connection refused: %w", apitype.ErrUnreachable),
			wantStatus: 503, wantCode: apitype.CodePortalUnreachable, wantMsg: "connection refused", wantKeys: 1},
		{name: "activate internal", req: activate, activateErr: errors.New("disk full"),
			wantStatus: 500, wantCode: apitype.CodeInternal, wantMsg: "disk full", wantKeys: 1},
		{name: "activate without json content type", req: with(activate, func(r *request) { r.ctype = "text/plain" }),
			wantStatus: 415, wantCode: apitype.CodeUnsupportedMediaType},
		{name: "activate json with charset", req: with(activate, func(r *request) { r.ctype = "application/json; charset=utf-8" }),
			wantStatus: 200, wantKeys: 1, wantStatusJSON: true},
		{name: "activate bad json", req: with(activate, func(r *request) { r.body = `{"key":` }), wantStatus: 400, wantCode: apitype.CodeBadRequest},
		{name: "activate unknown field", req: with(activate, func(r *request) { r.body = `{"kee": "x"}` }), wantStatus: 400, wantCode: apitype.CodeBadRequest, wantMsg: "kee"},
		{name: "activate two values", req: with(activate, func(r *request) { r.body = `{"key": "a"} {}` }), wantStatus: 400, wantCode: apitype.CodeBadRequest},
		{name: "activate empty key", req: with(activate, func(r *request) { r.body = `{"key": " "}` }), wantStatus: 400, wantCode: apitype.CodeInvalidKey},
		{name: "activate over tcp", req: with(activate, func(r *request) { r.via = "tcp" }),
			wantStatus: 403, wantCode: apitype.CodeForbidden, wantMsg: "writes go through the unix socket"},
		{name: "activate with origin", req: with(activate, func(r *request) { r.origin = "http://evil.example" }),
			wantStatus: 403, wantCode: apitype.CodeForbidden, wantMsg: "Origin"},
		{name: "activate with empty origin", req: with(activate, func(r *request) { r.origin = "null" }),
			wantStatus: 403, wantCode: apitype.CodeForbidden, wantMsg: "Origin"},
		{name: "activate with foreign host", req: with(activate, func(r *request) { r.host = "evil.example" }),
			wantStatus: 403, wantCode: apitype.CodeForbidden, wantMsg: `"evil.example"`},
		{name: "activate with loopback host on unix", req: with(activate, func(r *request) { r.host = "127.0.0.1:9731" }),
			wantStatus: 403, wantCode: apitype.CodeForbidden},

		{name: "refresh", req: request{method: "POST", path: "/v1/refresh"}, wantStatus: 200, wantRefresh: 1, wantStatusJSON: true},
		{name: "refresh unreachable", req: request{method: "POST", path: "/v1/refresh"}, refreshErr: fmt.Errorf("portal timed out: %w", apitype.ErrUnreachable),
			wantStatus: 503, wantCode: apitype.CodePortalUnreachable, wantMsg: "portal timed out", wantRefresh: 1},
		{name: "refresh other error", req: request{method: "POST", path: "/v1/refresh"}, refreshErr: errors.New("bad answer"),
			wantStatus: 503, wantCode: apitype.CodePortalUnreachable, wantMsg: "bad answer", wantRefresh: 1},
		{name: "refresh not activated", req: request{method: "POST", path: "/v1/refresh"}, refreshErr: apitype.ErrNotActivated,
			wantStatus: 409, wantCode: apitype.CodeNotActivated, wantMsg: "pbx-agent activate", wantRefresh: 1},
		{name: "refresh refused", req: request{method: "POST", path: "/v1/refresh"}, refreshErr: fmt.Errorf("%w: suspended", apitype.ErrRefused),
			wantStatus: 409, wantCode: apitype.CodeRefused, wantMsg: "suspended", wantRefresh: 1},
		{name: "refresh over tcp", req: request{via: "tcp", method: "POST", path: "/v1/refresh"}, wantStatus: 403, wantCode: apitype.CodeForbidden},
		{name: "refresh with origin", req: request{method: "POST", path: "/v1/refresh", origin: "https://evil.example"}, wantStatus: 403, wantCode: apitype.CodeForbidden},
		{name: "refresh with foreign host over tcp", req: request{via: "tcp", method: "POST", path: "/v1/refresh", host: "evil.example:9731"},
			wantStatus: 403, wantCode: apitype.CodeForbidden},

		{name: "unknown path", req: request{method: "GET", path: "/v1/nothing"}, wantStatus: 404, wantCode: apitype.CodeNotFound},
		{name: "unknown path over tcp", req: request{via: "tcp", method: "POST", path: "/v2/"}, wantStatus: 404, wantCode: apitype.CodeNotFound},
		{name: "post to the status page", req: request{via: "tcp", method: "POST", path: "/"}, wantStatus: 405, wantCode: apitype.CodeMethod, wantMsg: "use GET"},
		{name: "get activate", req: request{method: "GET", path: "/v1/activate"}, wantStatus: 405, wantCode: apitype.CodeMethod, wantMsg: "use POST"},
		{name: "delete status", req: request{method: "DELETE", path: "/v1/status"}, wantStatus: 405, wantCode: apitype.CodeMethod, wantMsg: "use GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.backend.SetActivateErr(tt.activateErr)
			h.backend.SetRefreshErr(tt.refreshErr)
			h.backend.ClearCalls()

			a := h.do(t, tt.req)
			if a.status != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %s", a.status, tt.wantStatus, a.body)
			}
			if got := a.header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q", got)
			}
			if got := a.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			ctype := a.header.Get("Content-Type")
			switch {
			case tt.wantText:
				if ctype != "text/plain; charset=utf-8" || string(a.body) != "ok\n" {
					t.Errorf("text answer %q %q", ctype, a.body)
				}
			case ctype != "application/json":
				t.Errorf("Content-Type = %q, want application/json", ctype)
			}
			if tt.wantCode != "" {
				eb := a.errorBody(t)
				if eb.Code != tt.wantCode || !strings.Contains(eb.Error, tt.wantMsg) || eb.Error == "" {
					t.Errorf("error body = %+v, want code %q and a message with %q", eb, tt.wantCode, tt.wantMsg)
				}
			}
			if tt.wantStatus == 405 && a.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if tt.wantStatusJSON {
				var got apitype.Status
				if err := json.Unmarshal(a.body, &got); err != nil {
					t.Fatal(err)
				}
				// The server adds its listeners to the backend's status.
				if l := got.Listeners; l == nil || l.Socket == nil || l.Socket.Address != h.sock || l.HTTP == nil || l.HTTP.Address != h.tcpAddr {
					t.Errorf("listeners = %+v, want the socket %s and %s", l, h.sock, h.tcpAddr)
				}
				got.Listeners = nil
				if want := sampleStatus(); !reflect.DeepEqual(got, want) {
					t.Errorf("status round trip:\n got %+v\nwant %+v", got, want)
				}
			}
			keys, refreshes := h.backend.Activations(), h.backend.Refreshes()
			if len(keys) != tt.wantKeys || refreshes != tt.wantRefresh {
				t.Errorf("backend saw %d activations and %d refreshes, want %d and %d", len(keys), refreshes, tt.wantKeys, tt.wantRefresh)
			}
			if tt.wantKeys > 0 && keys[0] != testKey {
				t.Errorf("backend got key %q", keys[0])
			}
		})
	}
	if strings.Contains(h.logs.String(), "c2VjcmV0") {
		t.Errorf("the key reached the log:\n%s", h.logs)
	}
}

func TestAudit(t *testing.T) {
	h := newHarness(t, nil)
	t0 := time.Date(2027, 1, 31, 10, 0, 0, 0, time.UTC)
	events := []audit.Event{
		{Time: t0, Kind: "activated", Fields: map[string]any{"pbx": "pbx-42"}},
		{Time: t0.Add(time.Minute), Kind: "state.changed", Fields: map[string]any{"from": "active", "to": "stopping", "why": "every licence at zero"}},
		{Time: t0.Add(2 * time.Minute), Kind: "deleted"},
	}
	tests := []struct {
		name       string
		req        request
		events     []audit.Event
		auditErr   error
		wantStatus int
		wantKinds  []string
		wantLimit  int // -1: Audit not called
	}{
		{name: "over unix", req: request{method: "GET", path: "/v1/audit"}, events: events, wantStatus: 200,
			wantKinds: []string{"activated", "state.changed", "deleted"}},
		// Every local user reaches the TCP listener: the audit is for root
		// and the read group, on the socket.
		{name: "over tcp: refused", req: request{via: "tcp", method: "GET", path: "/v1/audit"}, events: events, wantStatus: 403, wantLimit: -1},
		{name: "over tcp with a limit: refused", req: request{via: "tcp", method: "GET", path: "/v1/audit?limit=1"}, events: events, wantStatus: 403, wantLimit: -1},
		{name: "the last two", req: request{method: "GET", path: "/v1/audit?limit=2"}, events: events, wantStatus: 200,
			wantKinds: []string{"state.changed", "deleted"}, wantLimit: 2},
		{name: "no events is an empty list", req: request{method: "GET", path: "/v1/audit"}, wantStatus: 200, wantKinds: []string{}},
		{name: "a bad limit", req: request{method: "GET", path: "/v1/audit?limit=-1"}, wantStatus: 400, wantLimit: -1},
		{name: "an unreadable log", req: request{method: "GET", path: "/v1/audit"}, auditErr: errors.New("permission denied"), wantStatus: 500},
		{name: "post", req: request{method: "POST", path: "/v1/audit"}, wantStatus: 405, wantLimit: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.backend.SetAudit(tt.events, tt.auditErr)
			h.backend.ClearCalls()
			a := h.do(t, tt.req)
			if a.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", a.status, tt.wantStatus, a.body)
			}
			limits := h.backend.AuditLimits()
			if tt.wantLimit == -1 && len(limits) != 0 || tt.wantLimit >= 0 && (len(limits) != 1 || limits[0] != tt.wantLimit) {
				t.Errorf("Audit calls with limits %v, want %d", limits, tt.wantLimit)
			}
			if tt.wantKinds == nil {
				return
			}
			var got apitype.AuditLog
			if err := json.Unmarshal(a.body, &got); err != nil || got.Events == nil {
				t.Fatalf("body %s: %v", a.body, err)
			}
			var kinds []string
			for _, e := range got.Events {
				kinds = append(kinds, e.Kind)
			}
			if !reflect.DeepEqual(append([]string{}, kinds...), tt.wantKinds) {
				t.Errorf("kinds = %v, want %v", kinds, tt.wantKinds)
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	h := newHarness(t, nil)
	h.ready.Store(false)
	for _, via := range []string{"unix", "tcp"} {
		t.Run("not ready over "+via, func(t *testing.T) {
			a := h.do(t, request{via: via, method: "GET", path: "/readyz"})
			if a.status != 503 || a.errorBody(t).Code != apitype.CodeNotReady {
				t.Errorf("readyz = %d %s, want 503 not_ready", a.status, a.body)
			}
		})
	}
	h.ready.Store(true)
	for _, via := range []string{"unix", "tcp"} {
		t.Run("ready over "+via, func(t *testing.T) {
			a := h.do(t, request{via: via, method: "GET", path: "/readyz"})
			if a.status != 200 || string(a.body) != "ok\n" {
				t.Errorf("readyz = %d %q, want 200 ok", a.status, a.body)
			}
		})
	}
}

// TestLargeBody sends 10 MB: the answer is 413 without the server reading
// it all, and the server goes on serving. The request is written by hand so
// the answer is read while the body is still being sent.
func TestLargeBody(t *testing.T) {
	h := newHarness(t, nil)
	const size = 10 << 20
	tests := []struct {
		name    string
		chunked bool // no Content-Length: the limit is found while reading
	}{
		{name: "declared length"},
		{name: "chunked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("unix", h.sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			head := "POST /v1/activate HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\n"
			if tt.chunked {
				head += "Transfer-Encoding: chunked\r\n\r\n"
			} else {
				head += fmt.Sprintf("Content-Length: %d\r\n\r\n", size)
			}
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				w := bufio.NewWriter(conn)
				w.WriteString(head)
				chunk := bytes.Repeat([]byte("a"), 32<<10)
				w.WriteString(`{"key": "`)
				for n := 0; n < size; n += len(chunk) {
					if tt.chunked {
						fmt.Fprintf(w, "%x\r\n", len(chunk))
					}
					if _, err := w.Write(chunk); err != nil {
						return // the server closed: expected
					}
					if tt.chunked {
						w.WriteString("\r\n")
					}
				}
				if tt.chunked {
					w.WriteString("0\r\n\r\n")
				}
				w.Flush()
			}()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			conn.Close() // ends the writer if it is still going
			<-wrote
			if resp.StatusCode != 413 || !strings.Contains(string(body), apitype.CodeTooLarge) {
				t.Errorf("answer = %d %s, want 413 too_large", resp.StatusCode, body)
			}
			if keys := h.backend.Activations(); len(keys) != 0 {
				t.Error("the backend saw the oversized request")
			}
			if a := h.do(t, request{method: "GET", path: "/v1/status"}); a.status != 200 {
				t.Errorf("next request = %d, want 200", a.status)
			}
		})
	}
}

// TestConnectionLimit fills every connection slot with requests under way
// (their headers unfinished): a further client waits, and gets in when a
// slot frees.
func TestConnectionLimit(t *testing.T) {
	h := newHarness(t, nil)
	var held []net.Conn
	for range MaxConnsUnix {
		c, err := net.Dial("unix", h.sock)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, "GET /healthz HTTP/1.1\r\n")
		held = append(held, c)
	}
	got := make(chan int, 1)
	go func() {
		c := unixClient(h.sock)
		resp, err := c.Get("http://local/healthz")
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	select {
	case code := <-got:
		t.Fatalf("a connection past the limit was served (%d)", code)
	case <-time.After(200 * time.Millisecond): // a bound on waiting, not a sleep: the answer must not come
	}
	for _, c := range held {
		c.Close()
	}
	select {
	case code := <-got:
		if code != 200 {
			t.Errorf("after slots freed: %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting client was never served")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newJSONRequest(method, url string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequest(method, url, body)
	if err == nil && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, err
}

// blockingBackend holds Activate until released.
type blockingBackend struct {
	localapitest.Backend
	entered, release chan struct{}
}

func (b *blockingBackend) Activate(ctx context.Context, key string) error {
	close(b.entered)
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.Backend.Activate(ctx, key)
}

// TestGracefulShutdown ends Serve's context while an activation is in
// flight: the activation finishes and is answered, then Serve returns.
func TestGracefulShutdown(t *testing.T) {
	b := &blockingBackend{entered: make(chan struct{}), release: make(chan struct{})}
	b.SetStatus(sampleStatus())
	srv, err := New(Config{Backend: b, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := srv.ListenUnix(ctx, sock, "", 0o660)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln, Unix) }()

	answered := make(chan int, 1)
	go func() {
		req, _ := newJSONRequest("POST", "http://local/v1/activate", strings.NewReader(`{"key": "k"}`))
		resp, err := unixClient(sock).Do(req)
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-b.entered
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	case code := <-answered:
		t.Fatalf("answered %d before the backend finished", code)
	default:
	}
	close(b.release)
	if code := <-answered; code != 200 {
		t.Errorf("in-flight activation answered %d, want 200", code)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil after a graceful stop", err)
	}
}
