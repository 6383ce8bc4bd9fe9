package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
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
	// Retries stay with the heartbeat loop, not resty: every attempt must be
	// signed afresh with a new nonce, and a resent body is a replay the
	// portal rightly refuses.
	c := resty.New().
		SetBaseURL(cfg.URL).
		SetTimeout(clientTimeout).
		SetRetryCount(0).
		SetResponseBodyLimit(protocol.MaxBodySize).
		SetHeader("User-Agent", userAgent).
		SetHeader("Content-Type", protocol.ContentType).
		SetHeader("Accept", protocol.ContentType+", application/json").
		SetLogger(discardLogger{})
	if cfg.CAFile != "" {
		c.SetRootCertificate(cfg.CAFile)
	}
	return &portalClient{http: c, keyring: kr}, nil
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
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("config portal.url %q: plain http is allowed only to loopback; use https", raw)
	}
	return fmt.Errorf("config portal.url %q: use an https URL", raw)
}

// exchange posts a signed request and returns the verified answer. The
// answer must echo nonce and, when pbxID is known, name that PBX.
func (p *portalClient) exchange(ctx context.Context, path, body, nonce, pbxID string) (*protocol.Answer, error) {
	resp, err := p.http.R().SetContext(ctx).SetBody(body).Post(path)
	if err != nil {
		return nil, &unreachableError{err}
	}
	if resp.StatusCode() != http.StatusOK {
		re := &refusedError{
			status:     resp.StatusCode(),
			retryAfter: protocol.ParseRetryAfter(resp.Header().Get("Retry-After"), time.Now()),
		}
		_ = json.Unmarshal(resp.Body(), &re.body) // a body that is not JSON leaves the status to speak
		return nil, re
	}
	a, err := protocol.VerifyAnswer(string(resp.Body()), p.keyring(), nonce, pbxID)
	if err != nil {
		return nil, fmt.Errorf("refusing the portal's answer: %w", err)
	}
	return a, nil
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
