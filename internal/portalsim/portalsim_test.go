package portalsim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

var acmeCounts = license.Counts{license.UCPremium: 10, license.PBXBasic: 3}

func TestActivationBindsAndIssuesAVerifiableLicence(t *testing.T) {
	f := newFixture(t)
	pbx, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)

	ans := a.activate(key)
	if ans.PBXID != pbx.ID || ans.Interval != 60 || !ans.Time.Equal(base) {
		t.Errorf("answer = %+v; want pbx %s, interval 60, time %v", ans, pbx.ID, base)
	}
	d := a.licence(ans)
	wantEnd := time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC)
	if d.Revision != 1 || d.Term != license.Monthly || !d.TermEnd.Equal(wantEnd) ||
		d.Counts.String() != acmeCounts.String() || d.PBX.Name != "acme.example" || d.Version != license.DocumentVersion {
		t.Errorf("licence = %+v; want revision 1, monthly to %v, %v", d, wantEnd, acmeCounts)
	}
	got := f.show("acme.example")
	if got.Device == nil || got.Device.ID != a.kid() || !got.Device.BoundAt.Equal(base) ||
		got.Device.Fingerprint != "fp-"+a.kid() || got.Device.Model != license.ModelVM {
		t.Errorf("bound device = %+v; want %s bound at %v", got.Device, a.kid(), base)
	}

	// The same appliance again (a lost answer, a restart) is idempotent.
	f.clock.Add(time.Minute)
	again := a.activate(key)
	if again.PBXID != pbx.ID || a.licence(again).Revision != 1 {
		t.Errorf("second activation = %+v", again)
	}
	if got := f.show(pbx.ID); got.Device == nil || !got.Device.BoundAt.Equal(base) || len(got.FormerDevices) != 0 {
		t.Errorf("after activating again: device %+v, former %v; want the binding unchanged", got.Device, got.FormerDevices)
	}
}

func TestConfigShapesTheAnswers(t *testing.T) {
	f := newFixtureWith(t, func(c *Config) {
		c.Interval = 5 * time.Second
		c.HeartbeatTolerance = 2 * time.Second
	})
	_, key := f.createPBX("acme.example", license.ModelVM, license.Lifetime, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	ans := a.activate(key)
	d := a.licence(ans)
	if ans.Interval != 5 || d.HeartbeatTolerancePeriod() != 2*time.Second || !d.TermEnd.IsZero() {
		t.Errorf("interval %d s, licence %+v; want 5 s, a 2 s tolerance and no term end", ans.Interval, d)
	}
	for _, bad := range []Config{{Interval: 1500 * time.Millisecond}, {HeartbeatTolerance: -time.Second}, {}} {
		if bad.Interval != 0 || bad.HeartbeatTolerance != 0 {
			bad.DataDir = t.TempDir()
		}
		if p, err := New(bad); err == nil {
			p.Close()
			t.Errorf("New(%+v) succeeded; want an error", bad)
		}
	}
}

func TestActivationRefusals(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	_, hwKey := f.createPBX("hw.example", license.ModelHW, license.Yearly, acmeCounts)
	_, doomedKey := f.createPBX("doomed.example", license.ModelVM, license.Monthly, acmeCounts)
	if _, err := f.admin.Delete(context.Background(), "doomed.example"); err != nil {
		t.Fatal(err)
	}
	newTestAgent(f, license.ModelVM).activate(key)

	// A key signed by another portal.
	other, err := license.GenerateSigner("other-portal")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Sign(license.TypeKey, license.Key{Version: 1, ID: "key-1", PBX: license.PBX{ID: "pbx-x", Name: "x", Model: license.ModelVM},
		Term: license.Monthly, IssuedAt: base, ExpiresAt: base.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		body       func(a *testAgent) string
		status     int
		code       string
		msgContent string
	}{
		{"second device with the same key", func(a *testAgent) string {
			return a.sign(protocol.TypeActivate, a.activateReq(key, base))
		}, 409, protocol.CodeBoundElsewhere, `PBX "acme.example" is bound to another appliance since 2026-11-27T12:00:00Z; a hardware replacement needs the portal to re-bind it (pbx-portal-sim pbx rebind acme.example)`},
		{"key for another model", func(a *testAgent) string {
			return a.sign(protocol.TypeActivate, a.activateReq(hwKey, base))
		}, 400, protocol.CodeInvalidKey, "wrong model"},
		{"key from another portal", func(a *testAgent) string {
			return a.sign(protocol.TypeActivate, a.activateReq(foreign, base))
		}, 400, protocol.CodeInvalidKey, "untrusted portal key"},
		{"key of a deleted PBX", func(a *testAgent) string {
			return a.sign(protocol.TypeActivate, a.activateReq(doomedKey, base))
		}, 400, protocol.CodeInvalidKey, "was deleted"},
		{"signed by another key than the one carried", func(a *testAgent) string {
			req := a.activateReq(key, base)
			req.DeviceKey = newTestAgent(f, license.ModelVM).pub
			return a.sign(protocol.TypeActivate, req)
		}, 401, protocol.CodeBadSignature, "but the device key it carries is"},
		{"carries a device key it does not hold", func(a *testAgent) string {
			victim := newTestAgent(f, license.ModelVM)
			req := a.activateReq(key, base)
			req.DeviceKey = victim.pub
			forger, err := license.NewSigner(victim.kid(), a.priv)
			if err != nil {
				t.Fatal(err)
			}
			s, err := forger.Sign(protocol.TypeActivate, req)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, 401, protocol.CodeBadSignature, "does not verify"},
		{"altered after signing", func(a *testAgent) string {
			return flipSignature(a.sign(protocol.TypeActivate, a.activateReq(key, base)))
		}, 401, protocol.CodeBadSignature, "does not verify"},
		{"a heartbeat sent to activate", func(a *testAgent) string {
			return a.sign(protocol.TypeHeartbeat, a.activateReq(key, base))
		}, 400, protocol.CodeBadRequest, "wrong endpoint"},
		{"no nonce", func(a *testAgent) string {
			req := a.activateReq(key, base)
			req.Nonce = ""
			return a.sign(protocol.TypeActivate, req)
		}, 400, protocol.CodeBadRequest, "nonce"},
		{"not a JWS", func(*testAgent) string { return "hello" }, 400, protocol.CodeBadRequest, "compact JWS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAgent(f, license.ModelVM)
			r := a.post(protocol.PathActivate, tt.body(a))
			e := r.refusal(t)
			if r.status != tt.status || e.Code != tt.code || !strings.Contains(e.Message, tt.msgContent) {
				t.Errorf("got %d %+v; want %d %s containing %q", r.status, e, tt.status, tt.code, tt.msgContent)
			}
		})
	}

	t.Run("expired key", func(t *testing.T) {
		_, k := f.createPBX("late.example", license.ModelVM, license.Monthly, acmeCounts)
		if _, err := f.admin.AdvanceClock(context.Background(), 31*24*time.Hour); err != nil {
			t.Fatal(err)
		}
		a := newTestAgent(f, license.ModelVM)
		r := a.post(protocol.PathActivate, a.sign(protocol.TypeActivate, a.activateReq(k, f.portal.Now())))
		if e := r.refusal(t); r.status != 400 || e.Code != protocol.CodeInvalidKey || !strings.Contains(e.Message, "expired") {
			t.Errorf("got %d %+v; want 400 invalid_key, expired", r.status, e)
		}
	})

	t.Run("wrong media type", func(t *testing.T) {
		resp, err := http.Post(f.srv.URL+protocol.PathActivate, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("got %d; want 415", resp.StatusCode)
		}
	})
}

func TestRebindMovesThePBXAndTellsTheOldAppliance(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelHW, license.Yearly, acmeCounts)
	oldBox, newBox := newTestAgent(f, license.ModelHW), newTestAgent(f, license.ModelHW)
	oldBox.activate(key)

	res, err := f.admin.Rebind(context.Background(), "acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if res.UnboundDevice != oldBox.kid() || res.PBX.Device != nil {
		t.Errorf("rebind = %+v; want %s released", res, oldBox.kid())
	}
	f.clock.Add(time.Minute)
	newBox.activate(res.Key)

	ans, _ := oldBox.heartbeat(1)
	if ans.Status != protocol.StatusGone || ans.Reason != protocol.GoneRebound || ans.PBXID != oldBox.pbxID {
		t.Errorf("old appliance's heartbeat = %+v; want gone/rebound", ans)
	}
	if ans, _ := newBox.heartbeat(1); ans.Status != protocol.StatusOK {
		t.Errorf("new appliance's heartbeat = %+v; want ok", ans)
	}
	// The old appliance cannot take the PBX back, even with the new key.
	r := oldBox.post(protocol.PathActivate, oldBox.sign(protocol.TypeActivate, oldBox.activateReq(res.Key, f.portal.Now())))
	if e := r.refusal(t); r.status != 409 || e.Code != protocol.CodeBoundElsewhere {
		t.Errorf("old appliance activating again: %d %+v; want 409 bound_elsewhere", r.status, e)
	}
	got := f.show("acme.example")
	if got.Device == nil || got.Device.ID != newBox.kid() || len(got.FormerDevices) != 1 ||
		got.FormerDevices[0].ID != oldBox.kid() || got.FormerDevices[0].UnboundAt == nil {
		t.Errorf("after rebind: device %+v, former %+v", got.Device, got.FormerDevices)
	}
}

func TestDeletedPBXIsGone(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	if _, err := f.admin.Delete(context.Background(), "acme.example"); err != nil {
		t.Fatal(err)
	}
	ans, _ := a.heartbeat(1)
	if ans.Status != protocol.StatusGone || ans.Reason != protocol.GoneDeleted {
		t.Errorf("heartbeat after delete = %+v; want gone/deleted", ans)
	}
	// The name is free again; the deleted PBX stays addressable by id.
	f.createPBX("acme.example", license.ModelVM, license.Monthly, nil)
	if got := f.show(a.pbxID); !got.Deleted {
		t.Errorf("PBX %s: deleted = false", a.pbxID)
	}
}

func TestHeartbeatRefusals(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)

	t.Run("replayed body", func(t *testing.T) {
		body := a.sign(protocol.TypeHeartbeat, a.heartbeatReq(f.portal.Now(), 1))
		if r := a.post(protocol.PathHeartbeat, body); r.status != 200 {
			t.Fatalf("first send: %d %s", r.status, r.body)
		}
		r := a.post(protocol.PathHeartbeat, body)
		if e := r.refusal(t); r.status != 409 || e.Code != protocol.CodeReplay {
			t.Errorf("second send: %d %+v; want 409 replay", r.status, e)
		}
	})
	t.Run("ten minutes old", func(t *testing.T) {
		req := a.heartbeatReq(f.portal.Now().Add(-10*time.Minute), 1)
		r := a.post(protocol.PathHeartbeat, a.sign(protocol.TypeHeartbeat, req))
		ans := a.answer(r, req.Nonce)
		if ans.Status != protocol.StatusStale || !ans.Time.Equal(f.portal.Now()) || ans.License != "" {
			t.Errorf("answer = %+v; want stale at %v", ans, f.portal.Now())
		}
		// Nothing was done, so the same nonce is still usable once fresh.
		req.Time = f.portal.Now()
		if ans := a.answer(a.post(protocol.PathHeartbeat, a.sign(protocol.TypeHeartbeat, req)), req.Nonce); ans.Status != protocol.StatusOK {
			t.Errorf("retry = %+v; want ok", ans)
		}
	})
	t.Run("bad device signature", func(t *testing.T) {
		r := a.post(protocol.PathHeartbeat, flipSignature(a.sign(protocol.TypeHeartbeat, a.heartbeatReq(f.portal.Now(), 1))))
		if e := r.refusal(t); r.status != 401 || e.Code != protocol.CodeBadSignature {
			t.Errorf("got %d %+v; want 401 bad_signature", r.status, e)
		}
	})
	t.Run("unknown device", func(t *testing.T) {
		b := newTestAgent(f, license.ModelVM)
		b.pbxID = a.pbxID
		r := b.post(protocol.PathHeartbeat, b.sign(protocol.TypeHeartbeat, b.heartbeatReq(f.portal.Now(), 1)))
		if e := r.refusal(t); r.status != 401 || e.Code != protocol.CodeUnknownDevice {
			t.Errorf("got %d %+v; want 401 unknown_device", r.status, e)
		}
	})
	t.Run("another PBX's id", func(t *testing.T) {
		other, _ := f.createPBX("other.example", license.ModelVM, license.Monthly, nil)
		req := a.heartbeatReq(f.portal.Now(), 1)
		req.PBXID = other.ID
		r := a.post(protocol.PathHeartbeat, a.sign(protocol.TypeHeartbeat, req))
		if e := r.refusal(t); r.status != 401 || e.Code != protocol.CodeUnknownDevice {
			t.Errorf("got %d %+v; want 401 unknown_device", r.status, e)
		}
	})
}

// An answer states the current revision whatever the request claims; the
// licence itself is left out only when the request holds it already.
func TestHeartbeatCarriesOnlyNewerLicences(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)

	ans, r := a.heartbeat(1)
	if ans.Status != protocol.StatusOK || ans.License != "" || ans.Interval != 60 {
		t.Errorf("unchanged heartbeat = %+v; want ok, interval 60, no licence", ans)
	}
	if len(r.body) >= 1024 {
		t.Errorf("unchanged heartbeat answer is %d bytes; want under 1 KiB", len(r.body))
	}
	got := f.show("acme.example")
	if got.LastHeartbeat == nil || !got.LastHeartbeat.Equal(base) || got.LastState != "active" || got.LastUsage[license.UCPremium] != 3 {
		t.Errorf("recorded heartbeat: %v, state %q, usage %v", got.LastHeartbeat, got.LastState, got.LastUsage)
	}

	res, err := f.admin.ChangeLicenses(context.Background(), "acme.example", LicenseChange{Profiles: license.Counts{license.UCPremium: 20}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.PBX.Revision != 2 {
		t.Errorf("licence change = %+v; want revision 2", res)
	}
	tests := []struct {
		held    int64
		wantRev int64 // 0: no licence
	}{{1, 2}, {2, 0}, {3, 2}, {999999, 2}}
	for _, tt := range tests {
		ans, _ := a.heartbeat(tt.held)
		if ans.Revision != 2 || ans.Digest != protocol.Digest(a.held[2]) || ans.Standing != protocol.StandingActive {
			t.Errorf("holding %d: the answer states revision %d, digest %q, standing %q; want revision 2, its digest, active",
				tt.held, ans.Revision, ans.Digest, ans.Standing)
		}
		switch {
		case tt.wantRev == 0 && ans.License != "":
			t.Errorf("holding %d: got a licence; want none", tt.held)
		case tt.wantRev != 0:
			d := a.licence(ans)
			if d.Revision != tt.wantRev || d.Counts[license.UCPremium] != 20 || d.Counts[license.PBXBasic] != 3 {
				t.Errorf("holding %d: licence revision %d, %v; want revision %d, uc-premium=20 pbx-basic=3 (merged)", tt.held, d.Revision, d.Counts, tt.wantRev)
			}
		}
	}

	// A change to the same counts is no change.
	res, err = f.admin.ChangeLicenses(context.Background(), a.pbxID, LicenseChange{Profiles: license.Counts{license.UCPremium: 20}})
	if err != nil || res.Changed || res.PBX.Revision != 2 {
		t.Errorf("same counts again = %+v, %v; want revision 2 unchanged", res, err)
	}
}

func TestClockAdvanceMovesTheAnswersTime(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)

	c, err := f.admin.AdvanceClock(context.Background(), 6*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := base.Add(6 * 24 * time.Hour)
	if !c.Now.Equal(want) || time.Duration(c.Offset) != 6*24*time.Hour {
		t.Errorf("clock = %+v; want %v", c, want)
	}
	if ans, _ := a.heartbeat(1); !ans.Time.Equal(want) {
		t.Errorf("answer time %v; want %v", ans.Time, want)
	}
	set := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	if c, err := f.admin.SetClock(context.Background(), set); err != nil || !c.Now.Equal(set) {
		t.Fatalf("set clock = %+v, %v", c, err)
	}
	f.clock.Add(time.Second) // the real clock runs on under the offset
	if ans, _ := a.heartbeat(1); !ans.Time.Equal(set.Add(time.Second)) {
		t.Errorf("answer time %v; want %v", ans.Time, set.Add(time.Second))
	}
}

func TestStatePersistsAcrossRestarts(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	ctx := context.Background()
	if _, err := f.admin.AdvanceClock(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.ChangeLicenses(ctx, "acme.example", LicenseChange{Profiles: license.Counts{license.UCBusiness: 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.SetFaults(ctx, Faults{Latency: Duration(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	replayed := a.sign(protocol.TypeHeartbeat, a.heartbeatReq(f.portal.Now(), 2))
	if r := a.post(protocol.PathHeartbeat, replayed); r.status != 200 {
		t.Fatalf("heartbeat: %d %s", r.status, r.body)
	}
	kid := f.portal.KeyID()

	f.restart()

	if f.portal.KeyID() != kid {
		t.Errorf("signing key changed across restart: %s → %s", kid, f.portal.KeyID())
	}
	got := f.show("acme.example")
	if got.Device == nil || got.Device.ID != a.kid() || got.Revision != 2 || got.LastHeartbeat == nil {
		t.Errorf("after restart: %+v", got)
	}
	c, err := f.admin.Clock(ctx)
	if err != nil || time.Duration(c.Offset) != time.Hour {
		t.Errorf("clock after restart = %+v, %v; want offset 1h", c, err)
	}
	if fs, err := f.admin.Faults(ctx); err != nil || time.Duration(fs.Latency) != time.Millisecond {
		t.Errorf("faults after restart = %+v, %v", fs, err)
	}
	if r := a.post(protocol.PathHeartbeat, replayed); r.status != 409 {
		t.Errorf("replay across restart: %d; want 409", r.status)
	}
	if ans, _ := a.heartbeat(2); ans.Status != protocol.StatusOK {
		t.Errorf("heartbeat after restart = %+v", ans)
	}
}

func TestNewRefusesUnusableState(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		want    string
	}{
		{"corrupt state", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, stateFile), []byte("{not json"), 0o600)
		}, "unusable"},
		{"signing key lost", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, signingKeyFile))
		}, "signing-key.pem is missing"},
		{"in use", func(t *testing.T, dir string) {
			p, err := New(Config{DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
		}, "in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := New(Config{DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			p.Close()
			tt.prepare(t, dir)
			p, err = New(Config{DataDir: dir})
			if err == nil {
				p.Close()
				t.Fatal("New succeeded; want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q; want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	ctx := context.Background()
	if _, err := f.admin.ChangeLicenses(ctx, "acme.example", LicenseChange{Profiles: license.Counts{license.UCPremium: 11}}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		faults Faults
		check  func(t *testing.T, r response, nonce string)
	}{
		{"error rate", Faults{ErrorRate: 1}, func(t *testing.T, r response, _ string) {
			if e := r.refusal(t); r.status != 500 || e.Code != protocol.CodeUnavailable {
				t.Errorf("got %d %+v; want 500", r.status, e)
			}
		}},
		{"rate limit", Faults{RateLimitRate: 1, RetryAfter: Duration(30 * time.Second)}, func(t *testing.T, r response, _ string) {
			e := r.refusal(t)
			ra := protocol.ParseRetryAfter(r.header.Get("Retry-After"), base)
			if r.status != 429 || e.Code != protocol.CodeRateLimited || ra != 30*time.Second {
				t.Errorf("got %d %+v, Retry-After %q; want 429 rate_limited, 30 s", r.status, e, r.header.Get("Retry-After"))
			}
		}},
		{"truncated", Faults{TruncateRate: 1}, func(t *testing.T, r response, nonce string) {
			_, err := protocol.VerifyAnswer(r.body, f.keyring(), nonce, a.pbxID)
			if r.status != 200 || !(errors.Is(err, license.ErrTruncated) || errors.Is(err, license.ErrCorrupted)) {
				t.Errorf("got %d, %v; want 200 with a truncated answer", r.status, err)
			}
		}},
		{"bad signature", Faults{BadSignatureRate: 1}, func(t *testing.T, r response, nonce string) {
			_, err := protocol.VerifyAnswer(r.body, f.keyring(), nonce, a.pbxID)
			if r.status != 200 || !errors.Is(err, license.ErrBadSignature) {
				t.Errorf("got %d, %v; want 200 with a bad signature", r.status, err)
			}
		}},
		{"replay old", Faults{ReplayOldRate: 1}, func(t *testing.T, r response, nonce string) {
			ans := a.answer(r, nonce)
			if d := a.licence(ans); d.Revision != 1 || d.Counts[license.UCPremium] != 10 {
				t.Errorf("licence revision %d, %v; want the previous revision 1", d.Revision, d.Counts)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.admin.SetFaults(ctx, tt.faults); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.admin.ClearFaults(ctx) })
			// The admin API is never faulted.
			if _, err := f.admin.PBX(ctx, "acme.example"); err != nil {
				t.Errorf("admin API under faults: %v", err)
			}
			req := a.heartbeatReq(f.portal.Now(), 2)
			tt.check(t, a.post(protocol.PathHeartbeat, a.sign(protocol.TypeHeartbeat, req)), req.Nonce)
		})
	}

	t.Run("latency", func(t *testing.T) {
		const delay = 20 * time.Millisecond
		if _, err := f.admin.SetFaults(ctx, Faults{Latency: Duration(delay)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.admin.ClearFaults(ctx) })
		start := time.Now()
		if _, r := a.heartbeat(2); r.status != 200 {
			t.Errorf("status %d", r.status)
		}
		if d := time.Since(start); d < delay {
			t.Errorf("answered after %v; want at least %v", d, delay)
		}
	})

	t.Run("latency ends with the request", func(t *testing.T) {
		if _, err := f.admin.SetFaults(ctx, Faults{Latency: Duration(MaxLatency)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.admin.ClearFaults(ctx) })
		rctx, cancel := context.WithCancel(ctx)
		cancel()
		req := a.heartbeatReq(f.portal.Now(), 2)
		hr, _ := http.NewRequestWithContext(rctx, http.MethodPost, protocol.PathHeartbeat,
			strings.NewReader(a.sign(protocol.TypeHeartbeat, req)))
		hr.Header.Set("Content-Type", protocol.ContentType)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			f.portal.Handler().ServeHTTP(rec, hr)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the handler kept waiting after its request was cancelled")
		}
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("answered %d %q; want 503: nothing was done", rec.Code, rec.Body.String())
		}
	})

	t.Run("settings are validated", func(t *testing.T) {
		for _, bad := range []map[string]any{{"error_rate": 1.5}, {"latency": "-1s"}, {"latency": "1h"}, {"nonsense": 1}} {
			_, err := f.admin.PatchFaults(ctx, bad)
			var ae *AdminError
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Errorf("%v: %v; want 400", bad, err)
			}
		}
		got, err := f.admin.PatchFaults(ctx, map[string]any{"error_rate": 0.25})
		if err != nil {
			t.Fatal(err)
		}
		got, err = f.admin.PatchFaults(ctx, map[string]any{"latency": "2s"})
		if err != nil || got.ErrorRate != 0.25 || time.Duration(got.Latency) != 2*time.Second {
			t.Errorf("patches = %+v, %v; want both kept", got, err)
		}
		if err := f.admin.ClearFaults(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAdminRefusals(t *testing.T) {
	f := newFixture(t)
	f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	ctx := context.Background()
	tests := []struct {
		name   string
		call   func() error
		status int
	}{
		{"duplicate name", func() error {
			_, err := f.admin.CreatePBX(ctx, CreatePBXRequest{Name: "acme.example", Model: "WPBX-VM", Term: "monthly"})
			return err
		}, 409},
		{"bad name", func() error {
			_, err := f.admin.CreatePBX(ctx, CreatePBXRequest{Name: "a b", Model: "WPBX-VM", Term: "monthly"})
			return err
		}, 400},
		{"bad model", func() error {
			_, err := f.admin.CreatePBX(ctx, CreatePBXRequest{Name: "b.example", Model: "WPBX-CLOUD", Term: "monthly"})
			return err
		}, 400},
		{"unknown profile", func() error {
			_, err := f.admin.ChangeLicenses(ctx, "acme.example", LicenseChange{Profiles: license.Counts{"uc-gold": 1}})
			return err
		}, 400},
		{"negative count", func() error {
			_, err := f.admin.ChangeLicenses(ctx, "acme.example", LicenseChange{Profiles: license.Counts{license.UCPremium: -1}})
			return err
		}, 400},
		{"unknown PBX", func() error {
			_, err := f.admin.Rebind(ctx, "nobody.example")
			return err
		}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ae *AdminError
			if err := tt.call(); !errors.As(err, &ae) || ae.Status != tt.status || ae.Message == "" {
				t.Errorf("got %v; want a %d refusal", err, tt.status)
			}
		})
	}
}

func TestTermEnd(t *testing.T) {
	tests := []struct {
		term license.Term
		from string
		want string
	}{
		{license.Monthly, "2026-11-27T12:00:00Z", "2026-11-30T23:59:59Z"},
		{license.Monthly, "2026-12-31T23:59:59Z", "2026-12-31T23:59:59Z"},
		{license.Monthly, "2027-01-01T00:00:00Z", "2027-01-31T23:59:59Z"},
		{license.Monthly, "2028-02-10T08:00:00Z", "2028-02-29T23:59:59Z"},
		{license.Monthly, "2027-02-10T08:00:00Z", "2027-02-28T23:59:59Z"},
		{license.Monthly, "2026-11-30T23:30:00-02:00", "2026-12-31T23:59:59Z"}, // already December in UTC
		{license.Yearly, "2026-11-27T12:00:00Z", "2027-11-30T23:59:59Z"},
		{license.Yearly, "2028-02-29T12:00:00Z", "2029-02-28T23:59:59Z"},
		{license.Yearly, "2026-12-15T00:00:00Z", "2027-12-31T23:59:59Z"},
		{license.Lifetime, "2026-11-27T12:00:00Z", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.term)+"/"+tt.from, func(t *testing.T) {
			from, err := time.Parse(time.RFC3339, tt.from)
			if err != nil {
				t.Fatal(err)
			}
			got := termEnd(tt.term, from)
			if tt.want == "" {
				if !got.IsZero() {
					t.Errorf("got %v; want none", got)
				}
				return
			}
			if s := got.Format(time.RFC3339); s != tt.want {
				t.Errorf("got %s; want %s", s, tt.want)
			}
		})
	}
}

func TestClosedPortalRefusesAndEndsWaits(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	if _, err := f.admin.SetFaults(context.Background(), Faults{Latency: Duration(MaxLatency)}); err != nil {
		t.Fatal(err)
	}
	body := a.sign(protocol.TypeHeartbeat, a.heartbeatReq(f.portal.Now(), 1))
	got := make(chan response, 1)
	go func() {
		resp, err := http.Post(f.srv.URL+protocol.PathHeartbeat, protocol.ContentType, strings.NewReader(body))
		if err != nil {
			got <- response{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- response{status: resp.StatusCode, header: resp.Header, body: string(b)}
	}()
	if err := f.portal.Close(); err != nil {
		t.Fatal(err)
	}
	// Whether the heartbeat was waiting or arrived after Close, it is refused at once.
	select {
	case r := <-got:
		if e := r.refusal(t); r.status != http.StatusServiceUnavailable || e.Code != protocol.CodeUnavailable {
			t.Errorf("got %d %+v; want 503 unavailable", r.status, e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request waiting on injected latency outlived Close")
	}
	if _, err := f.admin.Clock(context.Background()); err == nil {
		t.Error("the admin API still answers after Close")
	}
}
