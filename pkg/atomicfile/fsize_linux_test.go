package atomicfile

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fsizeChildEnv names the folder a child test process writes into under a
// file size limit.
const fsizeChildEnv = "ATOMICFILE_FSIZE_CHILD_DIR"

// TestWriteFailureLeavesNoTempFile makes a write really fail: a child
// process lowers its file size limit (RLIMIT_FSIZE) to 16 bytes, with
// SIGXFSZ ignored, so writing more returns EFBIG as on a full quota. The
// temp file WriteTemp made must be gone afterwards, and WriteFile must
// leave the target as it was.
func TestWriteFailureLeavesNoTempFile(t *testing.T) {
	if dir := os.Getenv(fsizeChildEnv); dir != "" {
		fsizeChild(t, dir)
		return
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFailureLeavesNoTempFile$", "-test.count=1")
	cmd.Env = append(os.Environ(), fsizeChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("child did not run the writes:\n%s", out)
	}
	if names := entries(t, dir); len(names) != 1 || names[0] != "file" {
		t.Errorf("after failed writes the folder holds %q, want only \"file\"", names)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "file")); err != nil || string(got) != "old" {
		t.Errorf("target after a failed WriteFile: %q, %v", got, err)
	}
}

// fsizeChild runs in the child process: every write beyond 16 bytes fails.
func fsizeChild(t *testing.T, dir string) {
	signal.Ignore(syscall.SIGXFSZ) // else the kernel's signal ends the process
	lim := syscall.Rlimit{Cur: 16, Max: 16}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatalf("setting RLIMIT_FSIZE: %v", err)
	}
	data := []byte(strings.Repeat("x", 4096))
	name, err := WriteTemp(dir, ".file.tmp-*", data, 0o600)
	if !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("WriteTemp = %q, %v; want EFBIG", name, err)
	}
	if name != "" {
		t.Errorf("WriteTemp returned the name %q of a file it should have removed", name)
	}
	if err := WriteFile(filepath.Join(dir, "file"), data, 0o600); !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("WriteFile = %v; want EFBIG", err)
	}
}
