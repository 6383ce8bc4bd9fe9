package tunnel

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

var portalNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const testPBX = "pbx-5acd52a6a8cc"

// rig is a portal that accepts tunnels from one known device key, and an
// agent's dial configuration for it.
type rig struct {
	t        testing.TB
	srv      *httptest.Server
	portal   *license.Signer
	device   ed25519.PublicKey
	sessions chan *PortalSession
	cfg      DialConfig
	// answer, when set, replaces the portal's answer to a request.
	answer   func(req *protocol.TunnelRequest) protocol.Answer
	attempts atomic.Int32                    // upgrades seen, refused ones included
	keyring  atomic.Pointer[license.Keyring] // what the agent trusts now
}

func newRig(t testing.TB) *rig {
	t.Helper()
	portal, err := license.GenerateSigner("portal-test-1")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := license.NewKeyring(map[string]ed25519.PublicKey{portal.KeyID(): portal.Public()})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := protocol.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, portal: portal, device: dev.Public(), sessions: make(chan *PortalSession, 4)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	r.keyring.Store(kr)
	r.cfg = DialConfig{
		URL: r.srv.URL + protocol.PathTunnel, Signer: dev, Keyring: r.keyring.Load,
		PBXID: testPBX, CommandID: "cmd-open-1",
		Now: func() time.Time { return portalNow },
	}
	return r
}

func (r *rig) serve(w http.ResponseWriter, req *http.Request) {
	r.attempts.Add(1)
	treq, err := VerifyRequest(req, r.device)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error": "`+strings.ReplaceAll(err.Error(), `"`, `'`)+`", "code": "bad_signature"}`)
		return
	}
	a := protocol.Answer{Status: protocol.StatusOK, Time: portalNow, Nonce: treq.Nonce, PBXID: treq.PBXID}
	if r.answer != nil {
		a = r.answer(treq)
	}
	signed, err := r.portal.Sign(protocol.TypeAnswer, a)
	if err != nil {
		r.t.Error(err)
		return
	}
	s, err := Accept(w, req, signed, Limits{})
	if err != nil {
		r.t.Error(err)
		return
	}
	r.sessions <- s
}

// open dials and serves target; it returns the portal's end and the
// channel Serve's result arrives on.
func (r *rig) open(ctx context.Context, target string, ev Events) (*PortalSession, <-chan error) {
	r.t.Helper()
	s, err := Dial(ctx, r.cfg)
	if err != nil {
		r.t.Fatalf("Dial: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, target, ev) }()
	select {
	case p := <-r.sessions:
		r.t.Cleanup(func() { p.Close() })
		return p, served
	case <-time.After(10 * time.Second):
		r.t.Fatal("the portal saw no tunnel")
	}
	return nil, nil
}

// echoServer stands in for the support sshd: it echoes every connection.
func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes msg on c and reads it back.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("read back %q, want %q", got, msg)
	}
}

// recorder collects Events.
type recorder struct {
	mu      sync.Mutex
	started int
	ends    []StreamEnd
	refused []string
	endc    chan StreamEnd
}

func newRecorder() *recorder { return &recorder{endc: make(chan StreamEnd, 16)} }

func (r *recorder) events() Events {
	return Events{
		Start: func(uint32) { r.mu.Lock(); r.started++; r.mu.Unlock() },
		End: func(e StreamEnd) {
			r.mu.Lock()
			r.ends = append(r.ends, e)
			r.mu.Unlock()
			r.endc <- e
		},
		Refused: func(_ uint32, why string) { r.mu.Lock(); r.refused = append(r.refused, why); r.mu.Unlock() },
	}
}

func (r *recorder) waitEnd(t *testing.T) StreamEnd {
	t.Helper()
	select {
	case e := <-r.endc:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no stream ended")
	}
	return StreamEnd{}
}

func TestStreamReachesTargetAndCountsBytes(t *testing.T) {
	r := newRig(t)
	rec := newRecorder()
	p, _ := r.open(t.Context(), echoServer(t), rec.events())
	c, err := p.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "SSH-2.0-support\r\n")
	c.Close()
	e := rec.waitEnd(t)
	if e.ToTarget != 17 || e.ToPortal != 17 {
		t.Errorf("counted %d bytes to the target and %d to the portal, want 17 and 17", e.ToTarget, e.ToPortal)
	}
	if e.Err != nil {
		t.Errorf("a clean close ended with %v", e.Err)
	}
}

func TestConcurrentStreamCapHolds(t *testing.T) {
	r := newRig(t)
	r.cfg.Limits.MaxStreams = 2
	rec := newRecorder()
	p, _ := r.open(t.Context(), echoServer(t), rec.events())
	var held []net.Conn
	for range 2 {
		c, err := p.Open(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "held")
		held = append(held, c)
	}
	// A third stream is closed without reaching the target.
	extra, err := p.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	extra.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(extra, "one too many")
	if n, err := io.ReadAll(extra); err != nil || len(n) != 0 {
		t.Fatalf("the stream over the cap read %q, %v; want EOF at once", n, err)
	}
	rec.mu.Lock()
	refused, started := len(rec.refused), rec.started
	rec.mu.Unlock()
	if refused != 1 || started != 2 {
		t.Fatalf("refused %d and started %d streams, want 1 and 2", refused, started)
	}
	// Once one ends, a new stream gets its place.
	held[0].Close()
	rec.waitEnd(t)
	c, err := p.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "after one ended")
}

func TestContextEndEndsEveryStream(t *testing.T) {
	r := newRig(t)
	rec := newRecorder()
	ctx, cancel := context.WithCancel(t.Context())
	p, served := r.open(ctx, echoServer(t), rec.events())
	var streams []net.Conn
	for range 3 {
		c, err := p.Open(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "live")
		streams = append(streams, c)
	}
	cancel()
	select {
	case err := <-served:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	// Serve returns only after every stream ended and was reported.
	rec.mu.Lock()
	ended := len(rec.ends)
	rec.mu.Unlock()
	if ended != 3 {
		t.Errorf("%d stream ends reported, want 3", ended)
	}
	for i, c := range streams {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("stream %d still reads after the session ended", i)
		}
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the portal's end did not see the tunnel end")
	}
}

func TestUnknownDeviceKeyIsRefused(t *testing.T) {
	r := newRig(t)
	intruder, err := protocol.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.Signer = intruder
	_, err = Dial(t.Context(), r.cfg)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), "bad_signature") {
		t.Fatalf("Dial with a device key the portal does not know: %v, want a 401 bad_signature refusal", err)
	}
}

func TestRequestWithoutSignatureIsRefused(t *testing.T) {
	r := newRig(t)
	req := httptest.NewRequest(http.MethodGet, r.srv.URL+protocol.PathTunnel, nil)
	if _, err := VerifyRequest(req, r.device); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("VerifyRequest without the header: %v, want ErrNoRequest", err)
	}
}

// The agent trusts a tunnel only with the portal's signed answer to its own
// request: an impostor portal, or a replayed answer, is refused.
func TestAgentRefusesAnswersItCannotTrust(t *testing.T) {
	cases := []struct {
		name   string
		answer func(req *protocol.TunnelRequest) protocol.Answer
		signer func(r *rig) *license.Signer
		want   string
	}{
		{
			name: "signed by a key outside the keyring",
			signer: func(*rig) *license.Signer {
				s, _ := license.GenerateSigner("portal-impostor")
				return s
			},
			want: "portal-impostor",
		},
		{
			name: "answering another request",
			answer: func(req *protocol.TunnelRequest) protocol.Answer {
				return protocol.Answer{Status: protocol.StatusOK, Time: portalNow, Nonce: "an-older-nonce", PBXID: req.PBXID}
			},
			want: "answers another request",
		},
		{
			name: "about another PBX",
			answer: func(req *protocol.TunnelRequest) protocol.Answer {
				return protocol.Answer{Status: protocol.StatusOK, Time: portalNow, Nonce: req.Nonce, PBXID: "pbx-other"}
			},
			want: "pbx-other",
		},
		{
			name: "stale",
			answer: func(req *protocol.TunnelRequest) protocol.Answer {
				return protocol.Answer{Status: protocol.StatusStale, Time: portalNow.Add(time.Hour), Nonce: req.Nonce, PBXID: req.PBXID}
			},
			want: "stale",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.answer = tc.answer
			if tc.signer != nil {
				r.portal = tc.signer(r)
			}
			s, err := Dial(t.Context(), r.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Dial accepted the tunnel")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestRevokedPortalKeyRefusedAtTheNextDial: the keyring is read at each
// dial, so a portal key the agent stops trusting while a tunnel's TTL
// lasts (a key announcement revoking it) no longer opens the tunnel when
// the agent dials again.
func TestRevokedPortalKeyRefusedAtTheNextDial(t *testing.T) {
	r := newRig(t)
	s, err := Dial(t.Context(), r.cfg)
	if err != nil {
		t.Fatalf("first dial: %v", err)
	}
	s.Close()
	other, err := license.GenerateSigner("portal-next")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := license.NewKeyring(map[string]ed25519.PublicKey{other.KeyID(): other.Public()})
	if err != nil {
		t.Fatal(err)
	}
	r.keyring.Store(kr)
	if s, err := Dial(t.Context(), r.cfg); err == nil {
		s.Close()
		t.Fatal("a dial after the portal's key was revoked was accepted")
	} else if !strings.Contains(err.Error(), r.portal.KeyID()) {
		t.Fatalf("Dial: %v, want an error naming the revoked key %q", err, r.portal.KeyID())
	}
}

func TestServeRefusesATargetOffThisHost(t *testing.T) {
	for _, target := range []string{"10.0.0.1:22", "localhost:22", "[::ffff:10.0.0.1]:22", "127.0.0.1"} {
		t.Run(target, func(t *testing.T) {
			r := newRig(t)
			s, err := Dial(t.Context(), r.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Serve(t.Context(), target, Events{}); err == nil {
				t.Fatalf("Serve accepted target %q", target)
			}
			select {
			case <-s.Done():
			default:
				t.Fatal("the session stayed open after Serve refused its target")
			}
		})
	}
}
