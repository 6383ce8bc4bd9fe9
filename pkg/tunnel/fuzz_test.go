package tunnel

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// FuzzCheckAnswer feeds the one thing the agent parses from the tunnel's
// handshake: the portal's signed answer in the 101 response. Whatever the
// header, Dial gets a refusal, or an ok answer to its own request about its
// own PBX. Past the handshake the agent parses nothing but yamux frames:
// no stream carries a destination.
func FuzzCheckAnswer(f *testing.F) {
	seed := sha256.Sum256([]byte("tunnel fuzz portal key"))
	portal, err := license.NewSigner("portal-fuzz", ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		f.Fatal(err)
	}
	kr, err := license.NewKeyring(map[string]ed25519.PublicKey{portal.KeyID(): portal.Public()})
	if err != nil {
		f.Fatal(err)
	}
	const nonce = "n1"
	for _, a := range []protocol.Answer{
		{Status: protocol.StatusOK, Time: portalNow, Nonce: nonce, PBXID: testPBX},
		{Status: protocol.StatusStale, Time: portalNow, Nonce: nonce, PBXID: testPBX},
		{Status: protocol.StatusGone, Reason: protocol.GoneRebound, Time: portalNow, Nonce: nonce, PBXID: testPBX},
		{Status: protocol.StatusOK, Time: portalNow, Nonce: "n0", PBXID: testPBX},
	} {
		signed, err := portal.Sign(protocol.TypeAnswer, a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(signed)
	}
	f.Fuzz(func(t *testing.T, compact string) {
		a, err := CheckAnswer(compact, kr, nonce, testPBX)
		if err != nil {
			var stale *StaleError
			if errors.As(err, &stale) && stale.PortalTime.IsZero() {
				t.Fatal("a stale refusal without the portal's time")
			}
			return
		}
		if a.Status != protocol.StatusOK || a.Nonce != nonce || a.PBXID != testPBX {
			t.Fatalf("accepted a %s answer to request %q about PBX %q", a.Status, a.Nonce, a.PBXID)
		}
	})
}
