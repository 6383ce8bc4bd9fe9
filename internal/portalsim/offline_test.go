package portalsim

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// offlineRequest is an air-gapped appliance's activation request, armoured.
func (a *testAgent) offlineRequest(key, nonce string) string {
	a.f.t.Helper()
	s, err := offline.SignRequest(a.signer, offline.Request{Time: a.f.portal.Now(), Nonce: nonce, Key: key,
		DeviceKey: a.pub, Fingerprint: "fp-" + a.kid(), Model: a.model, AgentVersion: "test"})
	if err != nil {
		a.f.t.Fatal(err)
	}
	return offline.Armour(offline.KindRequest, nil, s)
}

// offlineReport is a usage report from the appliance's chain end.
func (a *testAgent) offlineReport(nonce string, revision int64) string {
	a.f.t.Helper()
	s, err := offline.SignReport(a.signer, offline.Report{Time: a.f.portal.Now(), Nonce: nonce, PBXID: a.pbxID,
		Revision: revision, Digest: digestOrEmpty(a.held[revision]), Link: a.link.Digest, Seq: a.link.Seq, State: "active",
		Usage: license.Counts{license.UCPremium: 2}, Peak: license.Counts{license.UCPremium: 5}, AgentVersion: "test"})
	if err != nil {
		a.f.t.Fatal(err)
	}
	return s
}

// install checks a licence file as the agent does and moves the chain on.
func (a *testAgent) install(out *OfflineLicence, outstanding string) *offline.Licence {
	a.f.t.Helper()
	compact, err := offline.Unarmour(out.File, offline.KindLicence)
	if err != nil {
		a.f.t.Fatal(err)
	}
	l, err := offline.ParseLicence(compact, a.f.keyring())
	if err != nil {
		a.f.t.Fatal(err)
	}
	h := offline.Holder{Device: a.kid(), Fingerprint: "fp-" + a.kid(), PBXID: a.pbxID, Chain: a.link, Outstanding: []string{outstanding}}
	if err := l.Check(h); err != nil {
		a.f.t.Fatalf("the file does not install: %v", err)
	}
	a.pbxID, a.link = l.PBXID, l.Next()
	if a.held == nil {
		a.held = map[int64]string{}
	}
	a.held[l.Doc.Revision] = l.License
	return l
}

func adminRefusal(t *testing.T, err error, want string) {
	t.Helper()
	var ae *AdminError
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, want) {
		t.Fatalf("got %v, want a refusal saying %q", err, want)
	}
}

func TestOfflineActivationAndRenewal(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pbx, key := f.createPBX("air.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 10})
	a := newTestAgent(f, license.ModelVM)

	req := a.offlineRequest(key, "n-act")
	out, err := f.admin.OfflineActivate(ctx, "air.example", req)
	if err != nil {
		t.Fatal(err)
	}
	l := a.install(out, "n-act")
	if got, want := l.Horizon, f.portal.Now().Add(license.DefaultOfflineGrace); !got.Equal(want) {
		t.Errorf("horizon %v, want the offline grace from now, %v", got, want)
	}
	if v := f.show(pbx.ID); v.Device == nil || v.Device.ID != a.kid() {
		t.Fatalf("PBX not bound to the appliance: %+v", v.Device)
	}
	again, err := f.admin.OfflineActivate(ctx, "air.example", req)
	if err != nil || !again.Replayed || again.File != out.File {
		t.Fatalf("a replayed request: replayed %v, same file %v, %v", again.Replayed, again.File == out.File, err)
	}

	f.clock.Add(20 * 24 * 3600e9)
	report := a.offlineReport("n-rep-1", 1)
	renewed, err := f.admin.OfflineRenew(ctx, pbx.ID, report)
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := f.admin.OfflineRenew(ctx, pbx.ID, report)
	if err != nil || !replayed.Replayed || replayed.File != renewed.File {
		t.Fatalf("a replayed report must get the same file: replayed %v, same %v, %v", replayed.Replayed, replayed.File == renewed.File, err)
	}
	a.install(renewed, "n-rep-1")
	if v := f.show(pbx.ID); v.LastPeak[license.UCPremium] != 5 || v.LastOfflineReport == nil || v.ChainForks != 0 {
		t.Fatalf("the report's usage not recorded or the chain forked: %+v", v)
	}

	// Online again: the heartbeat links to the last file, the head.
	ans, _ := a.heartbeat(1)
	if ans.Status != protocol.StatusOK || ans.Chain != "" {
		t.Fatalf("a heartbeat after offline renewal: %q %q", ans.Status, ans.Chain)
	}
	// And offline once more, from the online answer.
	if _, err := f.admin.OfflineRenew(ctx, pbx.ID, a.offlineReport("n-rep-2", 1)); err != nil {
		t.Fatalf("an offline report after a heartbeat: %v", err)
	}
}

func TestOfflineRenewalRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pbx, key := f.createPBX("air.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 10})
	a := newTestAgent(f, license.ModelVM)
	first, err := f.admin.OfflineActivate(ctx, pbx.Name, a.offlineRequest(key, "n-act"))
	if err != nil {
		t.Fatal(err)
	}
	a.install(first, "n-act")
	start := a.link

	t.Run("a missing link", func(t *testing.T) {
		lost := *a
		lost.link = lost.link.Next("a file the portal never made")
		_, err := f.admin.OfflineRenew(ctx, pbx.Name, lost.offlineReport("n-lost", 1))
		adminRefusal(t, err, "the report links to "+lost.link.Digest+" (sequence 2), which the portal never issued")
	})
	t.Run("another appliance", func(t *testing.T) {
		b := newTestAgent(f, license.ModelVM)
		b.pbxID, b.link = a.pbxID, a.link
		_, err := f.admin.OfflineRenew(ctx, pbx.Name, b.offlineReport("n-b", 1))
		adminRefusal(t, err, "appliance "+b.kid()+" holds no PBX")
	})
	t.Run("a request for another PBX", func(t *testing.T) {
		_, otherKey := f.createPBX("other.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 1})
		_, err := f.admin.OfflineActivate(ctx, pbx.Name, a.offlineRequest(otherKey, "n-x"))
		adminRefusal(t, err, `carries the key of PBX "other.example"`)
	})
	t.Run("a report where a request belongs", func(t *testing.T) {
		_, err := f.admin.OfflineActivate(ctx, pbx.Name, a.offlineReport("n-y", 1))
		adminRefusal(t, err, "this is an offline usage report")
	})

	// A state restored from before the last two renewals reports from an
	// older file the portal issued: recorded as a fork, as online. (From
	// the one before the head, a file lost on the way, it is not.)
	for _, n := range []string{"n-1", "n-2"} {
		renewed, err := f.admin.OfflineRenew(ctx, pbx.Name, a.offlineReport(n, 1))
		if err != nil {
			t.Fatal(err)
		}
		a.install(renewed, n)
	}
	restored := *a
	restored.link = start
	out, err := f.admin.OfflineRenew(ctx, pbx.Name, restored.offlineReport("n-restored", 1))
	if err != nil || !out.Reanchored {
		t.Fatalf("a report from a restored state: reanchored %v, %v", out != nil && out.Reanchored, err)
	}
	if v := f.show(pbx.Name); v.ChainForks != 1 || v.LastFork == nil {
		t.Fatalf("the fork is not recorded: %+v", v)
	}
	// The copy left behind advancing too is a clone.
	_, err = f.admin.OfflineRenew(ctx, pbx.Name, a.offlineReport("n-3", 1))
	adminRefusal(t, err, "two copies of the appliance")

	// Re-bound to a replacement appliance: the old one's reports are refused.
	if _, err := f.admin.Rebind(ctx, pbx.Name); err != nil {
		t.Fatal(err)
	}
	_, err = f.admin.OfflineRenew(ctx, pbx.Name, a.offlineReport("n-4", 1))
	adminRefusal(t, err, "was re-bound away from appliance "+a.kid())
}

// shortRequest is the short form of the appliance's activation request,
// as its QR code carries it, naming the key keyID and proving it with key.
func (a *testAgent) shortRequest(key, keyID, nonce string) string {
	a.f.t.Helper()
	s, err := offline.SignShortRequest(a.signer, offline.Request{Time: a.f.portal.Now(), Nonce: nonce, Key: key,
		DeviceKey: a.pub, Fingerprint: "fp-" + a.kid(), Model: a.model, AgentVersion: "test"}, keyID)
	if err != nil {
		a.f.t.Fatal(err)
	}
	return s
}

func keyID(t *testing.T, f *fixture, key string) string {
	t.Helper()
	k, err := license.ParseKey(key, f.keyring(), license.KeyCheck{Now: f.portal.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// TestOfflineShortRequest: the short form a QR code carries activates as
// the request file does, and the file with the same nonce is the same
// request: either gets the same licence file.
func TestOfflineShortRequest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pbx, key := f.createPBX("air.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 10})
	a := newTestAgent(f, license.ModelVM)

	out, err := f.admin.OfflineActivate(ctx, "air.example", a.shortRequest(key, keyID(t, f, key), "n-act"))
	if err != nil {
		t.Fatal(err)
	}
	a.install(out, "n-act")
	if v := f.show(pbx.ID); v.Device == nil || v.Device.ID != a.kid() {
		t.Fatalf("PBX not bound to the appliance: %+v", v.Device)
	}
	full, err := f.admin.OfflineActivate(ctx, "air.example", a.offlineRequest(key, "n-act"))
	if err != nil || !full.Replayed || full.File != out.File {
		t.Fatalf("the request file of the same request: replayed %v, same file %v, %v", full.Replayed, full.File == out.File, err)
	}
}

// TestOfflineShortRequestRefusals: the refusals of a short request name
// the key and say why it activates nothing.
func TestOfflineShortRequestRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, key := f.createPBX("air.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 10})
	_, otherKey := f.createPBX("other.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 1})
	_, oldKey := f.createPBX("rekeyed.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 1})
	if _, err := f.admin.IssueKey(ctx, "rekeyed.example", 0); err != nil {
		t.Fatal(err)
	}
	a, thief := newTestAgent(f, license.ModelVM), newTestAgent(f, license.ModelVM)
	id := keyID(t, f, key)
	for _, tc := range []struct {
		name, pbx, request, want string
	}{
		// Whoever photographed the code knows the key's id, not the key:
		// their own appliance's request cannot prove it.
		{"photographed by another appliance", "air.example", thief.shortRequest("a guess at the key", id, "n-1"),
			"its proof of that key does not match the key the portal issued"},
		{"never issued", "air.example", a.shortRequest(key, "key-ffffffffffffffff", "n-2"),
			"names key key-ffffffffffffffff, which this portal never issued"},
		{"another PBX's key", "air.example", a.shortRequest(otherKey, keyID(t, f, otherKey), "n-3"),
			`of PBX "other.example"`},
		{"a replaced key", "rekeyed.example", a.shortRequest(oldKey, keyID(t, f, oldKey), "n-4"),
			"has been replaced by a newer one"},
		{"another model", "air.example", newTestAgent(f, license.ModelHW).shortRequest(key, id, "n-5"),
			"it is for a WPBX-VM, but this appliance is a WPBX-HW"},
		{"not base32", "air.example", offline.ShortPrefix + "NOT-BASE32!", "not base32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.admin.OfflineActivate(ctx, tc.pbx, tc.request)
			adminRefusal(t, err, tc.want)
		})
	}
	t.Run("expired", func(t *testing.T) {
		f.clock.Add(DefaultKeyTTL)
		_, err := f.admin.OfflineActivate(ctx, "air.example", a.shortRequest(key, id, "n-6"))
		adminRefusal(t, err, "expired at")
	})
	if v := f.show("air.example"); v.Device != nil {
		t.Fatalf("a refused request bound the PBX to %s", v.Device.ID)
	}
}

// shortReport is the short form of the appliance's usage report, as its
// QR code carries it.
func (a *testAgent) shortReport(nonce string, revision int64) string {
	a.f.t.Helper()
	s, err := offline.SignShortReport(a.signer, offline.Report{Time: a.f.portal.Now(), Nonce: nonce, PBXID: a.pbxID,
		Revision: revision, Digest: digestOrEmpty(a.held[revision]), Link: a.link.Digest, Seq: a.link.Seq, State: "active",
		Usage: license.Counts{license.UCPremium: 2}, Peak: license.Counts{license.UCPremium: 5}, AgentVersion: "test"})
	if err != nil {
		a.f.t.Fatal(err)
	}
	return s
}

// TestOfflineShortReport: the short form of a usage report renews as the
// file does; the same report again gets the same file; one signed by
// another appliance, or by the appliance the PBX was re-bound away from,
// is refused saying so.
func TestOfflineShortReport(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pbx, key := f.createPBX("air.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 10})
	a := newTestAgent(f, license.ModelVM)
	out, err := f.admin.OfflineActivate(ctx, "air.example", a.offlineRequest(key, "n-act"))
	if err != nil {
		t.Fatal(err)
	}
	a.install(out, "n-act")

	report := a.shortReport("n-rep", 1)
	renewed, err := f.admin.OfflineRenew(ctx, "air.example", report)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := f.admin.OfflineRenew(ctx, "air.example", report); err != nil || !again.Replayed || again.File != renewed.File {
		t.Fatalf("the same short report again: %v", err)
	}
	a.install(renewed, "n-rep")
	if v := f.show(pbx.ID); v.LastPeak[license.UCPremium] != 5 || v.ChainForks != 0 {
		t.Fatalf("the report's usage not recorded or the chain forked: %+v", v)
	}

	other := newTestAgent(f, license.ModelVM)
	other.pbxID, other.link, other.held = a.pbxID, a.link, a.held
	_, err = f.admin.OfflineRenew(ctx, "air.example", other.shortReport("n-other", 1))
	adminRefusal(t, err, "it is not signed by device key \""+a.kid()+"\"")

	if _, err := f.admin.Rebind(ctx, "air.example"); err != nil {
		t.Fatal(err)
	}
	_, err = f.admin.OfflineRenew(ctx, "air.example", a.shortReport("n-after-rebind", 1))
	adminRefusal(t, err, "was re-bound away from appliance "+a.kid())
	_, err = f.admin.OfflineRenew(ctx, "air.example", offline.ReportPrefix+"NOT-BASE32!")
	adminRefusal(t, err, "not base32")
}
