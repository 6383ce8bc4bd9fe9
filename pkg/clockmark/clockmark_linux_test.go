package clockmark

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// mountTmpfs mounts a small tmpfs on a new folder, or skips when this
// process may not mount.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// TestRecordFullDisk fills the state folder's file system: writes to an
// existing record go through.
func TestRecordFullDisk(t *testing.T) {
	dir := mountTmpfs(t, "size=64k")
	path := filepath.Join(dir, "clock.mark")
	r := open(t, path)
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			break
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "probe"), chunk, 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("the disk is not full: %v", err)
	}
	for i := range 20 {
		if err := r.Write(mark(i)); err != nil {
			t.Fatalf("write %d on a full disk: %v", i, err)
		}
	}
	if got, err := open(t, path).Read(); err != nil || got != mark(19) {
		t.Errorf("on a full disk: %+v, %v", got, err)
	}
	checkFile(t, path)
	// A record that does not exist yet cannot be made on a full disk:
	// the caller hears of it.
	if _, err := Open(filepath.Join(dir, "other.mark")); err == nil {
		t.Error("a record created on a full disk")
	}
}

// TestRecordReadOnlyFolder: a record that cannot be created is an error.
func TestRecordReadOnlyFolder(t *testing.T) {
	dir := mountTmpfs(t, "size=64k")
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("cannot remount read-only: %v", err)
	}
	_, err := Open(filepath.Join(dir, "clock.mark"))
	if err == nil || !errors.Is(err, syscall.EROFS) {
		t.Errorf("a record in a read-only folder: %v, want EROFS", err)
	}
}
