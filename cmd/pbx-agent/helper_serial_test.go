package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/identity"
)

func TestHelperCopySerial(t *testing.T) {
	dir := t.TempDir()
	runtime, root := filepath.Join(dir, "run"), filepath.Join(dir, "root")
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("runtime_dir: "+runtime+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{runtime, filepath.Join(root, "sys/class/dmi/id")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, identity.DMISerial), []byte("SN-777\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	r := run(t, "", "--config", cfg, "helper", "copy-serial", "--root", root)
	if r.code != 0 || !strings.Contains(r.stdout, "copied") {
		t.Fatalf("%+v", r)
	}
	s, src := identity.ResolveSerial("", t.TempDir(), filepath.Join(runtime, identity.SerialCopyName))
	if s != "SN-777" || src != identity.SerialFromDMI {
		t.Errorf("daemon reads %q, %q", s, src)
	}
	// The serial must not leak into logs the helper writes (it is shown only in the status).
	if strings.Contains(r.stdout+r.stderr, "SN-777") {
		t.Errorf("helper printed the serial: %+v", r)
	}
}
