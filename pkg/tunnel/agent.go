package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// DialConfig is what the agent needs to open a tunnel.
type DialConfig struct {
	URL        string       // the portal's tunnel endpoint (ws, wss, http or https)
	HTTPClient *http.Client // proxy and CAs as for every portal request; nil: the default client
	Signer     *license.Signer
	Keyring    func() *license.Keyring // portal keys trusted now, read at each dial: a key revoked while a tunnel lasts is refused at its next dial
	PBXID      string
	CommandID  string           // the ssh.open command that opened the tunnel
	Now        func() time.Time // the licence clock
	Limits     Limits
}

// StaleError is a refusal because the request's time was outside the
// portal's freshness window. PortalTime is signed: the agent may adopt it
// and dial again at once.
type StaleError struct{ PortalTime time.Time }

func (e *StaleError) Error() string {
	return "the portal refused the tunnel as stale; its time is " + e.PortalTime.UTC().Format(time.RFC3339)
}

// Session is the agent's end of one tunnel connection.
type Session struct {
	mux    *yamux.Session
	limits Limits
	cancel context.CancelFunc
	Answer *protocol.Answer // the portal's signed acceptance
}

// Dial opens a tunnel to the portal: a WebSocket upgrade carrying a request
// signed by the device key, accepted only with the portal's signed answer
// to that very request.
func Dial(ctx context.Context, cfg DialConfig) (*Session, error) {
	if cfg.Signer == nil || cfg.Keyring == nil || cfg.Now == nil || cfg.PBXID == "" || cfg.CommandID == "" {
		return nil, errors.New("tunnel: dial needs a signer, a keyring, a clock, a PBX and a command id")
	}
	kr := cfg.Keyring()
	if kr == nil {
		return nil, errors.New("tunnel: no portal keyring is trusted")
	}
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	signed, err := cfg.Signer.Sign(protocol.TypeTunnel, protocol.TunnelRequest{
		Request:   protocol.Request{Time: cfg.Now().UTC(), Nonce: nonce},
		PBXID:     cfg.PBXID,
		CommandID: cfg.CommandID,
	})
	if err != nil {
		return nil, fmt.Errorf("signing the tunnel request: %w", err)
	}
	hdr := http.Header{}
	hdr.Set(protocol.TunnelHeader, signed)
	ws, resp, err := websocket.Dial(ctx, cfg.URL, &websocket.DialOptions{
		HTTPClient:      cfg.HTTPClient,
		HTTPHeader:      hdr,
		Subprotocols:    []string{protocol.TunnelSubprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, refusal(resp, err, kr, nonce, cfg.PBXID)
	}
	fail := func(err error) (*Session, error) {
		ws.Close(websocket.StatusPolicyViolation, "refused")
		return nil, err
	}
	if ws.Subprotocol() != protocol.TunnelSubprotocol {
		return fail(fmt.Errorf("the portal speaks WebSocket subprotocol %q, not %q", ws.Subprotocol(), protocol.TunnelSubprotocol))
	}
	answer, err := CheckAnswer(resp.Header.Get(protocol.TunnelHeader), kr, nonce, cfg.PBXID)
	if err != nil {
		return fail(err)
	}
	limits := cfg.Limits.withDefaults()
	connCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	// The agent is yamux's server: it accepts streams and opens none.
	mux, err := yamux.Server(websocket.NetConn(connCtx, ws, websocket.MessageBinary), limits.yamux())
	if err != nil {
		cancel()
		return fail(fmt.Errorf("starting the tunnel multiplexer: %w", err))
	}
	return &Session{mux: mux, limits: limits, cancel: cancel, Answer: answer}, nil
}

// CheckAnswer checks the portal's answer to a tunnel request: signed by a
// portal key of kr, answering the request with nonce, about pbxID, and ok.
// A stale answer is a *StaleError.
func CheckAnswer(compact string, kr *license.Keyring, nonce, pbxID string) (*protocol.Answer, error) {
	if compact == "" {
		return nil, errors.New("the portal's tunnel answer carries no signed " + protocol.TunnelHeader + " header")
	}
	a, err := protocol.VerifyAnswer(compact, kr, nonce, pbxID)
	if err != nil {
		return nil, fmt.Errorf("the portal's tunnel answer: %w", err)
	}
	switch a.Status {
	case protocol.StatusOK:
		return a, nil
	case protocol.StatusStale:
		return nil, &StaleError{PortalTime: a.Time}
	}
	return nil, fmt.Errorf("the portal answered the tunnel request with status %q (%s)", a.Status, a.Reason)
}

// refusal explains a failed upgrade: the portal's signed stale answer, its
// JSON refusal, or the transport's error.
func refusal(resp *http.Response, err error, kr *license.Keyring, nonce, pbxID string) error {
	if resp == nil {
		return fmt.Errorf("dialling the portal's tunnel: %w", err)
	}
	if h := resp.Header.Get(protocol.TunnelHeader); h != "" {
		if _, aerr := CheckAnswer(h, kr, nonce, pbxID); aerr != nil {
			return aerr
		}
	}
	var pe protocol.Error
	if resp.Body != nil {
		if b, rerr := io.ReadAll(resp.Body); rerr == nil && json.Unmarshal(b, &pe) == nil && pe.Message != "" {
			return fmt.Errorf("the portal refused the tunnel (HTTP %d): %w", resp.StatusCode, &pe)
		}
	}
	return fmt.Errorf("the portal refused the tunnel (HTTP %d): %w", resp.StatusCode, err)
}

func newNonce() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Close ends the session and every stream in it.
func (s *Session) Close() error {
	err := s.mux.Close()
	s.cancel()
	return err
}

// Done is closed when the session has ended, from either end.
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// Serve accepts the portal's streams and pipes each to target, a loopback
// host:port, until ctx ends or the session does; then it closes the
// session, waits for every stream to end and returns why it stopped.
// Streams beyond Limits.MaxStreams are closed at once.
func (s *Session) Serve(ctx context.Context, target string, ev Events) error {
	if err := checkLoopback(target); err != nil {
		s.Close()
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer s.Close()
	var active atomic.Int64
	for {
		st, err := s.mux.AcceptStream()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, io.EOF) {
				return fmt.Errorf("the tunnel ended: %w", err)
			}
			return fmt.Errorf("accepting a tunnel stream: %w", err)
		}
		if active.Add(1) > int64(s.limits.MaxStreams) {
			active.Add(-1)
			if ev.Refused != nil { // reported before the portal can see it
				ev.Refused(st.StreamID(), fmt.Sprintf("%d streams are open, the most allowed", s.limits.MaxStreams))
			}
			st.Close()
			continue
		}
		wg.Go(func() {
			defer active.Add(-1)
			s.pipe(ctx, st, target, ev)
		})
	}
}

// pipe connects one stream to target and copies both ways until either
// side ends.
func (s *Session) pipe(ctx context.Context, st *yamux.Stream, target string, ev Events) {
	if ev.Start != nil {
		ev.Start(st.StreamID())
	}
	end := StreamEnd{ID: st.StreamID()}
	defer func() {
		if ev.End != nil {
			ev.End(end)
		}
	}()
	defer st.Close()
	d := net.Dialer{Timeout: s.limits.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		end.Err = fmt.Errorf("connecting to the support sshd: %w", err)
		return
	}
	defer conn.Close()
	var once sync.Once
	done := make(chan struct{})
	finish := func(err error) {
		once.Do(func() {
			if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, yamux.ErrStreamClosed) {
				end.Err = err
			}
			close(done)
		})
	}
	var toTarget, toPortal atomic.Int64
	var copies sync.WaitGroup
	copies.Go(func() { finish(copyCounting(conn, st, &toTarget)) })
	copies.Go(func() { finish(copyCounting(st, conn, &toPortal)) })
	select {
	case <-done:
	case <-s.mux.CloseChan():
	}
	// Either side ending ends both: sshd does not half-close a session.
	conn.Close()
	st.Close()
	copies.Wait()
	end.ToTarget, end.ToPortal = toTarget.Load(), toPortal.Load()
}

func copyCounting(dst io.Writer, src io.Reader, n *atomic.Int64) error {
	buf := make([]byte, 32*1024)
	for {
		r, err := src.Read(buf)
		if r > 0 {
			w, werr := dst.Write(buf[:r])
			n.Add(int64(w))
			if werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checkLoopback refuses a target that is not a literal loopback address:
// the tunnel reaches the support sshd on this host and nothing else.
func checkLoopback(target string) error {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("tunnel target %q: %w", target, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("tunnel target %q is not a loopback address; the tunnel serves only the support sshd on this host (for example 127.0.0.1:222)", target)
	}
	return nil
}
