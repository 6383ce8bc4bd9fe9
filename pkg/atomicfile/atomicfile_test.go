package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// entries lists the names in dir, so tests can spot leftover temp files.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte      // written first with mode 0644 when not nil
		data     []byte      // what WriteFile writes
		perm     os.FileMode // and with which mode
	}{
		{name: "new file 0600", data: []byte("hello\n"), perm: 0o600},
		{name: "new file 0640", data: []byte("hello\n"), perm: 0o640},
		{name: "empty content", data: []byte{}, perm: 0o600},
		{name: "overwrite longer", existing: []byte("a much longer old content\n"), data: []byte("new\n"), perm: 0o600},
		{name: "overwrite shorter", existing: []byte("old\n"), data: []byte("a longer new content\n"), perm: 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "file.json")
			if tt.existing != nil {
				if err := os.WriteFile(path, tt.existing, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, tt.data, tt.perm); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tt.data) {
				t.Errorf("content = %q, want %q", got, tt.data)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tt.perm {
				t.Errorf("mode = %v, want %v", fi.Mode(), tt.perm)
			}
			if names := entries(t, dir); !slices.Equal(names, []string{"file.json"}) {
				t.Errorf("directory holds %q, want only file.json", names)
			}
		})
	}
}

func TestWriteFileRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := WriteFile("plain", []byte("x"), 0o600); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "plain")); err != nil || string(got) != "x" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
}

func TestWriteFileFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the target path
	}{
		{
			name: "folder missing",
			setup: func(t *testing.T, dir string) string {
				return filepath.Join(dir, "missing", "file")
			},
		},
		{
			name: "target is a directory",
			setup: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "file")
				if err := os.Mkdir(p, 0o700); err != nil {
					t.Fatal(err)
				}
				return p
			},
		},
		{
			name: "target is a non-empty directory",
			setup: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "file")
				if err := os.MkdirAll(filepath.Join(p, "child"), 0o700); err != nil {
					t.Fatal(err)
				}
				return p
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tt.setup(t, dir)
			before := entries(t, dir)
			if err := WriteFile(path, []byte("data"), 0o600); err == nil {
				t.Fatal("WriteFile succeeded, want an error")
			}
			if after := entries(t, dir); !slices.Equal(before, after) {
				t.Errorf("directory changed from %q to %q; a temp file was left behind", before, after)
			}
		})
	}
}

func TestWriteTemp(t *testing.T) {
	dir := t.TempDir()
	name, err := WriteTemp(dir, "x.tmp-*", []byte("data"), 0o640)
	if err != nil {
		t.Fatalf("WriteTemp: %v", err)
	}
	if filepath.Dir(name) != dir {
		t.Errorf("temp file %s is not in %s", name, dir)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o640 || fi.Size() != 4 {
		t.Errorf("temp file mode %v size %d, want 0640 and 4", fi.Mode(), fi.Size())
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Errorf("SyncDir on a directory: %v", err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("SyncDir on a missing directory succeeded, want an error")
	}
}
