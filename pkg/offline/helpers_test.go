package offline

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// signer returns a deterministic Ed25519 signer, so signed fixtures and
// fuzz seeds repeat byte for byte. With kid empty it is a device key.
func signer(t testing.TB, seed, kid string) *license.Signer {
	t.Helper()
	sum := sha256.Sum256([]byte("pbx-agent offline test " + seed))
	priv := ed25519.NewKeyFromSeed(sum[:])
	if kid == "" {
		kid = protocol.DeviceKeyID(priv.Public().(ed25519.PublicKey))
	}
	s, err := license.NewSigner(kid, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func keyring(t testing.TB, signers ...*license.Signer) *license.Keyring {
	t.Helper()
	keys := map[string]ed25519.PublicKey{}
	for _, s := range signers {
		keys[s.KeyID()] = s.Public()
	}
	kr, err := license.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// fixture is a portal, an appliance and the documents between them.
type fixture struct {
	portal, device, other *license.Signer
	kr                    *license.Keyring
	licence               string // a signed licence document, revision 7
}

func newFixture(t testing.TB) *fixture {
	portal := signer(t, "portal", "portal-1")
	doc := license.Document{
		Version: license.DocumentVersion, PBX: license.PBX{ID: "pbx-42", Name: "acme", Model: license.ModelVM},
		Revision: 7, IssuedAt: testNow, Term: license.Monthly,
		TermEnd: time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC), Counts: license.Counts{license.UCPremium: 10},
	}
	lic, err := portal.Sign(license.TypeLicense, doc)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{portal: portal, device: signer(t, "device", ""), other: signer(t, "other", ""),
		kr: keyring(t, portal), licence: lic}
}

func (f *fixture) request() Request {
	return Request{Time: testNow, Nonce: "nonce-activate", Key: "eyJkey", DeviceKey: f.device.Public(),
		Fingerprint: "fp-this-machine-0123456789", Model: license.ModelVM, AgentVersion: "1.0.0"}
}

// file is a licence file answering nonce at chain position at.
func (f *fixture) file(nonce string, at protocol.Link) Licence {
	return Licence{PBXID: "pbx-42", Device: f.device.KeyID(), Fingerprint: "fp-this-machine-0123456789",
		Time: testNow, Horizon: testNow.AddDate(0, 0, 30), Nonce: nonce, License: f.licence,
		Link: at.Digest, Seq: at.Seq}
}

func (f *fixture) report(at protocol.Link) Report {
	return Report{Time: testNow, Nonce: "nonce-report", PBXID: "pbx-42", Revision: 7, Digest: protocol.Digest(f.licence),
		Link: at.Digest, Seq: at.Seq, State: "active", Usage: license.Counts{license.UCPremium: 4},
		Peak: license.Counts{license.UCPremium: 6}, AgentVersion: "1.0.0"}
}

// must fails the test on err: must(t)(Sign(...)).
func must(t testing.TB) func(string, error) string {
	return func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}
