package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/connectproxy"
	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/internal/testca"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestPortalThroughForwardProxy runs the agent the way a site behind an
// HTTP proxy does: the simulator serves HTTPS under portal.test, a name
// only the proxy resolves, with a certificate of a test CA the agent pins
// (portal.ca_file), and the agent reaches it through portal.proxy's
// CONNECT tunnel, with credentials. Without the proxy setting it cannot
// reach the portal at all; with it, it activates, heartbeats, and takes a
// licence change from the long-poll while its own heartbeats are an hour
// apart.
func TestPortalThroughForwardProxy(t *testing.T) {
	for _, v := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"} {
		t.Setenv(v, "") // the agent must reach the portal through its setting alone
	}
	ca := testca.New(t, "pbx test portal CA")
	certFile, keyFile := ca.Issue(t, "portal.test", "127.0.0.1")
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	data := t.TempDir()
	sim := start(t, "pbx-portal-sim", "serve", "--listen", addr, "--data", data, "--tls-cert", certFile, "--tls-key", keyFile)
	admin := trustingAdmin(t, ca.CertFile, "https://"+addr)
	ctx := context.Background()
	eventually(t, 10*time.Second, "HTTPS portal up", func() (bool, string) {
		_, err := admin.Clock(ctx)
		return err == nil, sim.logs()
	})
	created, err := admin.CreatePBX(ctx, portalsim.CreatePBXRequest{Name: "proxied.example", Model: "WPBX-VM", Term: "monthly",
		Profiles: license.Counts{license.UCPremium: 10}})
	if err != nil {
		t.Fatal(err)
	}

	const proxyUser, proxyPassword = "pbx-site", "pr0xy-s3cret"
	px, err := connectproxy.Start("127.0.0.1:0", connectproxy.Config{
		Hosts: map[string]string{"portal.test": "127.0.0.1"}, User: proxyUser, Password: proxyPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })

	a := newAppliance(t, "proxied", &portal{t: t, addr: addr, data: data}, "1h")
	portalURL := "https://portal.test:" + port
	editConfig(t, a.config, "url: http://"+addr, "url: "+portalURL+"\n  ca_file: "+ca.CertFile)

	// Without the proxy, portal.test is not even a name the agent can
	// resolve: activation says the portal is unreachable (exit 4).
	a.start()
	if r := a.cli(created.Key, "activate"); r.code != 4 || !strings.Contains(r.stderr, "portal.test") {
		t.Fatalf("activate without the proxy: exit %d, want 4 naming portal.test: %s", r.code, r.stderr)
	}
	if n := len(px.Connects()); n != 0 {
		t.Fatalf("the proxy tunnelled %d connections before the agent was told of it", n)
	}
	a.proc.stop(t)

	editConfig(t, a.config, "\n  ca_file: ", "\n  proxy: http://"+proxyUser+":"+proxyPassword+"@"+px.Addr()+"\n  ca_file: ")
	a.start()
	if r := a.cli(created.Key, "activate"); r.code != 0 {
		t.Fatalf("activate through the proxy: exit %d: %s", r.code, r.stderr)
	}
	s := a.waitState("active", 10*time.Second)
	if s.Heartbeat.LastSuccess == nil {
		t.Errorf("active without a heartbeat: %+v", s.Heartbeat)
	}
	connects := px.Connects()
	if len(connects) == 0 {
		t.Fatal("the agent reached the portal, but not through the proxy")
	}
	for _, c := range connects {
		if c != "portal.test:"+port {
			t.Errorf("the proxy tunnelled to %q, want portal.test:%s", c, port)
		}
	}

	// Heartbeats are an hour apart: the change arrives by the long-poll,
	// held open through the proxy.
	if _, err := admin.ChangeLicenses(ctx, "proxied.example", portalsim.LicenseChange{Profiles: license.Counts{license.UCPremium: 12}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the licence change through the long-poll", func() (bool, string) {
		p := a.status().License.Profiles[string(license.UCPremium)]
		return p.Licensed == 12, fmt.Sprintf("uc-premium licensed %d", p.Licensed)
	})

	if strings.Contains(a.proc.logs(), proxyPassword) {
		t.Error("the agent's log holds the proxy's password")
	}
	if r := a.cli("", "status", "--json"); strings.Contains(r.stdout, proxyPassword) {
		t.Error("the status holds the proxy's password")
	}
}

// trustingAdmin is an admin client of the HTTPS simulator that trusts its
// test CA.
func trustingAdmin(t *testing.T, caFile, baseURL string) *portalsim.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	c := portalsim.NewClient(baseURL)
	c.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return c
}

// editConfig replaces old, which must be present, with repl in the
// configuration file.
func editConfig(t *testing.T, path, old, repl string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s holds no %q", filepath.Base(path), old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, repl, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}
