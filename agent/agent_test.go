package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/clock"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/state"
)

// fakeTime is a machine whose clocks the test moves.
type fakeTime struct {
	wall    time.Time
	elapsed time.Duration
}

func (f *fakeTime) Wall() time.Time        { return f.wall }
func (f *fakeTime) Elapsed() time.Duration { return f.elapsed }
func (f *fakeTime) run(d time.Duration)    { f.wall = f.wall.Add(d); f.elapsed += d }

// The loops of agents on a fakeTime wait on the runtime's timers; tests
// that drive a loop's schedule use clocktest.Fake instead.
func (f *fakeTime) NewTimer(d time.Duration) clock.Timer   { return clock.WithTimers(f).NewTimer(d) }
func (f *fakeTime) NewTicker(d time.Duration) clock.Ticker { return clock.WithTimers(f).NewTicker(d) }

// rig is an in-process portal and the configuration of an agent that uses it.
type rig struct {
	portal *portalsim.Portal
	server *httptest.Server
	admin  *portalsim.Client
	cfg    Config
	time   *fakeTime
	root   string
}

func newRig(t testing.TB) *rig {
	t.Helper()
	return newRigWith(t, portalsim.Config{})
}

// newRigWith is newRig with a portal configured as pc says (its DataDir
// is the rig's).
func newRigWith(t testing.TB, pc portalsim.Config) *rig {
	t.Helper()
	pc.DataDir = t.TempDir()
	p, err := portalsim.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() { srv.Close(); p.Close() })

	root := t.TempDir() // the machine's files: a machine id for the fingerprint
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte("4c4c4544003510578051b4c04f4e4d32\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Portal.URL = srv.URL
	cfg.Portal.Keyring = p.KeyringDir()
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.Identity.Model = "WPBX-VM"
	return &rig{portal: p, server: srv, admin: portalsim.NewClient(srv.URL), cfg: cfg,
		time: &fakeTime{wall: time.Now().UTC().Truncate(time.Second), elapsed: time.Hour}, root: root}
}

// newAgent starts an agent on the rig's state folder: a restart of the same
// appliance when called again.
func (r *rig) newAgent(t *testing.T) *Agent {
	t.Helper()
	return r.agentIn(t, r.cfg.StateDir)
}

// otherAppliance starts an agent with a state folder of its own: another
// appliance with the same portal.
func (r *rig) otherAppliance(t *testing.T) *Agent {
	t.Helper()
	return r.agentIn(t, filepath.Join(t.TempDir(), "state"))
}

func (r *rig) agentIn(t *testing.T, stateDir string) *Agent {
	t.Helper()
	cfg := r.cfg
	cfg.StateDir = stateDir
	a, err := New(cfg, slog.New(slog.DiscardHandler), Options{Time: r.time, Root: r.root})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (r *rig) createPBX(t testing.TB, name string, counts license.Counts) string {
	t.Helper()
	resp, err := r.admin.CreatePBX(context.Background(), portalsim.CreatePBXRequest{Name: name, Model: "WPBX-VM", Term: "monthly", Profiles: counts})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Key
}

func TestActivatePersistsAndSurvivesRestart(t *testing.T) {
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)
	if got := a.State(); got != license.Unactivated {
		t.Fatalf("before activation: %s", got)
	}
	if err := a.Activate(context.Background(), "  \""+key+"\"\n"); err != nil {
		t.Fatalf("Activate: %v", err)
	}
	if got := a.State(); got != license.Active {
		t.Fatalf("after activation: %s", got)
	}
	for _, name := range []string{stateFileName, deviceKeyFile} {
		fi, err := os.Stat(filepath.Join(r.cfg.StateDir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", name, err, fi.Mode().Perm())
		}
	}
	if b, _ := os.ReadFile(filepath.Join(r.cfg.StateDir, stateFileName)); strings.Contains(string(b), "PRIVATE") {
		t.Error("the state file holds the device's private key")
	}

	restarted := r.newAgent(t)
	s := restarted.Status()
	if s.State != "active" || s.License == nil || s.License.Profiles["uc-premium"].Licensed != 10 {
		t.Errorf("after a restart: %+v", s)
	}
	if err := restarted.heartbeat(context.Background()); err != nil {
		t.Errorf("heartbeat after a restart, with the saved device key: %v", err)
	}
}

func TestActivationErrors(t *testing.T) {
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 1})
	a := r.newAgent(t)
	if err := a.Activate(context.Background(), key[:len(key)-5]); !errors.Is(err, license.ErrTruncated) {
		t.Errorf("truncated key: %v, want ErrTruncated", err)
	}
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	second := r.otherAppliance(t)
	if err := second.Activate(context.Background(), key); !errors.Is(err, apitype.ErrRefused) ||
		!strings.Contains(err.Error(), "another appliance") {
		t.Errorf("second appliance: %v, want ErrRefused naming the other appliance", err)
	}
	foreign := newRig(t).createPBX(t, "other.example", license.Counts{license.UCPremium: 1})
	if err := second.Activate(context.Background(), foreign); !errors.Is(err, license.ErrUnknownSigner) {
		t.Errorf("key of another portal: %v, want ErrUnknownSigner", err)
	}
	r.server.Close()
	if err := r.otherAppliance(t).Activate(context.Background(), key); !errors.Is(err, apitype.ErrUnreachable) {
		t.Errorf("portal down: %v, want ErrUnreachable", err)
	}
}

// TestEditedLicenceIsRefused: the state file is root's to edit, but a
// licence whose signature no longer holds is not taken, whatever the file's
// own checksum says.
func TestEditedLicenceIsRefused(t *testing.T) {
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	if err := r.newAgent(t).Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	f, err := state.Open[persisted](state.Options{Dir: r.cfg.StateDir, Name: stateFileName, Version: stateSchema})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	forger, _ := license.NewSigner(mustKID(t, r.cfg.Portal.Keyring), priv) // the right key id, the wrong key
	doc, _ := license.ParseDocument(st.License, mustKeyring(t, r.cfg.Portal.Keyring), license.DocumentCheck{})
	doc.Counts[license.UCPremium] = 1000
	if st.License, err = forger.Sign(license.TypeLicense, doc); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(st); err != nil {
		t.Fatal(err)
	}

	a := r.newAgent(t)
	s := a.Status()
	if s.State != "unactivated" || s.License != nil || !strings.Contains(s.Heartbeat.LastError, "no longer verifies") {
		t.Errorf("forged licence: state %s, licence %+v, error %q", s.State, s.License, s.Heartbeat.LastError)
	}
}

// TestOfflineForAMonth runs the licence clock over 31 days with the portal
// gone: offline within the grace, lapsed after it.
func TestOfflineForAMonth(t *testing.T) {
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	r.server.Close()
	down := r.time.elapsed
	for _, step := range []struct {
		after time.Duration
		want  license.State
	}{
		{5 * time.Minute, license.Active},
		{time.Hour, license.Offline},
		{29 * 24 * time.Hour, license.Offline},
		{31 * 24 * time.Hour, license.Lapsed},
	} {
		r.time.run(step.after - (r.time.elapsed - down))
		if err := a.heartbeat(context.Background()); err == nil {
			t.Fatal("heartbeat with the portal gone succeeded")
		}
		if got := a.State(); got != step.want {
			t.Errorf("after %v offline: %s, want %s", step.after, got, step.want)
		}
	}
}

func mustKeyring(t *testing.T, dir string) *license.Keyring {
	kr, err := license.LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func mustKID(t *testing.T, dir string) string {
	return mustKeyring(t, dir).KeyIDs()[0]
}
