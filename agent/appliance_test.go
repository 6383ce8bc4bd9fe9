package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/identity"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// installedWMS is a WMSUpgrader whose Installed answers as told.
type installedWMS struct {
	WMSUpgrader
	version string
	err     error
	calls   int
}

func (w *installedWMS) Installed(context.Context) (string, error) {
	w.calls++
	return w.version, w.err
}

func TestApplianceInfo(t *testing.T) {
	root, run := t.TempDir(), t.TempDir()
	lists := filepath.Join(root, wms.AptListsDir)
	if err := os.MkdirAll(lists, 0o755); err != nil {
		t.Fatal(err)
	}
	list := "Package: wms\nVersion: 7.02.20250609.3\n\nPackage: wms\nVersion: 7.03.20250901.1~rc1\n\n"
	if err := os.WriteFile(filepath.Join(lists, "repo.example.com_wms_dists_rel70_main_binary-amd64_Packages"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{RuntimeDir: run, Upgrade: UpgradeConfig{Package: "wms", RepoURL: "https://repo.example.com/wms",
		RepoSuite: "{repository}", RepoComponents: []string{"main"}}}
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }

	t.Run("not set up, no serial", func(t *testing.T) {
		s := newApplianceInfo(&cfg, root, nil, clock).snapshot(context.Background())
		if s.appliance.Serial != "" || !strings.HasPrefix(s.appliance.SerialSource, "unknown (") {
			t.Errorf("serial %+v", s.appliance)
		}
		if s.wms.Version != "" || !strings.Contains(s.wms.VersionUnknown, "not set up") || s.wms.Behind {
			t.Errorf("wms %+v", s.wms)
		}
		if s.wms.Latest != "7.02.20250609.3" {
			t.Errorf("latest %q (%s); want the highest stable, not the rc", s.wms.Latest, s.wms.LatestUnknown)
		}
	})
	t.Run("behind, serial from the copy, cached", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(run, identity.SerialCopyName), []byte("SN-1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		up := &installedWMS{version: "7.01.20250101.1"}
		info := newApplianceInfo(&cfg, root, up, clock)
		s := info.snapshot(context.Background())
		if s.appliance.Serial != "SN-1" || s.appliance.SerialSource != identity.SerialFromDMI {
			t.Errorf("serial %+v", s.appliance)
		}
		if s.wms.Version != "7.01.20250101.1" || !s.wms.Behind {
			t.Errorf("wms %+v; want behind 7.02.20250609.3", s.wms)
		}
		up.version = "7.02.20250609.3"
		if s := info.snapshot(context.Background()); up.calls != 1 || !s.wms.Behind {
			t.Errorf("within the TTL: %d dpkg reads, %+v; want the cached answer", up.calls, s.wms)
		}
		now = now.Add(applianceInfoTTL)
		if s := info.snapshot(context.Background()); up.calls != 2 || s.wms.Behind || s.wms.Version != "7.02.20250609.3" {
			t.Errorf("after the TTL: %d dpkg reads, %+v; want up to date", up.calls, s.wms)
		}
	})
	t.Run("past the TTL, read again only when dpkg or apt changed something", func(t *testing.T) {
		// Under a root of its own: the other cases have no dpkg database.
		root := t.TempDir()
		lists := filepath.Join(root, wms.AptListsDir)
		for _, d := range []string{lists, filepath.Join(root, dpkgUpdatesDir)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		listFile := filepath.Join(lists, "repo.example.com_wms_dists_rel70_main_binary-amd64_Packages")
		if err := os.WriteFile(listFile, []byte(list), 0o644); err != nil {
			t.Fatal(err)
		}
		status := filepath.Join(root, dpkgStatusFile)
		// replace writes a file as dpkg and apt do: a new file renamed over it.
		replace := func(path, text string) {
			t.Helper()
			if err := os.WriteFile(path+".new", []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}
		replace(status, "Package: wms\nStatus: install ok installed\nVersion: 7.01.20250101.1\n\n")
		up := &installedWMS{version: "7.01.20250101.1"}
		info := newApplianceInfo(&cfg, root, up, clock)
		info.snapshot(context.Background())
		for i := range 3 {
			now = now.Add(applianceInfoTTL)
			if s := info.snapshot(context.Background()); up.calls != 1 || s.wms.Version != "7.01.20250101.1" {
				t.Fatalf("TTL %d past, nothing changed: %d dpkg reads, %+v; want the first read kept", i+1, up.calls, s.wms)
			}
		}
		// An upgrade: dpkg rewrites its status file.
		up.version = "7.02.20250609.3"
		replace(status, "Package: wms\nStatus: install ok installed\nVersion: 7.02.20250609.3\n\n")
		now = now.Add(applianceInfoTTL)
		if s := info.snapshot(context.Background()); up.calls != 2 || s.wms.Version != "7.02.20250609.3" || s.wms.Behind {
			t.Errorf("after an upgrade: %d dpkg reads, %+v; want the new version read", up.calls, s.wms)
		}
		// An apt-get update brings a newer stable version.
		replace(listFile, list+"Package: wms\nVersion: 7.04.20251201.1\n\n")
		now = now.Add(applianceInfoTTL)
		if s := info.snapshot(context.Background()); s.wms.Latest != "7.04.20251201.1" || !s.wms.Behind {
			t.Errorf("after an apt-get update: %+v; want 7.04.20251201.1 the latest, behind", s.wms)
		}
	})
	t.Run("why unknown", func(t *testing.T) {
		for _, tt := range []struct {
			up   *installedWMS
			want string
		}{
			{&installedWMS{}, "wms, which upgrade.package names, is not installed"},
			{&installedWMS{err: errors.New("dpkg-query: permission denied")}, "dpkg's database could not be read: dpkg-query: permission denied"},
		} {
			s := newApplianceInfo(&cfg, root, tt.up, clock).snapshot(context.Background())
			if !strings.Contains(s.wms.VersionUnknown, tt.want) || s.wms.Behind {
				t.Errorf("%+v; want %q", s.wms, tt.want)
			}
		}
		c := cfg
		c.Upgrade.RepoURL = ""
		c.Identity.Serial = "SN-CFG"
		s := newApplianceInfo(&c, root, &installedWMS{version: "7.01.20250101.1"}, clock).snapshot(context.Background())
		if s.wms.Latest != "" || !strings.Contains(s.wms.LatestUnknown, "upgrade.repo_url") || s.wms.Behind {
			t.Errorf("no repository: %+v", s.wms)
		}
		if s.appliance.Serial != "SN-CFG" || s.appliance.SerialSource != "identity.serial" {
			t.Errorf("override: %+v", s.appliance)
		}
	})
}

// The agent's status carries the appliance's part, read under its root,
// and the JSON names of the contract.
func TestStatusCarriesTheAppliance(t *testing.T) {
	r := newRig(t)
	r.cfg.RuntimeDir = t.TempDir()
	if err := os.MkdirAll(filepath.Join(r.root, "sys/class/dmi/id"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.root, identity.DMISerial), []byte("SN-RIG\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := r.newAgent(t).Status()
	if st.Appliance.Serial != "SN-RIG" || st.Appliance.SerialSource != identity.SerialFromDMI {
		t.Errorf("appliance %+v", st.Appliance)
	}
	if !strings.Contains(st.WMS.VersionUnknown, "not set up") || !strings.Contains(st.WMS.LatestUnknown, "upgrade.repo_url") {
		t.Errorf("wms %+v; want why each version is unknown", st.WMS)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"appliance":{"serial":"SN-RIG","serial_source":"dmi"}`, `"version_unknown":`, `"latest_unknown":`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status JSON lacks %s", want)
		}
	}
}
