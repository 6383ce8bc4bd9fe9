package agent

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/internal/logbuf"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// A development build (this test binary) says at start, as an error, that
// its roots are configuration, and the status says so too.
func TestDevelopmentBuildSaysSoLoudly(t *testing.T) {
	if license.ReleaseBuild() {
		t.Skip("built with embedded roots")
	}
	r := newRig(t)
	var logs logbuf.Buffer
	a, err := New(r.cfg, slog.New(slog.NewTextHandler(&logs, nil)), Options{Time: r.time, Root: r.root})
	if err != nil {
		t.Fatal(err)
	}
	want := `level=ERROR msg="` + license.DevelopmentBuildWarning + `"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %s:\n%s", want, logs.String())
	}
	tr := a.Status().Trust
	if tr == nil || tr.Roots != license.RootsConfigured || len(tr.Keys) != 1 ||
		tr.Keys[0].KeyID != r.portal.KeyID() || tr.Keys[0].Role != license.RoleConfigured {
		t.Fatalf("status trust = %+v, want the portal's key, configured", tr)
	}
}

// A keyring that cannot be loaded still gives a status that names the
// build's kind of roots, and no keys.
func TestTrustStatusWithoutKeyring(t *testing.T) {
	r := newRig(t)
	r.cfg.Portal.Keyring = t.TempDir() // empty: a development build finds no key
	a := r.newAgent(t)
	tr := a.Status().Trust
	if tr == nil || tr.Roots == "" || len(tr.Keys) != 0 {
		t.Fatalf("status trust = %+v, want roots named and no keys", tr)
	}
}
