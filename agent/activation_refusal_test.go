package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestActivationRefusalsSayWhoRefused: a key the portal refuses as
// expired (its clock is past the key's 30 days, the appliance's is not)
// is an invalid key, exit 2 as documented, and said to be the portal's
// refusal; another PBX on an activated appliance is refused here, without
// asking the portal, and said to be this appliance's refusal. The local
// API's mapping to codes (and so exits) is in localapi's TestAPI.
func TestActivationRefusalsSayWhoRefused(t *testing.T) {
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 1})
	r.advancePortal(t, 40*24*time.Hour)
	a := r.newAgent(t)
	err := a.Activate(context.Background(), key)
	if !errors.Is(err, apitype.ErrInvalidKey) || !errors.Is(err, apitype.ErrRefused) ||
		!strings.HasPrefix(err.Error(), "refused by the portal") || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("key expired at the portal: %v, want the portal's invalid-key refusal", err)
	}

	r2 := newRig(t)
	first := r2.createPBX(t, "acme.example", license.Counts{license.UCPremium: 1})
	second := r2.createPBX(t, "other.example", license.Counts{license.UCPremium: 1})
	b := r2.newAgent(t)
	if err := b.Activate(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	err = b.Activate(context.Background(), second)
	if !errors.Is(err, apitype.ErrRefusedLocally) || errors.Is(err, apitype.ErrRefused) ||
		!strings.HasPrefix(err.Error(), "refused by this appliance: ") {
		t.Fatalf("a second PBX: %v, want this appliance's refusal", err)
	}
}
