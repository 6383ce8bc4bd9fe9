package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// resigningProxy is what the appliance's owner can put between the agent
// and its portal: it reads the device key from the state folder (root's
// file), lets rewrite change every request the agent signs, and signs it
// again. Answers pass untouched: the portal's key is not on the box.
func resigningProxy(t *testing.T, portalURL string, stateDir *string, rewrite func(claims map[string]any)) *httptest.Server {
	t.Helper()
	u, err := url.Parse(portalURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		dev, err := license.LoadSigner(filepath.Join(*stateDir, "device-key.pem"))
		if err == nil && r.URL.Path != protocol.PathActivate {
			_, typ, _ := license.PeekHeader(string(body))
			payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(string(body), ".")[1])
			var claims map[string]any
			if json.Unmarshal(payload, &claims) == nil {
				rewrite(claims)
				if signed, err := dev.Sign(typ, claims); err == nil {
					body = []byte(signed)
				}
			}
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close) // after the agent stops: its long-poll holds a connection
	return srv
}

// TestOwnerProxyClaimingRevision999999 runs the attack as measured against
// a running agent: the owner points portal.url at a loopback proxy that
// re-signs every heartbeat and wait with "revision": 999999. After a
// decrease to 2 users, a suspension and 40 days on the portal's clock, the
// agent must not stay active on revision 1 admitting more users.
func TestOwnerProxyClaimingRevision999999(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "proxied.example", "--users", "uc-premium=13")
	var stateDir string // the appliance's, once made
	proxy := resigningProxy(t, p.url(), &stateDir, func(c map[string]any) { c["revision"] = 999999 })
	a := newAppliance(t, "proxied", &portal{t: t, addr: strings.TrimPrefix(proxy.URL, "http://"), data: p.data}, "1h")
	stateDir = filepath.Join(filepath.Dir(a.config), "state")
	a.startQuick()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: %s", r.stderr)
	}

	p.admin("pbx", "licenses", "proxied.example", "uc-premium=2")
	p.admin("pbx", "suspend", "proxied.example")
	p.admin("clock", "advance", "40d")
	for range 3 {
		a.cli("", "refresh")
	}
	s := a.status()
	t.Logf("after the proxy's claims: state %s, revision %d, last error %q", s.State, s.License.Revision, s.Heartbeat.LastError)
	if s.State == "active" || s.State == "offline" || s.License.Revision == 1 {
		t.Errorf("the proxy kept the PBX %s on revision %d; want the current licence taken and the PBX lapsed or stopped", s.State, s.License.Revision)
	}
	if r := a.cli("", "check", "uc-premium", "--count", "7"); r.code != 1 {
		t.Errorf("7 more users through the proxy: exit %d, want 1 (denied)", r.code)
	}
}
