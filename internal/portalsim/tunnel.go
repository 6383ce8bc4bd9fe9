package portalsim

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/tunnel"
)

// The portal relays support SSH to appliances behind NAT: the appliance
// dials GET /api/v1/tunnel (acceptTunnel) for a tunnelled ssh.open, and the
// support engineer's `pbx-portal-sim tunnel NAME` reaches it through
// GET /admin/v1/pbxs/{ref}/tunnel (relayTunnel), one stream per
// connection. Open tunnels live in memory: a restarted portal has none
// until the appliances dial again.

// CodeNoTunnel: the PBX has no open tunnel to relay to.
const CodeNoTunnel = "no_tunnel"

// tunnels keeps the open tunnel of each PBX.
type tunnels struct {
	mu    sync.Mutex
	byPBX map[string]*tunnel.PortalSession
}

// put makes s the PBX's tunnel, ending the one it replaces, and forgets s
// when it ends.
func (ts *tunnels) put(pbxID string, s *tunnel.PortalSession) {
	ts.mu.Lock()
	old := ts.byPBX[pbxID]
	if ts.byPBX == nil {
		ts.byPBX = map[string]*tunnel.PortalSession{}
	}
	ts.byPBX[pbxID] = s
	ts.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go func() {
		<-s.Done()
		ts.mu.Lock()
		if ts.byPBX[pbxID] == s {
			delete(ts.byPBX, pbxID)
		}
		ts.mu.Unlock()
	}()
}

func (ts *tunnels) get(pbxID string) *tunnel.PortalSession {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.byPBX[pbxID]
}

// end closes the PBX's tunnel, if any, ending every session in it.
func (ts *tunnels) end(pbxID string) {
	ts.mu.Lock()
	s := ts.byPBX[pbxID]
	delete(ts.byPBX, pbxID)
	ts.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

func (ts *tunnels) endAll() {
	ts.mu.Lock()
	all := ts.byPBX
	ts.byPBX = nil
	ts.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
}

// acceptTunnel answers an appliance's signed tunnel upgrade: verified like
// a heartbeat, and accepted only for a tunnelled ssh.open of its PBX that
// has not ended.
func (p *Portal) acceptTunnel(w http.ResponseWriter, r *http.Request) {
	signed, err := tunnel.SignedRequest(r)
	if err != nil {
		writeError(w, errBadRequest("%v", err))
		return
	}
	var req protocol.TunnelRequest
	kid, err := p.verifyDeviceRequest(signed, protocol.TypeTunnel, &req, &req.Request)
	if err != nil {
		p.log.Info("tunnel refused", "err", err)
		writeError(w, err)
		return
	}
	var rep *reply
	err = p.update(func(now time.Time) error {
		if stale(req.Time, now) {
			rep = p.staleReply(req.Request, req.PBXID, now)
			return nil
		}
		if err := p.useNonce(kid, req.Nonce, now); err != nil {
			return err
		}
		rec := p.byID[req.PBXID]
		if rec == nil || rec.deleted() || rec.Device == nil || rec.Device.DeviceID != kid {
			return &apiError{status: http.StatusUnauthorized, code: protocol.CodeUnknownDevice,
				msg: fmt.Sprintf("appliance %q holds no PBX %q", kid, req.PBXID)}
		}
		if err := tunnelGrant(rec, req.CommandID, now); err != nil {
			return err
		}
		rep = &reply{answer: protocol.Answer{Status: protocol.StatusOK, Time: now, Nonce: req.Nonce, PBXID: rec.ID}}
		return nil
	})
	if err != nil {
		p.log.Info("tunnel refused", "pbx", req.PBXID, "command", req.CommandID, "err", err)
		writeError(w, err)
		return
	}
	answer, err := p.signAnswer(rep, false)
	if err != nil {
		writeError(w, err)
		return
	}
	if rep.answer.Status != protocol.StatusOK {
		// Stale: the signed answer carries the portal's time.
		w.Header().Set(protocol.TunnelHeader, answer)
		writeError(w, errConflict("the tunnel request's time is outside the portal's freshness window"))
		return
	}
	s, err := tunnel.Accept(w, r, answer, tunnel.Limits{})
	if err != nil {
		p.log.Info("tunnel upgrade failed", "pbx", req.PBXID, "err", err)
		return
	}
	p.log.Info("tunnel open", "pbx", req.PBXID, "command", req.CommandID)
	p.tunnels.put(req.PBXID, s)
}

// tunnelGrant checks that command id of rec is a tunnelled ssh.open that
// still grants access at now: not refused, failed or expired, not followed
// by another ssh.open or an ssh.close, within its TTL.
func tunnelGrant(rec *pbxRecord, id string, now time.Time) error {
	refuse := func(format string, args ...any) error {
		return &apiError{status: http.StatusForbidden, code: CodeNoTunnel,
			msg: fmt.Sprintf("PBX %q: ", rec.Name) + fmt.Sprintf(format, args...)}
	}
	at := -1
	for i, c := range rec.Commands {
		if c.ID == id {
			at = i
		}
	}
	if at < 0 {
		return refuse("no command %q", id)
	}
	c := rec.Commands[at]
	switch {
	case c.Type != protocol.CommandSSHOpen || !c.Tunnel:
		return refuse("command %s is not a tunnelled ssh.open", id)
	case c.State == CommandExpired || c.State == string(protocol.CommandRefused) || c.State == string(protocol.CommandFailed):
		return refuse("command %s opened no tunnel (%s)", id, c.State)
	}
	for _, later := range rec.Commands[at+1:] {
		if later.Type == protocol.CommandSSHOpen || later.Type == protocol.CommandSSHClose {
			return refuse("command %s was superseded by %s (%s)", id, later.ID, later.Type)
		}
	}
	until := c.ExpiresAt.Add(c.TTL.Duration()) // the latest the agent may have applied it
	if res := c.Result; res != nil && res.SSH != nil && !res.SSH.Until.IsZero() {
		until = res.SSH.Until
	}
	if !now.Before(until) {
		return refuse("command %s's access ended at %s", id, until.UTC().Format(time.RFC3339))
	}
	return nil
}

// relayTunnel connects a support engineer (a WebSocket from
// `pbx-portal-sim tunnel`) to a new stream of the PBX's tunnel.
func (p *Portal) relayTunnel(w http.ResponseWriter, r *http.Request) {
	var pbxID, name string
	err := p.update(func(now time.Time) error {
		rec, err := p.lookup(r.PathValue("ref"), now)
		if err != nil {
			return err
		}
		pbxID, name = rec.ID, rec.Name
		return nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	s := p.tunnels.get(pbxID)
	if s == nil {
		writeError(w, &apiError{status: http.StatusConflict, code: CodeNoTunnel, msg: fmt.Sprintf(
			"no tunnel is open for PBX %q: queue `pbx-portal-sim command %s ssh-open --tunnel --pubkey FILE` and wait for its appliance to dial in",
			name, name)})
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		// A question, not a session: is a tunnel open?
		writeJSON(w, http.StatusOK, TunnelView{PBX: name, Open: true, Streams: s.Streams()})
		return
	}
	st, err := s.Open(r.Context())
	if err != nil {
		writeError(w, &apiError{status: http.StatusBadGateway, code: CodeNoTunnel,
			msg: fmt.Sprintf("the tunnel of PBX %q refused a stream: %v", name, err)})
		return
	}
	defer st.Close()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	conn := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	defer conn.Close()
	p.log.Info("support session relayed", "pbx", name)
	Splice(conn, st)
}

// Splice copies a to b and b to a until either side ends, then closes
// both: an SSH session does not half-close.
func Splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}

// TunnelView answers GET /admin/v1/pbxs/{ref}/tunnel without an upgrade.
type TunnelView struct {
	PBX     string `json:"pbx"`
	Open    bool   `json:"open"`
	Streams int    `json:"streams"`
}

// TunnelOpen checks that PBX ref has an open tunnel; one without is an
// *AdminError with Code CodeNoTunnel.
func (c *Client) TunnelOpen(ctx context.Context, ref string) error {
	var out TunnelView
	return c.do(ctx, http.MethodGet, pbxPath(ref, "/tunnel"), nil, &out)
}

// Tunnel connects to a new support session through the open tunnel of PBX
// ref. A PBX without one is an *AdminError with Code CodeNoTunnel.
func (c *Client) Tunnel(ctx context.Context, ref string) (net.Conn, error) {
	ws, resp, err := websocket.Dial(ctx, c.BaseURL+pbxPath(ref, "/tunnel"), &websocket.DialOptions{
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			var b []byte
			if resp.Body != nil {
				b, _ = io.ReadAll(resp.Body) // at most 1 KiB, kept by websocket.Dial
			}
			return nil, refusalOf(resp, b)
		}
		return nil, fmt.Errorf("reaching the portal simulator's tunnel relay at %s: %w", c.BaseURL, err)
	}
	return websocket.NetConn(context.WithoutCancel(ctx), ws, websocket.MessageBinary), nil
}
