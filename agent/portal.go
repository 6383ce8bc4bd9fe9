package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// portalTimeout bounds one exchange with the portal; callers set it on
// their context. The client's own timeout also allows a long-poll.
const portalTimeout = 30 * time.Second

// clientTimeout is the longest any request may take: a long-poll held by
// the portal, plus an exchange.
const clientTimeout = protocol.MaxWait + portalTimeout

// portalClient talks to the portal: it posts signed requests and verifies
// signed answers. It keeps no state of its own.
type portalClient struct {
	http    *resty.Client
	keyring func() *license.Keyring // the keys trusted now, revocations applied
}

// refusedError is a portal refusal: a non-2xx answer with a JSON body.
type refusedError struct {
	status     int
	body       protocol.Error
	retryAfter time.Duration
}

func (e *refusedError) Error() string {
	if e.body.Message == "" {
		return fmt.Sprintf("portal answered %d %s", e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("portal refused: %s", e.body.Message)
}

// unreachableError is a portal not reached: no answer at all.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return "reaching the portal: " + e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// transient reports a refusal worth retrying later: the portal is busy or
// broken, not saying no.
func (e *refusedError) transient() bool {
	return e.status >= 500 || e.status == http.StatusTooManyRequests || e.status == http.StatusRequestTimeout
}

func newPortalClient(cfg PortalConfig, kr func() *license.Keyring, userAgent string) (*portalClient, error) {
	if err := checkPortalURL(cfg.URL); err != nil {
		return nil, err
	}
	// The request carries only the headers the protocol needs: the media
	// type of the signed body, and the agent's version for the portal's
	// logs. No Accept: the protocol fixes what the portal answers, a
	// signed body with 200 and a JSON refusal otherwise. A compact
	// heartbeat carries neither (bareHeaders).
	// Retries stay with the heartbeat loop, not resty: every attempt must be
	// signed afresh with a new nonce, and a resent body is a replay the
	// portal rightly refuses.
	transport, err := portalTransport(cfg)
	if err != nil {
		return nil, err
	}
	// NewWithClient, not New: the portal's protocol has no cookies, and
	// New's cookie jar links the public suffix list and the jar (100 KiB
	// of the binary) for nothing.
	c := resty.NewWithClient(&http.Client{Transport: transport}).
		SetBaseURL(cfg.URL).
		SetTimeout(clientTimeout).
		SetRetryCount(0).
		SetResponseBodyLimit(protocol.MaxBodySize).
		SetHeader("User-Agent", userAgent).
		SetHeader("Content-Type", protocol.ContentType).
		SetPreRequestHook(bareHeaders).
		SetLogger(discardLogger{})
	return &portalClient{http: c, keyring: kr}, nil
}

// bareKey marks the context of a request sent with no header but those
// HTTP needs (Host, Content-Length).
type bareKey struct{}

// bareHeaders strips a compact heartbeat of the headers resty and the
// client would add: its "typ" says what the body is, and the agent's
// version is in the body when it changes. An empty User-Agent, not an
// absent one, keeps Go's transport from adding its own.
func bareHeaders(_ *resty.Client, r *http.Request) error {
	if bare, _ := r.Context().Value(bareKey{}).(bool); bare {
		r.Header = http.Header{"User-Agent": {""}}
	}
	return nil
}

// portalTransport is the transport of every request to the portal, the
// long-poll included: the pinned CA of portal.ca_file, and the proxy of
// portal.proxy, or else of the standard variables (HTTPS_PROXY, NO_PROXY).
func portalTransport(cfg PortalConfig) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// No Accept-Encoding: gzip, which Go would add to every request (23
	// bytes). The portal's answers are a few hundred bytes of base64 that
	// gzip would shrink by about 60, less its Content-Encoding header, for
	// CPU time on both sides; the protocol sends them uncompressed.
	t.DisableCompression = true
	if cfg.CAFile != "" {
		pool, err := loadCAFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if cfg.Proxy != "" {
		proxy, err := parsePortalProxy(cfg.Proxy)
		if err != nil {
			return nil, fmt.Errorf("config portal.proxy: %w", err)
		}
		// A loopback portal (the simulator) is reached directly, as Go does
		// for the standard variables: a proxy elsewhere would carry its
		// plain HTTP across the network.
		t.Proxy = func(r *http.Request) (*url.URL, error) {
			if loopbackHost(r.URL.Hostname()) {
				return nil, nil
			}
			return proxy, nil
		}
	}
	return t, nil
}

// loadCAFile reads the CA bundle the portal's certificate must chain to,
// alone: the system's CAs are not trusted beside it. A file that cannot be
// read or holds no certificate is an error, never a silent fallback to the
// system's CAs.
func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config portal.ca_file: %w: install the portal's CA certificate there, or remove the key to use the system's CAs", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("config portal.ca_file %s holds no PEM certificate: want the portal's CA certificate (-----BEGIN CERTIFICATE-----)", path)
	}
	return pool, nil
}

// parsePortalProxy checks portal.proxy: http://[user:password@]host:port.
// Its errors never repeat the value, which may hold a password.
func parsePortalProxy(raw string) (*url.URL, error) {
	const want = "want http://[user:password@]host:port, e.g. http://proxy.example:3128"
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the value
		}
		return nil, fmt.Errorf("not a URL (%v): %s", err, want)
	}
	switch {
	case u.Scheme != "http":
		return nil, fmt.Errorf("scheme %q: %s (the portal's HTTPS goes through the proxy's CONNECT tunnel)", u.Scheme, want)
	case u.Hostname() == "":
		return nil, fmt.Errorf("no host: %s", want)
	case u.Port() == "":
		return nil, fmt.Errorf("%s has no port: %s", u.Redacted(), want)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return nil, fmt.Errorf("%s has a path, query or fragment: %s", u.Redacted(), want)
	}
	if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("%s: the port is not a TCP port: %s", u.Redacted(), want)
	}
	return u, nil
}

// loopbackHost reports a host name or address of this machine's loopback.
func loopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// checkPortalURL allows HTTPS anywhere and plain HTTP only to loopback (the
// simulator): licence traffic never crosses a network in clear.
func checkPortalURL(raw string) error {
	if raw == "" {
		return errors.New("config portal.url is empty: set it to the portal's URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("config portal.url: %w", err)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if loopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("config portal.url %q: plain http is allowed only to loopback; use https", raw)
	}
	return fmt.Errorf("config portal.url %q: use an https URL", raw)
}

// outgoing is a signed request and what its answer must match.
type outgoing struct {
	body  string // the compact JWS as sent
	nonce string // the answer must echo it
	pbxID string // the answer must name it, when known
	// compact: the body is a compact heartbeat, sent with bare headers;
	// the portal may answer it with a "same" answer.
	compact bool
}

// exchange posts a signed request and returns the verified answer: a full
// answer that echoes the nonce and, when the PBX is known, names it, or,
// to a compact heartbeat, a "same" answer that echoes the request.
func (p *portalClient) exchange(ctx context.Context, path string, out outgoing) (*protocol.Answer, error) {
	if out.compact {
		ctx = context.WithValue(ctx, bareKey{}, true)
	}
	resp, err := p.http.R().SetContext(ctx).SetBody(out.body).Post(path)
	if err != nil {
		return nil, &unreachableError{err}
	}
	if resp.StatusCode() != http.StatusOK {
		re := &refusedError{
			status:     resp.StatusCode(),
			retryAfter: protocol.ParseRetryAfter(resp.Header().Get("Retry-After"), portalWallTime(resp.Header())),
		}
		_ = json.Unmarshal(resp.Body(), &re.body) // a body that is not JSON leaves the status to speak
		return nil, re
	}
	answer := string(resp.Body())
	var a *protocol.Answer
	if _, typ, _ := license.PeekHeader(answer); typ == protocol.TypeSame && out.compact {
		a, err = protocol.VerifySame(answer, p.keyring(), out.body, out.pbxID)
	} else {
		// Anything else, a "same" answer to a full request included, is
		// checked as a full answer, which refuses its type.
		a, err = protocol.VerifyAnswer(answer, p.keyring(), out.nonce, out.pbxID)
	}
	if err != nil {
		return nil, fmt.Errorf("refusing the portal's answer: %w", err)
	}
	return a, nil
}

// portalWallTime is the portal's wall clock when it answered, from the
// answer's Date: a Retry-After given as an HTTP date is a time on that
// clock, so neither this machine's clock nor the licence clock (which
// follows only signed times) may shift the wait it asks for. An answer
// without a Date falls back to this machine's clock.
func portalWallTime(h http.Header) time.Time {
	if t, err := http.ParseTime(h.Get("Date")); err == nil {
		return t
	}
	return time.Now()
}

// newNonce returns 128 random bits, base64url.
func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails: see crypto/rand.Read
	return base64.RawURLEncoding.EncodeToString(b)
}

// discardLogger silences resty's own logging: its messages could carry
// request bodies, and the agent logs outcomes itself.
type discardLogger struct{}

func (discardLogger) Errorf(string, ...any) {}
func (discardLogger) Warnf(string, ...any)  {}
func (discardLogger) Debugf(string, ...any) {}
