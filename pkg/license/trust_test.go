package license

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// trustFixture is a release build's view: root is embedded, portal is the
// key the vendor's portal signs with, owner is a key the appliance's owner
// made (with root on the appliance) to sign keys of their own.
type trustFixture struct {
	root, portal, owner *Signer
	roots               map[string]ed25519.PublicKey
	dir                 string // the configured keyring folder
}

func newTrustFixture(t *testing.T) *trustFixture {
	t.Helper()
	f := &trustFixture{
		root:   testSigner(t, "vendor-root-1"),
		portal: testSigner(t, "portal-2026"),
		owner:  testSigner(t, "owner-portal"),
		dir:    t.TempDir(),
	}
	f.roots = map[string]ed25519.PublicKey{f.root.KeyID(): f.root.Public()}
	return f
}

func (f *trustFixture) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *trustFixture) announce(t *testing.T, name string, by *Signer, keys ...AnnouncedKey) {
	t.Helper()
	jws, err := SignAnnouncement(by, keys, testNow)
	if err != nil {
		t.Fatal(err)
	}
	f.write(t, name, jws+"\n")
}

func (f *trustFixture) load(t *testing.T) *Keyring {
	t.Helper()
	kr, err := loadReleaseKeyring(f.dir, f.roots, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// keySignedBy is a valid PBX key signed by s.
func keySignedBy(t *testing.T, s *Signer) string { return mustSign(t, s, TypeKey, testKey()) }

func wantTrusted(t *testing.T, kr *Keyring, s *Signer) {
	t.Helper()
	if _, err := ParseKey(keySignedBy(t, s), kr, KeyCheck{Now: testNow}); err != nil {
		t.Errorf("a key signed by %s was refused: %v", s.KeyID(), err)
	}
}

func wantRefused(t *testing.T, kr *Keyring, s *Signer, why string) {
	t.Helper()
	_, err := ParseKey(keySignedBy(t, s), kr, KeyCheck{Now: testNow})
	if !errors.Is(err, ErrUnknownSigner) || !strings.Contains(err.Error(), why) {
		t.Errorf("a key signed by %s: error = %v, want ErrUnknownSigner saying %q", s.KeyID(), err, why)
	}
}

func wantIgnored(t *testing.T, kr *Keyring, parts ...string) {
	t.Helper()
	for _, line := range kr.Trust().Ignored {
		if containsAll(line, parts...) {
			return
		}
	}
	t.Errorf("no ignored entry says %q; ignored: %q", parts, kr.Trust().Ignored)
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func TestReleaseKeyringTrustsRootsAndAnnouncedKeys(t *testing.T) {
	f := newTrustFixture(t)
	f.announce(t, "announce.jws", f.root, NewAnnouncedKey(f.portal.KeyID(), f.portal.Public()))
	f.write(t, "README", "portal keys")
	kr := f.load(t)

	wantTrusted(t, kr, f.portal)
	wantTrusted(t, kr, f.root)
	if got := strings.Join(kr.KeyIDs(), ","); got != "portal-2026,vendor-root-1" {
		t.Errorf("KeyIDs = %s", got)
	}
	tr := kr.Trust()
	if tr.Roots != RootsEmbedded {
		t.Errorf("Roots = %q, want %q", tr.Roots, RootsEmbedded)
	}
	want := []TrustedKey{
		{KeyID: "portal-2026", Role: RoleAnnounced, AnnouncedBy: "vendor-root-1"},
		{KeyID: "vendor-root-1", Role: RoleRoot},
	}
	if !slices.Equal(tr.Keys, want) {
		t.Errorf("Trust().Keys = %+v, want %+v", tr.Keys, want)
	}
	if len(tr.Ignored) != 0 {
		t.Errorf("Ignored = %q, want nothing", tr.Ignored)
	}
}

// The owner's attack: a key of their own, dropped into the keyring folder
// as a bare .pem, as a development build would trust it.
func TestReleaseKeyringIgnoresBarePEM(t *testing.T) {
	f := newTrustFixture(t)
	if err := WriteKeyringFile(f.dir, f.owner.KeyID(), f.owner.Public()); err != nil {
		t.Fatal(err)
	}
	// Even a bare copy of the announced portal key does not count: only
	// the announcement does.
	if err := WriteKeyringFile(f.dir, f.portal.KeyID(), f.portal.Public()); err != nil {
		t.Fatal(err)
	}
	kr := f.load(t)
	wantRefused(t, kr, f.owner, `portal key "owner-portal" is not in the embedded portal roots`)
	wantRefused(t, kr, f.portal, `portal key "portal-2026" is not in`)
	wantTrusted(t, kr, f.root)
	wantIgnored(t, kr, "owner-portal.pem", "ignored", "embedded portal roots")
	wantIgnored(t, kr, "portal-2026.pem", "ignored")
}

// The owner's next attempts: announcements they sign themselves, or with a
// key a root announced (announced keys sign documents, not announcements),
// or a root's announcement altered to name their key.
func TestReleaseKeyringRefusesAnnouncementsNotSignedByARoot(t *testing.T) {
	f := newTrustFixture(t)
	ownerKey := NewAnnouncedKey(f.owner.KeyID(), f.owner.Public())
	f.announce(t, "self.jws", f.owner, ownerKey)
	f.announce(t, "portal.jws", f.root, NewAnnouncedKey(f.portal.KeyID(), f.portal.Public()))
	f.announce(t, "chained.jws", f.portal, ownerKey)

	// A root's announcement with its content swapped for the owner's key.
	genuine, err := SignAnnouncement(f.root, []AnnouncedKey{NewAnnouncedKey("owner-portal", f.portal.Public())}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(Announcement{Version: 1, IssuedAt: testNow, Keys: []AnnouncedKey{ownerKey}})
	parts := strings.Split(genuine, ".")
	f.write(t, "altered.jws", parts[0]+"."+base64.RawURLEncoding.EncodeToString(forged)+"."+parts[2])

	// A root's signature over another type of document with the same content.
	f.write(t, "wrongtype.jws", mustSign(t, f.root, TypeLicense, Announcement{Version: 1, IssuedAt: testNow, Keys: []AnnouncedKey{ownerKey}}))

	kr := f.load(t)
	wantTrusted(t, kr, f.portal)
	wantRefused(t, kr, f.owner, `portal key "owner-portal" is not in`)
	wantIgnored(t, kr, "self.jws", "refused", `"owner-portal" is not in this build's embedded portal roots`)
	wantIgnored(t, kr, "chained.jws", "refused", `"portal-2026" is not in this build's embedded portal roots`)
	wantIgnored(t, kr, "altered.jws", "refused", ErrBadSignature.Error())
	wantIgnored(t, kr, "wrongtype.jws", "refused", ErrWrongType.Error())
}

func TestReleaseKeyringRevocation(t *testing.T) {
	f := newTrustFixture(t)
	second := testSigner(t, "vendor-root-2")
	f.roots[second.KeyID()] = second.Public()
	other := testSigner(t, "portal-2027")
	f.announce(t, "a.jws", f.root, NewAnnouncedKey(f.portal.KeyID(), f.portal.Public()))
	f.announce(t, "b.jws", second, NewAnnouncedKey(other.KeyID(), other.Public()))
	kr := f.load(t)

	announcedRevoked := kr.WithRevoked([]string{"portal-2026"})
	wantRefused(t, announcedRevoked, f.portal, `portal key "portal-2026" has been revoked`)
	wantTrusted(t, announcedRevoked, f.root)
	wantTrusted(t, announcedRevoked, other)

	// A revoked root takes the keys it announced with it.
	rootRevoked := kr.WithRevoked([]string{"vendor-root-1"})
	wantRefused(t, rootRevoked, f.root, `portal key "vendor-root-1" has been revoked`)
	wantRefused(t, rootRevoked, f.portal, `announced by root "vendor-root-1", which has been revoked`)
	wantTrusted(t, rootRevoked, second)
	wantTrusted(t, rootRevoked, other)
	if got := strings.Join(rootRevoked.KeyIDs(), ","); got != "portal-2027,vendor-root-2" {
		t.Errorf("KeyIDs after revoking a root = %s", got)
	}
	var revoked []string
	for _, k := range rootRevoked.Trust().Keys {
		if k.Revoked {
			revoked = append(revoked, k.KeyID)
		}
	}
	if got := strings.Join(revoked, ","); got != "portal-2026,vendor-root-1" {
		t.Errorf("Trust() shows revoked %s", got)
	}
	// Revocation never reaches back into the keyring it came from.
	wantTrusted(t, kr, f.portal)
}

func TestReleaseKeyringValidityAndConflicts(t *testing.T) {
	f := newTrustFixture(t)
	past, future := testNow.Add(-time.Hour), testNow.Add(time.Hour)
	expired := testSigner(t, "portal-expired")
	early := testSigner(t, "portal-early")
	windowed := testSigner(t, "portal-window")
	clash := testSigner(t, "portal-clash")
	with := func(s *Signer, nb, na *time.Time) AnnouncedKey {
		k := NewAnnouncedKey(s.KeyID(), s.Public())
		k.NotBefore, k.NotAfter = nb, na
		return k
	}
	f.announce(t, "a.jws", f.root,
		with(expired, nil, &past), with(early, &future, nil), with(windowed, &past, &future),
		NewAnnouncedKey(clash.KeyID(), clash.Public()),
		// A root's id with another key must not replace the root.
		NewAnnouncedKey(f.root.KeyID(), f.owner.Public()))
	// Two announcements that give one id two keys: neither is trusted.
	f.announce(t, "b.jws", f.root, NewAnnouncedKey(clash.KeyID(), f.owner.Public()))
	kr := f.load(t)

	wantRefused(t, kr, expired, "is not in")
	wantRefused(t, kr, early, "is not in")
	wantTrusted(t, kr, windowed)
	wantRefused(t, kr, clash, "is not in")
	wantTrusted(t, kr, f.root)
	wantIgnored(t, kr, "portal-expired", "expired")
	wantIgnored(t, kr, "portal-early", "not yet valid")
	wantIgnored(t, kr, "portal-clash", "another key")
	wantIgnored(t, kr, `"vendor-root-1" ignored`, "embedded root")
	for _, k := range kr.Trust().Keys {
		if k.KeyID == "portal-window" && !k.NotAfter.Equal(future) {
			t.Errorf("portal-window NotAfter = %v, want %v", k.NotAfter, future)
		}
	}
}

func TestReleaseKeyringWithoutFolder(t *testing.T) {
	f := newTrustFixture(t)
	kr, err := loadReleaseKeyring(filepath.Join(f.dir, "missing"), f.roots, testNow)
	if err != nil {
		t.Fatal(err)
	}
	wantTrusted(t, kr, f.root)
	wantIgnored(t, kr, "missing does not exist")
}

func TestParseAnnouncementContent(t *testing.T) {
	root := testSigner(t, "vendor-root-1")
	roots := testKeyring(t, root)
	good := NewAnnouncedKey("portal-2026", testSigner(t, "portal-2026").Public())
	tests := []struct {
		name    string
		payload any
		want    string
	}{
		{"no version", map[string]any{"iat": testNow, "keys": []AnnouncedKey{good}}, "no format version"},
		{"newer version", map[string]any{"v": 2, "iat": testNow, "keys": []AnnouncedKey{good}}, "upgrade pbx-agent"},
		{"no keys", map[string]any{"v": 1, "iat": testNow, "keys": []AnnouncedKey{}}, "announces no key"},
		{"unknown field", map[string]any{"v": 1, "iat": testNow, "keys": []AnnouncedKey{good}, "trust_all": true}, `unknown field "trust_all"`},
		{"bad kid", map[string]any{"v": 1, "keys": []AnnouncedKey{{KeyID: "../x", PublicKey: good.PublicKey}}}, "invalid key id"},
		{"short key", map[string]any{"v": 1, "keys": []AnnouncedKey{{KeyID: "p", PublicKey: "AAAA"}}}, "3 bytes, not 32"},
		{"window backwards", map[string]any{"v": 1, "keys": []AnnouncedKey{{KeyID: "p", PublicKey: good.PublicKey,
			NotBefore: &testNow, NotAfter: &testNow}}}, "not after not_before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAnnouncement(mustSign(t, root, TypeKeys, tt.payload), roots)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
	a, err := ParseAnnouncement(mustSign(t, root, TypeKeys, Announcement{Version: 1, IssuedAt: testNow, Keys: []AnnouncedKey{good}}), roots)
	if err != nil || a.SignerKeyID != "vendor-root-1" || len(a.Keys) != 1 {
		t.Errorf("valid announcement: %+v, %v", a, err)
	}
}

func TestRootsSpec(t *testing.T) {
	a, b := testSigner(t, "root-b"), testSigner(t, "root-a")
	keys := map[string]ed25519.PublicKey{a.KeyID(): a.Public(), b.KeyID(): b.Public()}
	spec, err := FormatRoots(keys)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(spec, "root-a:") || strings.Count(spec, ",") != 1 {
		t.Errorf("FormatRoots = %s: want sorted, comma-separated", spec)
	}
	back, err := ParseRoots(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || !back["root-a"].Equal(b.Public()) || !back["root-b"].Equal(a.Public()) {
		t.Errorf("ParseRoots(FormatRoots) = %v", back)
	}
	if r, err := ParseRoots(""); err != nil || len(r) != 0 {
		t.Errorf(`ParseRoots("") = %v, %v; want no roots`, r, err)
	}
	for spec, want := range map[string]string{
		"root-a":                      "want <kid>:<base64url Ed25519 key>",
		"root-a:AAAA":                 "3 bytes, not 32",
		"root-a:***":                  "not base64url",
		spec + "," + spec[:len(spec)]: "appears twice",
	} {
		if _, err := ParseRoots(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRoots(%q) error = %v, want %q", spec, err, want)
		}
	}
	if _, err := FormatRoots(map[string]ed25519.PublicKey{"bad id": a.Public()}); err == nil {
		t.Error("FormatRoots accepted an invalid key id")
	}
}

// The test binary is a development build: the folder's .pem files are the
// roots, and the keyring says so.
func TestDevelopmentBuildTrustsConfiguredKeys(t *testing.T) {
	if ReleaseBuild() {
		t.Skip("built with embedded roots")
	}
	s := testSigner(t, "portal-1")
	dir := t.TempDir()
	if err := WriteKeyringFile(dir, s.KeyID(), s.Public()); err != nil {
		t.Fatal(err)
	}
	kr, err := LoadPortalKeyring(dir, testNow)
	if err != nil {
		t.Fatal(err)
	}
	wantTrusted(t, kr, s)
	tr := kr.Trust()
	if tr.Roots != RootsConfigured || len(tr.Keys) != 1 || tr.Keys[0].Role != RoleConfigured {
		t.Errorf("Trust() = %+v, want one configured key", tr)
	}
	revoked := kr.WithRevoked([]string{"portal-1"})
	wantRefused(t, revoked, s, "has been revoked")
	// Nothing ships a development build's keys: the error says where they
	// come from and what a release build does instead.
	for name, dir := range map[string]string{"empty folder": t.TempDir(), "missing folder": filepath.Join(t.TempDir(), "absent")} {
		_, err := LoadPortalKeyring(dir, testNow)
		if err == nil {
			t.Errorf("%s: loaded", name)
			continue
		}
		for _, want := range []string{dir, "copy the portal's there", "pbx-portal-sim writes its own to DATA/keyring/", "make deb"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q lacks %q", name, err, want)
			}
		}
	}
}
