package license

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKeyring(t *testing.T) {
	a, b := testSigner(t, "portal-1"), testSigner(t, "portal-2")
	dir := t.TempDir()
	for _, s := range []*Signer{a, b} {
		if err := WriteKeyringFile(dir, s.KeyID(), s.Public()); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("portal keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(kr.KeyIDs(), ","); got != "portal-1,portal-2" {
		t.Errorf("KeyIDs = %s", got)
	}
	for _, s := range []*Signer{a, b} {
		if _, err := ParseKey(mustSign(t, s, TypeKey, testKey()), kr, KeyCheck{Now: testNow}); err != nil {
			t.Errorf("key signed by %s: %v", s.KeyID(), err)
		}
	}
	revoked := kr.WithRevoked([]string{"portal-1"})
	if got := strings.Join(revoked.KeyIDs(), ","); got != "portal-2" {
		t.Errorf("after revocation KeyIDs = %s", got)
	}
	if got := strings.Join(kr.KeyIDs(), ","); got != "portal-1,portal-2" {
		t.Errorf("WithRevoked changed its receiver: %s", got)
	}
}

func TestLoadKeyringErrors(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantMsg string
	}{
		{name: "empty folder", wantMsg: "holds no <kid>.pem files"},
		{name: "not PEM", files: map[string]string{"portal-1.pem": "hello"}, wantMsg: `portal-1.pem: no PEM "PUBLIC KEY" block`},
		{name: "bad file name", files: map[string]string{"-x.pem": "hello"}, wantMsg: "the file name is not a valid key id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadKeyring(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("LoadKeyring error = %v, want one containing %q", err, tt.wantMsg)
			}
		})
	}
	if _, err := LoadKeyring(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing folder: error = %v, want ErrNotExist", err)
	}
}

func TestSignerSaveLoad(t *testing.T) {
	s, err := GenerateSigner("portal-7")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "signing-key.pem")
	if err := SaveSigner(path, s); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("signing key mode = %v, want 0600", fi.Mode().Perm())
	}
	loaded, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.KeyID() != "portal-7" || !loaded.Public().Equal(s.Public()) {
		t.Errorf("loaded signer %s differs from the saved one", loaded.KeyID())
	}
}
