package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func runSim(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, &env{stdout: &out, stderr: &errb, now: func() time.Time { return realNow }})
	return code, out.String(), errb.String()
}

// keys init makes the key a later serve signs with; keys announce signs,
// with it as a root, another portal's key.
func TestKeysInitAndAnnounce(t *testing.T) {
	rootDir, otherDir := filepath.Join(t.TempDir(), "root"), filepath.Join(t.TempDir(), "other")
	code, kid, stderr := runSim(t, "keys", "init", "--data", rootDir)
	kid = strings.TrimSpace(kid)
	if code != 0 || !license.ValidKeyID(kid) {
		t.Fatalf("keys init: exit %d, %q, %s", code, kid, stderr)
	}
	if code, again, _ := runSim(t, "keys", "init", "--data", rootDir); code != 0 || strings.TrimSpace(again) != kid {
		t.Errorf("keys init again: exit %d, key %q, want the same key %q", code, again, kid)
	}
	p, err := portalsim.New(portalsim.Config{DataDir: rootDir})
	if err != nil {
		t.Fatal(err)
	}
	if p.KeyID() != kid {
		t.Errorf("the portal serves with key %q, not the one keys init made (%q)", p.KeyID(), kid)
	}
	p.Close()

	otherKID, err := portalsim.InitKeys(otherDir)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM := filepath.Join(otherDir, "keyring", otherKID+".pem")
	code, path, stderr := runSim(t, "keys", "announce", "--data", rootDir, "--key", otherPEM, "--not-after", "2027-01-01T00:00:00Z")
	path = strings.TrimSpace(path)
	if code != 0 || path != filepath.Join(rootDir, "keyring", "announce.jws") {
		t.Fatalf("keys announce: exit %d, %q, %s", code, path, stderr)
	}
	jws, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rootPub, err := license.ParsePublicKeyPEM(mustRead(t, filepath.Join(rootDir, "keyring", kid+".pem")))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := license.NewKeyring(map[string]ed25519.PublicKey{kid: rootPub})
	if err != nil {
		t.Fatal(err)
	}
	a, err := license.ParseAnnouncement(string(jws), roots)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _ := license.ParsePublicKeyPEM(mustRead(t, otherPEM))
	if len(a.Keys) != 1 || a.Keys[0].KeyID != otherKID || a.Keys[0].PublicKey != license.NewAnnouncedKey("", otherPub).PublicKey ||
		a.Keys[0].NotAfter == nil || !a.Keys[0].NotAfter.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) || a.SignerKeyID != kid {
		t.Errorf("announcement = %+v", a)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "announce", "--data", rootDir}, "no key to announce"},
		{[]string{"keys", "announce", "--data", rootDir, "--key", filepath.Join(otherDir, "signing-key.pem.bak")}, "want a <kid>.pem file"},
		{[]string{"keys", "announce", "--data", filepath.Join(t.TempDir(), "none"), "--key", otherPEM}, "run serve or keys init"},
		{[]string{"keys", "announce", "--data", rootDir, "--key", otherPEM, "--not-after", "soon"}, "want RFC 3339"},
	} {
		if code, _, stderr := runSim(t, tt.args...); code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
