package integration

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/internal/ownerproxy"
)

// TestOwnerProxyClaimingRevision999999 runs the attack as measured against
// a running agent: the owner points portal.url at a loopback proxy that
// re-signs every heartbeat and wait with "revision": 999999. After a
// decrease to 2 users, a suspension and 40 days on the portal's clock, the
// agent must not stay active on revision 1 admitting more users.
func TestOwnerProxyClaimingRevision999999(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "proxied.example", "--users", "uc-premium=13")
	var stateDir string // the appliance's, once made
	proxy := ownerproxy.Start(t, ownerproxy.Options{
		Portal:    p.url(),
		DeviceKey: func() string { return filepath.Join(stateDir, "device-key.pem") },
		Rewrite:   func(_ string, c map[string]any) { c["revision"] = 999999 },
	})
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
