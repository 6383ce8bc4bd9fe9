package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/connectproxy"
	"github.com/pbx-agent/pbx-agent/internal/testca"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// A proxy's password must not leak through the errors that name the
// setting: they reach the journal and `pbx-agent status`.
func TestPortalProxyValidation(t *testing.T) {
	const secret = "s3cret-pw"
	for _, tc := range []struct {
		name, proxy, want string
	}{
		{"https proxy", "https://u:" + secret + "@proxy.example:3128", `scheme "https"`},
		{"socks", "socks5://u:" + secret + "@proxy.example:1080", `scheme "socks5"`},
		{"no scheme", "proxy.example:3128", "want http://"},
		{"no port", "http://u:" + secret + "@proxy.example", "has no port"},
		{"port out of range", "http://u:" + secret + "@proxy.example:99999", "not a TCP port"},
		{"path", "http://u:" + secret + "@proxy.example:3128/pac", "path, query or fragment"},
		{"unparsable", "http://u:" + secret + "@[::1:3128", "not a URL"},
		{"no host", "http://:3128", "no host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Portal.Proxy = tc.proxy
			err := cfg.Validate()
			if err == nil {
				t.Fatalf("portal.proxy %q accepted", tc.proxy)
			}
			msg := err.Error()
			if !strings.Contains(msg, "config portal.proxy") || !strings.Contains(msg, tc.want) || !strings.Contains(msg, "http://proxy.example:3128") {
				t.Errorf("error %q: want the key, %q and an example", msg, tc.want)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q repeats the proxy's password", msg)
			}
		})
	}
	for _, ok := range []string{"http://proxy.example:3128", "http://u:p%40ss@10.0.0.1:8080/", "http://[2001:db8::1]:3128"} {
		cfg := DefaultConfig()
		cfg.Portal.Proxy = ok
		if err := cfg.Validate(); err != nil {
			t.Errorf("portal.proxy %q refused: %v", ok, err)
		}
	}
}

// portalTLS is a TLS portal stand-in serving portal.test with a
// certificate of its own test CA.
type portalTLS struct {
	srv    *httptest.Server
	caFile string
	port   string
	hits   chan string
}

func newPortalTLS(t *testing.T) *portalTLS {
	t.Helper()
	ca := testca.New(t, "test portal CA")
	certFile, keyFile := ca.Issue(t, "portal.test")
	p := &portalTLS{caFile: ca.CertFile, hits: make(chan string, 10)}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits <- r.URL.Path
		io.WriteString(w, "hello from the portal")
	}))
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	_, p.port, _ = net.SplitHostPort(p.srv.Listener.Addr().String())
	return p
}

func startProxy(t *testing.T, cfg connectproxy.Config) *connectproxy.Proxy {
	t.Helper()
	px, err := connectproxy.Start("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	return px
}

func portalGet(t *testing.T, cfg PortalConfig) (string, error) {
	t.Helper()
	c, err := newPortalClient(cfg, func() *license.Keyring { return nil }, "test")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.http.R().SetContext(context.Background()).Get("/api/v1/wait")
	if err != nil {
		return "", err
	}
	return resp.String(), nil
}

// The portal's HTTPS goes through portal.proxy's CONNECT tunnel, with its
// credentials, to a name only the proxy resolves; the pinned CA still
// decides whom the agent talks to.
func TestPortalThroughProxy(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("https_proxy", "")
	portal := newPortalTLS(t)
	const user, password = "pbx", "s3cret-pw"
	px := startProxy(t, connectproxy.Config{Hosts: map[string]string{"portal.test": "127.0.0.1"}, User: user, Password: password})
	portalURL := "https://portal.test:" + portal.port

	body, err := portalGet(t, PortalConfig{URL: portalURL, CAFile: portal.caFile, Proxy: "http://" + user + ":" + password + "@" + px.Addr()})
	if err != nil || body != "hello from the portal" {
		t.Fatalf("through the proxy: %q, %v", body, err)
	}
	if got, want := px.Connects(), []string{"portal.test:" + portal.port}; !slices.Equal(got, want) {
		t.Errorf("the proxy tunnelled %q, want %q", got, want)
	}
	if path := <-portal.hits; path != "/api/v1/wait" {
		t.Errorf("the portal saw %q", path)
	}

	t.Run("wrong password", func(t *testing.T) {
		_, err := portalGet(t, PortalConfig{URL: portalURL, CAFile: portal.caFile, Proxy: "http://" + user + ":wrong-pw@" + px.Addr()})
		if err == nil {
			t.Fatal("the proxy let a wrong password through")
		}
		if strings.Contains(err.Error(), "wrong-pw") {
			t.Errorf("error %q repeats the proxy's password", err)
		}
		if !strings.Contains(err.Error(), "Proxy Authentication Required") {
			t.Errorf("error %q does not say the proxy wants credentials", err)
		}
	})

	t.Run("no proxy", func(t *testing.T) {
		// portal.test resolves nowhere but at the proxy.
		if _, err := portalGet(t, PortalConfig{URL: portalURL, CAFile: portal.caFile}); err == nil {
			t.Fatal("portal.test reached without the proxy")
		}
	})

	t.Run("another CA", func(t *testing.T) {
		// A proxy (or anyone on the path) presenting a certificate of a CA
		// other than the pinned one is refused.
		other := testca.New(t, "another CA")
		before := len(portal.hits)
		_, err := portalGet(t, PortalConfig{URL: portalURL, CAFile: other.CertFile, Proxy: "http://" + user + ":" + password + "@" + px.Addr()})
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("a portal certificate outside the pinned CA: %v", err)
		}
		if len(portal.hits) != before {
			t.Error("a request reached the portal over an unverified connection")
		}
	})
}

// A loopback portal (the simulator) is reached directly even with a proxy
// set: its plain HTTP never crosses the network to a proxy.
func TestPortalProxySkipsLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "loopback") }))
	t.Cleanup(srv.Close)
	px := startProxy(t, connectproxy.Config{Hosts: map[string]string{}})
	body, err := portalGet(t, PortalConfig{URL: srv.URL, Proxy: "http://" + px.Addr()})
	if err != nil || body != "loopback" {
		t.Fatalf("loopback portal with a proxy set: %q, %v", body, err)
	}
	if n := len(px.Connects()) + len(px.Refused()); n != 0 {
		t.Errorf("the proxy saw %d requests for a loopback portal", n)
	}
}

// A pinned CA that cannot be used stops the portal client with the key to
// fix, never falling back to the system's CAs.
func TestPortalCAFileUnusable(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"missing": filepath.Join(dir, "absent.pem"), "not PEM": notPEM} {
		t.Run(name, func(t *testing.T) {
			_, err := newPortalClient(PortalConfig{URL: "https://portal.test", CAFile: path}, func() *license.Keyring { return nil }, "test")
			if err == nil || !strings.Contains(err.Error(), "config portal.ca_file") {
				t.Fatalf("ca_file %s: %v", path, err)
			}
		})
	}
}

// The portal's protocol has no cookies: one set by whatever answers at the
// portal's address is never sent back, so it cannot tie requests together
// or carry state the signed bodies do not.
func TestPortalClientSendsNoCookies(t *testing.T) {
	cookies := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cookies <- r.Header.Get("Cookie")
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "tracked", Path: "/"})
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	c, err := newPortalClient(PortalConfig{URL: srv.URL}, func() *license.Keyring { return nil }, "test")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := c.http.R().SetContext(context.Background()).Get("/api/v1/wait"); err != nil {
			t.Fatal(err)
		}
		if c := <-cookies; c != "" {
			t.Errorf("request %d carried Cookie: %q", i+1, c)
		}
	}
}

// TestRetryAfterDateOnThePortalsClock: a Retry-After given as an HTTP date
// is read against the answer's own Date, so a machine clock years off
// neither drops the wait nor stretches it.
func TestRetryAfterDateOnThePortalsClock(t *testing.T) {
	portalNow := time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC) // far from this machine's clock
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", portalNow.Format(http.TimeFormat))
		w.Header().Set("Retry-After", portalNow.Add(90*time.Second).Format(http.TimeFormat))
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	c, err := newPortalClient(PortalConfig{URL: srv.URL}, func() *license.Keyring { return nil }, "test")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.exchange(context.Background(), protocol.PathHeartbeat, outgoing{body: "body", nonce: "nonce", pbxID: "pbx-1"})
	var re *refusedError
	if !errors.As(err, &re) || re.retryAfter != 90*time.Second {
		t.Fatalf("exchange: %v (%+v); want a refusal asking for 90 s", err, re)
	}
}
