package license

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTimensOffsets(t *testing.T) {
	tests := []struct {
		name, text string
		wantErr    string // "" for none
	}{
		{"initial namespace", "monotonic           0         0\nboottime            0         0\n", ""},
		{"empty file", "", ""},
		{"boot time moved forward", "monotonic 0 0\nboottime 2592000 0\n", "boottime clock is offset by 2592000s"},
		{"monotonic moved back", "monotonic -3600 0\nboottime 0 0\n", "monotonic clock is offset by -3600s"},
		{"nanoseconds only", "monotonic 0 0\nboottime 0 500\n", "offset by 0s 500ns"},
		{"a clock this code does not know", "realtime 5 0\n", "realtime clock is offset"},
		{"garbage", "monotonic zero 0\n", `line 1 "monotonic zero 0": the offset is not a number`},
		{"a short line", "boottime 0\n", "want a clock name, seconds and nanoseconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ParseTimensOffsets(tt.text)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckTimeNamespace(t *testing.T) {
	write := func(t *testing.T, text string) string {
		root := t.TempDir()
		path := filepath.Join(root, TimensOffsetsPath)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o444); err != nil {
			t.Fatal(err)
		}
		return root
	}
	if err := CheckTimeNamespace(t.TempDir()); err != nil {
		t.Errorf("a kernel without time namespaces: %v", err)
	}
	if err := CheckTimeNamespace(write(t, "monotonic 0 0\nboottime 0 0\n")); err != nil {
		t.Errorf("zero offsets: %v", err)
	}
	err := CheckTimeNamespace(write(t, "monotonic 0 0\nboottime 86400 0\n"))
	if err == nil || !strings.Contains(err.Error(), TimensOffsetsPath) || !strings.Contains(err.Error(), "unshare --time") {
		t.Errorf("offset boot time: %v, want an error naming the file and the fix", err)
	}
	// This test process itself: run in the initial namespace, it passes.
	if err := CheckTimeNamespace(""); err != nil {
		t.Errorf("this machine: %v", err)
	}
}

// TestCheckTimeNamespaceUnshared is the attack itself: a process started
// under unshare --time --boottime sees its own non-zero offset. The test
// binary runs itself in such a namespace and reports what it found.
func TestCheckTimeNamespaceUnshared(t *testing.T) {
	if os.Getenv("PBX_TIMENS_CHILD") == "1" {
		if err := CheckTimeNamespace(""); err != nil {
			os.Stdout.WriteString("REFUSED: " + err.Error())
		}
		return
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed")
	}
	probe := exec.Command("unshare", "--time", "--boottime", "2592000", "true")
	if err := probe.Run(); err != nil {
		t.Skipf("cannot make a time namespace here (needs root and Linux 5.6): %v", err)
	}
	cmd := exec.Command("unshare", "--time", "--boottime", "2592000",
		os.Args[0], "-test.run=^TestCheckTimeNamespaceUnshared$")
	cmd.Env = append(os.Environ(), "PBX_TIMENS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "REFUSED: ") || !strings.Contains(string(out), "boottime clock is offset by 2592000s") {
		t.Errorf("a process in a time namespace 30 days ahead was not refused:\n%s", out)
	}
}
