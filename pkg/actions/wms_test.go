package actions

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// upgradeUnits stands in for systemd: each started upgrade unit is
// activating until the test finishes it.
type upgradeUnits struct {
	mu      sync.Mutex
	state   map[string]string
	started []string
	refuse  error
}

func (u *upgradeUnits) dial(context.Context) (Units, error) { return u, nil }

func (u *upgradeUnits) StartUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.refuse != nil {
		return 0, u.refuse
	}
	if ch != nil {
		panic("waiting for an upgrade's job blocks until the upgrade ends")
	}
	u.started = append(u.started, name+" "+mode)
	u.state[name] = "activating"
	return len(u.started), nil
}

func (u *upgradeUnits) GetUnitPropertyContext(_ context.Context, unit, property string) (*sddbus.Property, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.state[unit]
	if !ok {
		s = "inactive"
	}
	return &sddbus.Property{Name: property, Value: dbus.MakeVariant(s)}, nil
}

func (u *upgradeUnits) Close() {}

func TestSystemdWMSUpgrades(t *testing.T) {
	ctx := context.Background()
	cfg := WMSUpgradeConfig{Package: "wms", RuntimeDir: t.TempDir(), ResultDir: t.TempDir()}
	units := &upgradeUnits{state: map[string]string{}}
	w := NewSystemdWMSUpgrades(cfg, units.dial, nil)
	req := wms.Request{Version: "7.02.20250701.2", Repository: "rel70", CommandID: "c1"}

	if err := w.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	if want := []string{"pbx-agent-wms-upgrade@7.02.20250701.2.service replace"}; !equal(units.started, want) {
		t.Errorf("started %v; want %v", units.started, want)
	}
	got, err := wms.ReadRequest(cfg.RuntimeDir, req.Version)
	if err != nil || got.Repository != "rel70" || got.CommandID != "c1" {
		t.Errorf("the helper would read %+v (%v)", got, err)
	}
	if running, err := w.Running(ctx, req.Version); err != nil || !running {
		t.Errorf("Running = %v, %v while the unit is activating", running, err)
	}
	// Asked again while it runs (a restarted agent replays its journal):
	// nothing more is started.
	if err := w.Start(ctx, req); err != nil || len(units.started) != 1 {
		t.Errorf("a second Start: %v, started %v", err, units.started)
	}
	// The unit ends; its result is what the agent reads.
	units.mu.Lock()
	units.state[WMSUpgradeUnit(req.Version)] = "inactive"
	units.mu.Unlock()
	if running, _ := w.Running(ctx, req.Version); running {
		t.Error("running after the unit ended")
	}
	if _, found, err := w.Result(ctx, req.Version); found || err != nil {
		t.Errorf("a result before the helper wrote one: %v, %v", found, err)
	}
	want := &wms.Result{Version: req.Version, CommandID: "c1", Outcome: wms.Upgraded, Installed: req.Version, Started: time.Now(), Finished: time.Now()}
	if err := wms.WriteResult(cfg.ResultDir, want, -1); err != nil {
		t.Fatal(err)
	}
	if res, found, err := w.Result(ctx, req.Version); err != nil || !found || !res.OK() || res.CommandID != "c1" {
		t.Errorf("Result = %+v, %v, %v", res, found, err)
	}

	units.refuse = errors.New("org.freedesktop.DBus.Error.AccessDenied: denied")
	if err := w.Start(ctx, wms.Request{Version: "7.02.20250801.3", Repository: "rel70"}); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("a refused start: %v", err)
	}
	for _, bad := range []wms.Request{{Version: "7.02", Repository: "rel70"}, {Version: "7.02.20250801.3", Repository: "main"}} {
		if err := w.Start(ctx, bad); err == nil {
			t.Errorf("started %+v", bad)
		}
	}
}

// TestProcessWMSUpgrades runs a stand-in helper as a child: it writes its
// result as the real one does, from the request it reads.
func TestProcessWMSUpgrades(t *testing.T) {
	ctx := context.Background()
	cfg := WMSUpgradeConfig{Package: "wms", RuntimeDir: t.TempDir(), ResultDir: t.TempDir()}
	gate := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	// The stand-in waits on the fifo, so the test decides when it ends.
	script := `read line < "$1"; v=$3
printf '{"format":1,"version":"%s","outcome":"upgraded","installed":"%s","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:01:00Z"}' "$v" "$v" > "$2/$v.json"
echo "helper done $v"`
	var out bytes.Buffer
	// The version comes last, after the fixed arguments, as $3.
	w, err := NewProcessWMSUpgrades(cfg, []string{"sh", "-c", script, "helper", gate, cfg.ResultDir}, &syncWriter{w: &out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := "7.02.20250701.2"
	if err := w.Start(ctx, wms.Request{Version: v, Repository: "rel70"}); err != nil {
		t.Fatal(err)
	}
	if running, _ := w.Running(ctx, v); !running {
		t.Error("not running while the helper waits")
	}
	if err := w.Start(ctx, wms.Request{Version: v, Repository: "rel70"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, []byte("go\n"), 0o600); err != nil { // opens once: one helper reads it
		t.Fatal(err)
	}
	w.runner.(*childRunner).wait(v)
	if running, _ := w.Running(ctx, v); running {
		t.Error("running after the helper exited")
	}
	res, found, err := w.Result(ctx, v)
	if err != nil || !found || res.Outcome != wms.Upgraded || res.Installed != v {
		t.Errorf("Result = %+v, %v, %v", res, found, err)
	}
	if n := strings.Count(out.String(), "helper done"); n != 1 {
		t.Errorf("%d helpers ran; want 1:\n%s", n, out.String())
	}
}

func TestWMSInstalled(t *testing.T) {
	requireDpkg(t)
	repo := newWMSRepo(t)
	root := newDpkgRoot(t)
	w := NewSystemdWMSUpgrades(WMSUpgradeConfig{Package: "wms", Root: root}, nil, nil)
	if v, err := w.Installed(context.Background()); v != "" || err != nil {
		t.Errorf("nothing installed: %q, %v", v, err)
	}
	dpkgIn(t, root, "--install", repo.debs[wmsV1])
	if v, err := w.Installed(context.Background()); v != wmsV1 || err != nil {
		t.Errorf("Installed = %q, %v", v, err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }
