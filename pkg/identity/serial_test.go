package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestResolveSerialOrder(t *testing.T) {
	root := t.TempDir()
	copyPath := filepath.Join(t.TempDir(), SerialCopyName)

	s, src := ResolveSerial("", root, copyPath)
	if s != "" || !strings.HasPrefix(src, "unknown (") || !strings.Contains(src, "set identity.serial") {
		t.Errorf("nothing readable: %q, %q; want unknown with the fix", s, src)
	}

	writeFile(t, filepath.Join(root, DMISerial), "DMI-DIRECT\n", 0o644)
	if s, src := ResolveSerial("", root, copyPath); s != "DMI-DIRECT" || src != SerialFromDMI {
		t.Errorf("DMI readable: %q, %q", s, src)
	}
	writeFile(t, copyPath, "DMI-COPY\n", 0o644)
	if s, src := ResolveSerial("", root, copyPath); s != "DMI-COPY" || src != SerialFromDMI {
		t.Errorf("copy present: %q, %q; the root step's copy comes first", s, src)
	}
	if s, src := ResolveSerial("  SN-OVERRIDE ", root, copyPath); s != "SN-OVERRIDE" || src != SerialFromConfig {
		t.Errorf("override: %q, %q; identity.serial wins", s, src)
	}
}

func TestResolveSerialRefusesJunk(t *testing.T) {
	for name, content := range map[string]string{
		"placeholder": "To Be Filled By O.E.M.\n",
		"empty":       "\n",
		"control":     "SN\x1b[2J\n",
		"huge":        strings.Repeat("A", 4096),
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			copyPath := filepath.Join(root, SerialCopyName)
			writeFile(t, copyPath, content, 0o644)
			s, src := ResolveSerial("", root, copyPath)
			if s != "" || !strings.HasPrefix(src, "unknown (") {
				t.Errorf("%s: %q, %q; want unknown", name, s, src)
			}
		})
	}
}

func TestResolveSerialRootOnly(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads a 0400 file")
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, DMISerial), "SECRET\n", 0o400)
	s, src := ResolveSerial("", root, filepath.Join(root, "run", SerialCopyName))
	if s != "" || !strings.Contains(src, "readable by root only") {
		t.Errorf("root-only DMI: %q, %q; want unknown saying why", s, src)
	}
}

func TestCopySerial(t *testing.T) {
	root := t.TempDir()
	dst := filepath.Join(t.TempDir(), SerialCopyName)
	writeFile(t, filepath.Join(root, DMISerial), "ABC123\n", 0o400)
	if s, err := CopySerial(root, dst); err != nil || s != "ABC123" {
		t.Fatalf("CopySerial = %q, %v", s, err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("copy: %v, mode %v; want 0644", err, fi)
	}
	if s, src := ResolveSerial("", t.TempDir(), dst); s != "ABC123" || src != SerialFromDMI {
		t.Errorf("after copy: %q, %q", s, src)
	}
	// Hardware without a serial (disk moved to a new box): the stale copy goes.
	writeFile(t, filepath.Join(root, DMISerial), "Not Specified\n", 0o400)
	if s, err := CopySerial(root, dst); err != nil || s != "" {
		t.Fatalf("CopySerial placeholder = %q, %v", s, err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("stale copy kept: %v", err)
	}
}

// The daemon's user owns the runtime folder the root helper writes to: a
// link it plants at the copy or its temporary name must not make root
// write through it.
func TestCopySerialRefusesPlantedLinks(t *testing.T) {
	root, run := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(root, DMISerial), "ABC123\n", 0o400)
	victim := filepath.Join(t.TempDir(), "shadow")
	writeFile(t, victim, "root:secret\n", 0o600)
	dst := filepath.Join(run, SerialCopyName)
	for _, link := range []string{dst + ".tmp", dst} {
		if err := os.Symlink(victim, link); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := CopySerial(root, dst); err != nil || s != "ABC123" {
		t.Fatalf("CopySerial = %q, %v", s, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root:secret\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	if fi, err := os.Lstat(dst); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("copy: %v, %v; want a regular file replacing the link", fi, err)
	}
	// With no serial, the planted link is removed, its target left alone.
	writeFile(t, filepath.Join(root, DMISerial), "\n", 0o400)
	if err := os.Remove(dst); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := CopySerial(root, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("the link's target was removed: %v", err)
	}
}
