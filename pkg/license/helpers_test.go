package license

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"
)

// testNow is the licence clock of the tests.
var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// testSigner returns a deterministic signer, so signed fixtures and fuzz
// seeds are byte-for-byte repeatable.
func testSigner(t testing.TB, kid string) *Signer {
	t.Helper()
	seed := sha256.Sum256([]byte("pbx-agent test key " + kid))
	s, err := NewSigner(kid, ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testKeyring(t testing.TB, signers ...*Signer) *Keyring {
	t.Helper()
	keys := make(map[string]ed25519.PublicKey)
	for _, s := range signers {
		keys[s.KeyID()] = s.Public()
	}
	kr, err := NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func testKey() Key {
	return Key{
		Version:   KeyVersion,
		ID:        "k-0001",
		PBX:       PBX{ID: "pbx-42", Name: "acme.example", Model: ModelVM},
		Term:      Monthly,
		Counts:    Counts{UCPremium: 10, PBXBasic: 3},
		Portal:    "https://portal.example",
		IssuedAt:  testNow.Add(-24 * time.Hour),
		ExpiresAt: testNow.Add(30 * 24 * time.Hour),
	}
}

func testDocument() Document {
	return Document{
		Version:  DocumentVersion,
		PBX:      PBX{ID: "pbx-42", Name: "acme.example", Model: ModelVM},
		Revision: 7,
		IssuedAt: testNow,
		Term:     Monthly,
		TermEnd:  time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC),
		Counts:   Counts{UCPremium: 10, PBXBasic: 3},
	}
}

func mustSign(t testing.TB, s *Signer, typ string, claims any) string {
	t.Helper()
	out, err := s.Sign(typ, claims)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
