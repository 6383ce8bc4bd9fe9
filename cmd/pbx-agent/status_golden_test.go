package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/pbx-agent/pbx-agent/internal/statusfixture"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestStatusGolden renders the human status of every state (and the
// variants an admin meets: over-use, a suspension, a re-bind) at a fixed
// licence time, and compares it with testdata/status-STATE.golden. Run
// with -update after a deliberate change, and read the diff.
func TestStatusGolden(t *testing.T) {
	for _, c := range statusfixture.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			var buf bytes.Buffer
			printStatus(&buf, c.Status, false)
			golden(t, filepath.Join("testdata", "status-"+c.Name+".golden"), buf.Bytes())
		})
	}
}

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
