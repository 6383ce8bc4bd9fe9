package license

import "testing"

// FuzzParseAnnouncement: whatever a keyring folder's *.jws file holds, the
// parser refuses it with a classified error or returns an announcement
// that validates and was signed by the root.
func FuzzParseAnnouncement(f *testing.F) {
	root := testSigner(f, "vendor-root-1")
	roots := testKeyring(f, root)
	portal := testSigner(f, "portal-2026")
	seed, err := SignAnnouncement(root, []AnnouncedKey{NewAnnouncedKey(portal.KeyID(), portal.Public())}, testNow)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(mustSign(f, portal, TypeKeys, Announcement{Version: 1, Keys: []AnnouncedKey{NewAnnouncedKey("x", portal.Public())}}))
	f.Fuzz(func(t *testing.T, input string) {
		a, err := ParseAnnouncement(input, roots)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if a.SignerKeyID != "vendor-root-1" {
			t.Fatalf("accepted an announcement signed by %q", a.SignerKeyID)
		}
		if err := a.validate(); err != nil {
			t.Fatalf("accepted an announcement that does not validate: %v", err)
		}
	})
}
