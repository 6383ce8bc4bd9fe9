package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/pkg/actions"
)

func TestTelephonyFor(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	commands := agent.DefaultConfig()
	commands.Enforcement.StopCommand = []string{"/usr/lib/wms/telephony", "stop"}
	commands.Enforcement.StartCommand = []string{"/usr/lib/wms/telephony", "start"}
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name string
		cfg  agent.Config
		env  map[string]string
		want string // the executor's type; "" for the logging default
	}{
		{"run by systemd", agent.DefaultConfig(), map[string]string{"INVOCATION_ID": "0123"}, "*actions.SystemdTelephony"},
		{"notify socket", agent.DefaultConfig(), map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify"}, "*actions.SystemdTelephony"},
		{"commands win", commands, map[string]string{"INVOCATION_ID": "0123"}, "*actions.CommandTelephony"},
		{"commands without systemd", commands, nil, "*actions.CommandTelephony"},
		{"neither", agent.DefaultConfig(), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel, how, err := telephonyFor(tt.cfg, log, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			switch tel.(type) {
			case *actions.SystemdTelephony:
				got = "*actions.SystemdTelephony"
			case *actions.CommandTelephony:
				got = "*actions.CommandTelephony"
			}
			if got != tt.want || how == "" {
				t.Errorf("telephonyFor = %s (%q), want %s", got, how, tt.want)
			}
			if tt.want == "" && tel != nil {
				t.Errorf("telephonyFor = %T, want nil (the agent's logging default)", tel)
			}
		})
	}
}

func TestHelperTelephonyUnits(t *testing.T) {
	dir := t.TempDir()
	units := filepath.Join(dir, "system")
	config := func(body string) string {
		p := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	helper := func(cfg string) result {
		return run(t, "", "--config", cfg, "helper", "telephony-units", "--unit-dir", units, "--reload=false")
	}
	cfg := config("enforcement:\n  stop_units: [asterisk.service, wms-sip.service]\n")
	if r := helper(cfg); r.code != 0 || r.stdout != "telephony units [asterisk.service wms-sip.service]: drop-ins written\n" {
		t.Fatalf("first run: %+v", r)
	}
	b, err := os.ReadFile(filepath.Join(units, actions.StoppedTarget+".d", actions.DropInName))
	if err != nil || !strings.Contains(string(b), "Conflicts=asterisk.service wms-sip.service") {
		t.Errorf("stopped target drop-in: %s, %v", b, err)
	}
	if err := actions.CheckDropIns(units, []string{"asterisk.service", "wms-sip.service"}); err != nil {
		t.Error(err)
	}
	if r := helper(cfg); r.code != 0 || !strings.Contains(r.stdout, "unchanged") {
		t.Errorf("second run: %+v", r)
	}
	if r := helper(config("enforcement:\n  stop_units: []\n")); r.code != 0 || !strings.Contains(r.stdout, "removed") {
		t.Errorf("emptied: %+v", r)
	}
	if r := helper(config("enforcement:\n  stop_units: [\"x.service; rm -rf /\"]\n")); r.code != 2 || !strings.Contains(r.stderr, "enforcement.stop_units") {
		t.Errorf("bad unit: %+v", r)
	}
	if r := helper(config("enforcement:\n  stop_command: [/bin/true]\n")); r.code != 2 || !strings.Contains(r.stderr, "start_command") {
		t.Errorf("stop command alone: %+v", r)
	}
}
