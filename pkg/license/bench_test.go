package license

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

// BenchmarkVerify compares verifying a PBX key and a licence document, with
// all their checks, against the bare ed25519.Verify of the same signed bytes:
// the ratio is what the envelope, the parsing and the checks cost on top of
// the signature itself.
func BenchmarkVerify(b *testing.B) {
	portal := testSigner(b, "portal-1")
	kr := testKeyring(b, portal)
	key := mustSign(b, portal, TypeKey, testKey())
	doc := mustSign(b, portal, TypeLicense, testDocument())

	raw := func(compact string) (msg, sig []byte) {
		i := strings.LastIndexByte(compact, '.')
		sig, err := base64.RawURLEncoding.DecodeString(compact[i+1:])
		if err != nil {
			b.Fatal(err)
		}
		return []byte(compact[:i]), sig
	}
	keyMsg, keySig := raw(key)
	pub := portal.Public()

	b.Run("baseline=ed25519.Verify", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, keyMsg, keySig) {
				b.Fatal("signature does not hold")
			}
		}
	})
	b.Run("ParseKey", func(b *testing.B) {
		for b.Loop() {
			if _, err := ParseKey(key, kr, KeyCheck{Now: testNow, Model: ModelVM}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParseDocument", func(b *testing.B) {
		for b.Loop() {
			if _, err := ParseDocument(doc, kr, DocumentCheck{PBXID: "pbx-42"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
