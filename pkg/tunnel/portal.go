package tunnel

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"

	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// ErrNoRequest: an upgrade without the signed tunnel request.
var ErrNoRequest = errors.New("the tunnel upgrade carries no signed " + protocol.TunnelHeader + " header")

// SignedRequest returns the compact JWS an upgrade carries, for the portal
// to verify with the device key it knows.
func SignedRequest(r *http.Request) (string, error) {
	h := r.Header.Get(protocol.TunnelHeader)
	if h == "" {
		return "", ErrNoRequest
	}
	return h, nil
}

// VerifyRequest checks the signed tunnel request of an upgrade against the
// device key the portal holds for the appliance. Freshness and nonces are
// the portal's to judge, as for every request.
func VerifyRequest(r *http.Request, device ed25519.PublicKey) (*protocol.TunnelRequest, error) {
	compact, err := SignedRequest(r)
	if err != nil {
		return nil, err
	}
	var req protocol.TunnelRequest
	if err := protocol.VerifyRequest(compact, protocol.TypeTunnel, device, &req); err != nil {
		return nil, fmt.Errorf("tunnel request: %w", err)
	}
	if req.PBXID == "" || !protocol.ValidCommandID(req.CommandID) {
		return nil, errors.New("tunnel request: it needs a PBX and the id of its ssh.open command")
	}
	return &req, nil
}

// PortalSession is the portal's end of one tunnel: it opens a stream per
// support session.
type PortalSession struct {
	mux    *yamux.Session
	cancel context.CancelFunc
}

// Accept upgrades a verified tunnel request, sending answer (the portal's
// signed acceptance, bound to the request's nonce) in the 101 response.
// On failure the response has been written.
func Accept(w http.ResponseWriter, r *http.Request, answer string, limits Limits) (*PortalSession, error) {
	w.Header().Set(protocol.TunnelHeader, answer)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{protocol.TunnelSubprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, fmt.Errorf("accepting the tunnel upgrade: %w", err)
	}
	if ws.Subprotocol() != protocol.TunnelSubprotocol {
		ws.Close(websocket.StatusPolicyViolation, "subprotocol "+protocol.TunnelSubprotocol+" required")
		return nil, fmt.Errorf("the agent did not offer subprotocol %q", protocol.TunnelSubprotocol)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	mux, err := yamux.Client(websocket.NetConn(ctx, ws, websocket.MessageBinary), limits.withDefaults().yamux())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("starting the tunnel multiplexer: %w", err)
	}
	return &PortalSession{mux: mux, cancel: cancel}, nil
}

// Open starts a stream to the appliance's support sshd.
func (p *PortalSession) Open(ctx context.Context) (net.Conn, error) {
	st, err := p.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("opening a tunnel stream: %w", err)
	}
	if ctx.Err() != nil {
		st.Close()
		return nil, ctx.Err()
	}
	return st, nil
}

// Close ends the tunnel and every stream in it.
func (p *PortalSession) Close() error {
	err := p.mux.Close()
	p.cancel()
	return err
}

// Done is closed when the tunnel has ended, from either end.
func (p *PortalSession) Done() <-chan struct{} { return p.mux.CloseChan() }

// Streams is how many streams are open.
func (p *PortalSession) Streams() int { return p.mux.NumStreams() }
