package portalsim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// refusedActivation activates with key and expects a refusal with status
// and code whose message contains every one of want.
func refusedActivation(t *testing.T, a *testAgent, key string, status int, code string, want ...string) {
	t.Helper()
	r := a.post(protocol.PathActivate, a.sign(protocol.TypeActivate, a.activateReq(key, a.f.portal.Now())))
	e := r.refusal(t)
	if r.status != status || e.Code != code {
		t.Fatalf("activation: %d %+v; want %d %s", r.status, e, status, code)
	}
	for _, w := range want {
		if !strings.Contains(e.Message, w) {
			t.Errorf("refusal %q does not say %q", e.Message, w)
		}
	}
}

// parseIssued verifies an issued key as an appliance would, on the
// portal's clock.
func parseIssued(t *testing.T, f *fixture, raw string) *license.Key {
	t.Helper()
	k, err := license.ParseKey(raw, f.keyring(), license.KeyCheck{Now: f.portal.Now()})
	if err != nil {
		t.Fatalf("issued key: %v", err)
	}
	return k
}

// A late activation: the key from creation expired after 30 days, and the
// portal issues a new one for the same PBX, carrying its current licence.
func TestNewKeyAfterTheFirstExpired(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pbx, first := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	if _, err := f.admin.ChangeLicenses(ctx, "acme.example", LicenseChange{Profiles: license.Counts{license.UCBusiness: 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.AdvanceClock(ctx, 40*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	box := newTestAgent(f, license.ModelVM)
	refusedActivation(t, box, first, http.StatusBadRequest, protocol.CodeInvalidKey,
		"expired", "issue a new key on the portal (pbx-portal-sim pbx key acme.example)")

	res, err := f.admin.IssueKey(ctx, "acme.example", 0)
	if err != nil {
		t.Fatal(err)
	}
	now := f.portal.Now().Truncate(time.Second)
	k := parseIssued(t, f, res.Key)
	old, _ := license.DecodeKeyUnverified(first)
	if k.ID == old.ID || k.PBX != pbx.info() || k.Term != license.Monthly ||
		k.Counts.String() != "pbx-basic=3 uc-business=2 uc-premium=10" ||
		!k.IssuedAt.Equal(now) || !k.ExpiresAt.Equal(now.Add(DefaultKeyTTL)) {
		t.Errorf("new key = %+v; want a new id for %v with the current counts, valid 30 days from %v", k, pbx.info(), now)
	}
	if res.PBX.KeyID != k.ID || !res.PBX.KeyExpiresAt.Equal(k.ExpiresAt) || res.PBX.Device != nil {
		t.Errorf("answer's PBX = %+v; want key %s, still unbound", res.PBX, k.ID)
	}
	box.activate(res.Key)
	if got := f.show("acme.example"); got.Device == nil || got.Device.ID != box.kid() {
		t.Errorf("after activating the new key: device %+v", got.Device)
	}
}

func (p PBX) info() license.PBX { return license.PBX{ID: p.ID, Name: p.Name, Model: p.Model} }

// A new key replaces the previous one even before it expires: a key that
// leaked stops working the moment the partner issues another. The bound
// appliance is not disturbed, and the new key does not move the PBX.
func TestNewKeyReplacesThePrevious(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, first := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	bound := newTestAgent(f, license.ModelVM)
	bound.activate(first)

	res, err := f.admin.IssueKey(ctx, "acme.example", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if k := parseIssued(t, f, res.Key); !k.ExpiresAt.Equal(base.Add(time.Hour)) {
		t.Errorf("key_ttl 1h: expires %v; want %v", k.ExpiresAt, base.Add(time.Hour))
	}
	thief := newTestAgent(f, license.ModelVM)
	refusedActivation(t, thief, first, http.StatusBadRequest, protocol.CodeInvalidKey,
		"replaced by a newer one", "pbx-portal-sim pbx key acme.example")
	// The bound appliance's own old key is refused too; its binding holds.
	refusedActivation(t, bound, first, http.StatusBadRequest, protocol.CodeInvalidKey, "replaced by a newer one")
	if ans, _ := bound.heartbeat(1); ans.Status != protocol.StatusOK {
		t.Errorf("bound appliance's heartbeat after a new key: %+v", ans)
	}
	// The new key in other hands meets the binding: a re-bind comes first.
	refusedActivation(t, thief, res.Key, http.StatusConflict, protocol.CodeBoundElsewhere, "pbx-portal-sim pbx rebind acme.example")
	if ans := bound.activate(res.Key); ans.PBXID != bound.pbxID {
		t.Errorf("bound appliance activating its new key: %+v", ans)
	}

	// The replacement survives a restart: the previous key stays refused.
	second, err := f.admin.IssueKey(ctx, "acme.example", 0)
	if err != nil {
		t.Fatal(err)
	}
	f.restart()
	refusedActivation(t, bound, res.Key, http.StatusBadRequest, protocol.CodeInvalidKey, "replaced by a newer one")
	if got := f.show("acme.example"); got.KeyID != parseIssued(t, f, second.Key).ID {
		t.Errorf("after a restart the current key is %s", got.KeyID)
	}
}

// After an RMA the old key went with the old appliance, whose owner keeps
// it (and the device key). Between the re-bind and the new appliance's
// activation, the PBX is unbound: the old key must not bind it anywhere.
func TestRebindRetiresTheOldKey(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, first := f.createPBX("acme.example", license.ModelHW, license.Yearly, acmeCounts)
	oldBox := newTestAgent(f, license.ModelHW)
	oldBox.activate(first)

	res, err := f.admin.Rebind(ctx, "acme.example")
	if err != nil {
		t.Fatal(err)
	}
	k := parseIssued(t, f, res.Key)
	if k.PBX.Name != "acme.example" || res.PBX.KeyID != k.ID || res.UnboundDevice != oldBox.kid() {
		t.Errorf("rebind = %+v with key %+v; want the old box released and a new key", res, k)
	}
	// The old appliance itself, and any other box, with the old key.
	refusedActivation(t, oldBox, first, http.StatusBadRequest, protocol.CodeInvalidKey, "replaced by a newer one")
	otherBox := newTestAgent(f, license.ModelHW)
	refusedActivation(t, otherBox, first, http.StatusBadRequest, protocol.CodeInvalidKey, "replaced by a newer one")
	if got := f.show("acme.example"); got.Device != nil || len(got.FormerDevices) != 1 {
		t.Fatalf("after the old key was tried: device %+v, former %v; want unbound, one former", got.Device, got.FormerDevices)
	}
	newBox := newTestAgent(f, license.ModelHW)
	newBox.activate(res.Key)

	// A re-bind of an unbound PBX releases nothing, but still issues a key.
	f2 := newFixture(t)
	_, unboundKey := f2.createPBX("b.example", license.ModelVM, license.Monthly, nil)
	res2, err := f2.admin.Rebind(ctx, "b.example")
	if err != nil {
		t.Fatal(err)
	}
	if res2.UnboundDevice != "" || res2.Key == "" || res2.Key == unboundKey {
		t.Errorf("rebind of an unbound PBX = %+v; want no device and a new key", res2)
	}
}

func TestNoNewKeyForADeletedOrUnknownPBX(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pbx, _ := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)

	var ae *AdminError
	for _, tt := range []struct {
		name   string
		call   func() error
		status int
		want   string
	}{
		{"zero ttl is the default; a negative one is refused", func() error {
			_, err := f.admin.IssueKey(ctx, "acme.example", -time.Hour)
			return err
		}, 400, "key_ttl -1h0m0s: must be positive"},
		{"a misspelt field", func() error {
			return f.admin.do(ctx, http.MethodPost, pbxPath("acme.example", "/key"), map[string]string{"ttl": "1h"}, nil)
		}, 400, `unknown field "ttl"`},
		{"unknown PBX", func() error {
			_, err := f.admin.IssueKey(ctx, "nobody.example", 0)
			return err
		}, 404, "nobody.example"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.As(err, &ae) || ae.Status != tt.status || !strings.Contains(ae.Message, tt.want) {
				t.Errorf("got %v; want %d saying %q", err, tt.status, tt.want)
			}
		})
	}
	if got := f.show("acme.example"); got.KeyID != pbx.KeyID {
		t.Errorf("a refused request changed the key: %s, was %s", got.KeyID, pbx.KeyID)
	}

	if _, err := f.admin.Delete(ctx, "acme.example"); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"acme.example", pbx.ID} {
		_, err := f.admin.IssueKey(ctx, ref, 0)
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "was deleted on 2026-11-27T12:00:00Z") ||
			!strings.Contains(ae.Message, "create a new PBX") {
			t.Errorf("key for deleted PBX %s: %v; want 409 saying when it was deleted and to create a new PBX", ref, err)
		}
		if _, err := f.admin.Rebind(ctx, ref); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
			t.Errorf("rebind of deleted PBX %s: %v; want 409", ref, err)
		}
	}
	if got := f.show(pbx.ID); got.KeyID != pbx.KeyID {
		t.Errorf("a deleted PBX's key changed: %s, was %s", got.KeyID, pbx.KeyID)
	}
}
