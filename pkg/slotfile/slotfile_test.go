package slotfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testMagic = "TESTREC1"

func open(t *testing.T, path string) *File {
	t.Helper()
	r, err := Open(path, testMagic, 1024)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// data is the i-th write: lengths vary, so a shorter write follows a
// longer one in the same slot.
func data(i int) []byte {
	return []byte(strings.Repeat(fmt.Sprintf("write %d;", i), 1+(i*37)%90))
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	r := open(t, path)
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != 2048 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("a new record: %v, %v; want 2048 bytes, 0600", fi, err)
	}
	if _, err := r.Read(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("a new record: %v, want ErrEmpty", err)
	}
	for i := range 8 {
		if err := r.Write(data(i)); err != nil {
			t.Fatal(err)
		}
		if got, err := r.Read(); err != nil || !bytes.Equal(got, data(i)) {
			t.Fatalf("after write %d: %q, %v", i, got, err)
		}
		if got, err := open(t, path).Read(); err != nil || !bytes.Equal(got, data(i)) {
			t.Fatalf("reopened after write %d: %q, %v", i, got, err)
		}
	}
	if err := r.Write(nil); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Read(); err != nil || len(got) != 0 {
		t.Errorf("empty data read back as %q, %v", got, err)
	}
}

func TestTooLarge(t *testing.T) {
	r := open(t, filepath.Join(t.TempDir(), "rec"))
	if err := r.Write(data(1)); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(make([]byte, r.Capacity()+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("%d bytes into a capacity of %d: %v, want ErrTooLarge", r.Capacity()+1, r.Capacity(), err)
	}
	if err := r.Write(bytes.Repeat([]byte{7}, r.Capacity())); err != nil {
		t.Fatalf("exactly the capacity: %v", err)
	}
	if got, err := r.Read(); err != nil || len(got) != r.Capacity() {
		t.Errorf("a full slot read back as %d bytes, %v", len(got), err)
	}
}

// corrupt writes garbage over the header and data of one slot, as a torn
// write or a bad sector would.
func corrupt(t *testing.T, path string, slot int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 40)), int64(slot*1024+8)); err != nil {
		t.Fatal(err)
	}
}

func TestTornWrite(t *testing.T) {
	for _, tt := range []struct {
		name string
		slot int // of the three writes, 0 and 2 went to slot A, 1 to slot B
		want []byte
	}{
		{"the newest slot torn: the write before", 0, data(1)},
		{"the older slot torn: the newest write", 1, data(2)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rec")
			r := open(t, path)
			for i := range 3 {
				if err := r.Write(data(i)); err != nil {
					t.Fatal(err)
				}
			}
			corrupt(t, path, tt.slot)
			r2 := open(t, path)
			if got, err := r2.Read(); err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("%q, %v; want %q", got, err, tt.want)
			}
			if err := r2.Write(data(9)); err != nil {
				t.Fatal(err)
			}
			if got, err := open(t, path).Read(); err != nil || !bytes.Equal(got, data(9)) {
				t.Errorf("after the next write: %q, %v", got, err)
			}
		})
	}
	t.Run("both slots damaged", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "rec")
		r := open(t, path)
		for i := range 2 {
			if err := r.Write(data(i)); err != nil {
				t.Fatal(err)
			}
		}
		corrupt(t, path, 0)
		corrupt(t, path, 1)
		if _, err := open(t, path).Read(); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("both slots damaged: %v", err)
		}
	})
}

func TestRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("not a record"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(other, testMagic, 1024); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("a file of another size: %v, want an error naming it", err)
	}
	path := filepath.Join(dir, "rec")
	r := open(t, path)
	if err := r.Write(data(1)); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(path, "OTHERREC", 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := r2.Read(); err == nil {
		t.Error("a record of another kind read")
	}
	if _, err := Open(path, "short", 1024); err == nil {
		t.Error("a magic of 5 bytes accepted")
	}
}

func TestRemovedWhileInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	r := open(t, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(data(1)); err == nil || !strings.Contains(err.Error(), "removed or replaced") {
		t.Errorf("a write to a removed record: %v", err)
	}
}
