// Package atomicfile replaces files so that readers, and a machine that loses
// power, see either the whole old content or the whole new content, never a
// mix or a truncated file.
//
// The recipe: write a temporary file in the same directory (rename is only
// atomic within one filesystem), fsync it, rename it over the target, then
// fsync the directory so the rename itself survives a power cut.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile atomically replaces path with data and gives it mode perm.
//
// The mode is set explicitly (not through the umask), so perm is what ends
// up on disk. On failure path is left untouched and no temporary file is
// left behind.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	// A leading dot hides the temp file from casual listings and globs.
	tmp, err := WriteTemp(dir, "."+base+".tmp-*", data, perm)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	return SyncDir(dir)
}

// WriteTemp writes data to a new file in dir, named after pattern as
// os.CreateTemp does, with mode perm. The file is fsynced and closed, so it
// is ready to be renamed into place; its path is returned. On failure no
// file is left behind.
//
// It is the first half of WriteFile, for callers that need their own rename
// sequence (pkg/state rotates the current file to a backup first).
func WriteTemp(dir, pattern string, data []byte, perm os.FileMode) (name string, err error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", fmt.Errorf("atomicfile: %w", err)
	}
	// Removed by its own name: `return "", err` has cleared the named
	// result by the time this deferred call runs.
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close() // may already be closed; the error is moot then
			os.Remove(tmp)
		}
	}()
	// CreateTemp always uses 0600; set the requested mode before any data
	// is written.
	if err := f.Chmod(perm); err != nil {
		return "", fmt.Errorf("atomicfile: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("atomicfile: %w", err)
	}
	// Without this the rename can reach the disk before the data, and a
	// power cut leaves an empty or partial file under the final name.
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("atomicfile: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("atomicfile: %w", err)
	}
	return tmp, nil
}

// SyncDir fsyncs directory dir, making renames, creations and removals of
// its entries durable. Without it a rename that has returned can still be
// undone by a power cut.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: syncing directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfile: syncing directory: %w", err)
	}
	return nil
}
