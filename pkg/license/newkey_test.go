package license

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// An expired key names the verb that issues a new one, with a PBX the
// verb can address: its name, or its id when the key names none.
func TestExpiredKeyNamesTheNewKeyVerb(t *testing.T) {
	portal := testSigner(t, "portal-1")
	kr := testKeyring(t, portal)
	for _, tt := range []struct {
		name, pbxName, want string
	}{
		{"named", "acme.example", "pbx-portal-sim pbx key acme.example)"},
		{"unnamed", "", "pbx-portal-sim pbx key pbx-42)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := testKey()
			k.PBX.Name = tt.pbxName
			k.ExpiresAt = testNow
			_, err := ParseKey(mustSign(t, portal, TypeKey, k), kr, KeyCheck{Now: testNow})
			if !errors.Is(err, ErrExpired) || !strings.HasSuffix(err.Error(), "; issue a new key on the portal ("+tt.want) {
				t.Errorf("ParseKey = %v; want expired, ending with the verb %q", err, tt.want)
			}
			// One second earlier it is still good.
			if _, err := ParseKey(mustSign(t, portal, TypeKey, k), kr, KeyCheck{Now: testNow.Add(-time.Second)}); err != nil {
				t.Errorf("a second before expiry: %v", err)
			}
		})
	}
}
