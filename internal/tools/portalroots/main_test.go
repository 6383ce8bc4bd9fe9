package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestRootsSpec(t *testing.T) {
	dir := t.TempDir()
	if _, err := rootsSpec(dir); err == nil || !strings.Contains(err.Error(), "holds no <kid>.pem portal root key") ||
		!strings.Contains(err.Error(), "PORTAL_ROOTS=DIR") {
		t.Errorf("empty folder: error = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("roots go here"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rootsSpec(dir); err == nil {
		t.Error("a folder with a README alone was accepted")
	}
	s, err := license.GenerateSigner("vendor-root-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := license.WriteKeyringFile(dir, s.KeyID(), s.Public()); err != nil {
		t.Fatal(err)
	}
	spec, err := rootsSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := license.ParseRoots(spec)
	if err != nil || len(roots) != 1 || !roots["vendor-root-1"].Equal(s.Public()) {
		t.Errorf("spec %q parses to %v, %v", spec, roots, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.pem"), []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rootsSpec(dir); err == nil || !strings.Contains(err.Error(), "broken.pem") {
		t.Errorf("broken key: error = %v", err)
	}
	if _, err := rootsSpec(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "PORTAL_ROOTS") {
		t.Errorf("missing folder: error = %v", err)
	}
}
