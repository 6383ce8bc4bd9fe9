package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

func TestHelperWMSUpgrade(t *testing.T) {
	dir := t.TempDir()
	runtime, results := filepath.Join(dir, "run"), filepath.Join(dir, "results")
	cfg := filepath.Join(dir, "agent.yaml")
	body := "runtime_dir: " + runtime + "\nupgrade:\n  result_dir: " + results + "\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("a malformed version", func(t *testing.T) {
		r := run(t, "", "--config", cfg, "helper", "wms-upgrade", "7.02.2025.1")
		if r.code != 2 || !strings.Contains(r.stderr, `the date part "2025" has 4 digits, not 8`) {
			t.Errorf("%+v", r)
		}
		if _, err := os.Stat(results); err == nil {
			t.Error("a result folder for a refused argument")
		}
	})
	t.Run("no repository configured: a failed result the agent reads", func(t *testing.T) {
		v := "7.02.20250701.2"
		if err := wms.WriteRequest(runtime, wms.Request{Version: v, Repository: "rel70", CommandID: "c9"}); err != nil {
			t.Fatal(err)
		}
		r := run(t, "", "--config", cfg, "helper", "wms-upgrade", v)
		if r.code != 2 || !strings.Contains(r.stderr, "upgrade.repo_url is empty") || r.stdout != "wms "+v+": failed\n" {
			t.Errorf("%+v", r)
		}
		res, found, err := wms.ReadResult(results, v)
		if err != nil || !found || res.Outcome != wms.Failed || !strings.Contains(res.Error, "upgrade.repo_url is empty") || !res.Done() {
			t.Errorf("result %+v, %v, %v", res, found, err)
		}
	})
}

func TestWMSUpgradesFor(t *testing.T) {
	a := &app{configPath: "/etc/pbx-agent/agent.yaml", stderr: os.Stderr}
	log := slog.New(slog.DiscardHandler)
	cfg := agent.DefaultConfig()
	w, err := wmsUpgradesFor(a, cfg, log, func(k string) string { return map[string]string{"INVOCATION_ID": "1"}[k] })
	if err != nil || w.String() != "systemd: pbx-agent-wms-upgrade@VERSION.service" {
		t.Errorf("under systemd: %v, %v", w, err)
	}
	w, err = wmsUpgradesFor(a, cfg, log, func(string) string { return "" })
	if err != nil || !strings.HasSuffix(w.String(), " --config /etc/pbx-agent/agent.yaml helper wms-upgrade VERSION") {
		t.Errorf("without systemd: %v, %v", w, err)
	}
}
