package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func signer(t testing.TB, name string) *license.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	priv := ed25519.NewKeyFromSeed(seed[:])
	s, err := license.NewSigner(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyAnswer(t *testing.T) {
	portal := signer(t, "portal-1")
	kr, err := license.NewKeyring(map[string]ed25519.PublicKey{"portal-1": portal.Public()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ok := Answer{Status: StatusOK, Time: now, Nonce: "n1", PBXID: "pbx-1", Interval: 60}
	sign := func(a Answer, typ string) string {
		s, err := portal.Sign(typ, a)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	edit := func(f func(*Answer)) Answer { a := ok; f(&a); return a }

	tests := []struct {
		name    string
		compact string
		wantErr error
	}{
		{"ok", sign(ok, TypeAnswer), nil},
		{"gone rebound", sign(edit(func(a *Answer) { a.Status, a.Reason = StatusGone, GoneRebound }), TypeAnswer), nil},
		{"another request's answer", sign(edit(func(a *Answer) { a.Nonce = "n0" }), TypeAnswer), license.ErrInvalid},
		{"another PBX", sign(edit(func(a *Answer) { a.PBXID = "pbx-2" }), TypeAnswer), license.ErrInvalid},
		{"stale, naming no PBX (activation)", sign(edit(func(a *Answer) { a.Status, a.PBXID = StatusStale, "" }), TypeAnswer), nil},
		{"stale, about another PBX", sign(edit(func(a *Answer) { a.Status, a.PBXID = StatusStale, "pbx-2" }), TypeAnswer), license.ErrInvalid},
		{"ok, naming no PBX", sign(edit(func(a *Answer) { a.PBXID = "" }), TypeAnswer), license.ErrInvalid},
		{"no time", sign(edit(func(a *Answer) { a.Time = time.Time{} }), TypeAnswer), license.ErrInvalid},
		{"unknown status", sign(edit(func(a *Answer) { a.Status = "maybe" }), TypeAnswer), license.ErrInvalid},
		{"gone without reason", sign(edit(func(a *Answer) { a.Status = StatusGone }), TypeAnswer), license.ErrInvalid},
		{"a licence is not an answer", sign(ok, license.TypeLicense), license.ErrWrongType},
		{"signed by a device", func() string { s, _ := signer(t, "portal-2").Sign(TypeAnswer, ok); return s }(), license.ErrUnknownSigner},
		{"truncated", sign(ok, TypeAnswer)[:60], license.ErrTruncated},
		{"year 9999", sign(edit(func(a *Answer) { a.Time = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }), TypeAnswer), license.ErrInvalid},
		{"year 1970", sign(edit(func(a *Answer) { a.Time = time.Unix(0, 0) }), TypeAnswer), license.ErrInvalid},
		{"unknown standing", sign(edit(func(a *Answer) { a.Standing = "owned" }), TypeAnswer), license.ErrInvalid},
		{"refused for no known reason", sign(edit(func(a *Answer) { a.Status, a.Reason = StatusRefused, "" }), TypeAnswer), license.ErrInvalid},
		{"refused, cloned", sign(edit(func(a *Answer) { a.Status, a.Reason = StatusRefused, RefusedCloned }), TypeAnswer), nil},
		// What a proxy would like the agent to read: the portal signed
		// one revision, a case variant claims another.
		{"a case variant of a member", signRaw(t, portal, `{"status":"ok","time":"2026-11-27T12:00:00Z","nonce":"n1","pbx_id":"pbx-1","revision":1,"Revision":9}`), license.ErrInvalid},
		{"a lone case variant", signRaw(t, portal, `{"status":"ok","time":"2026-11-27T12:00:00Z","nonce":"n1","pbx_id":"pbx-1","Revision":9}`), license.ErrInvalid},
		{"a duplicate member", signRaw(t, portal, `{"status":"ok","time":"2026-11-27T12:00:00Z","nonce":"n1","pbx_id":"pbx-1","revision":1,"revision":9}`), license.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyAnswer(tt.compact, kr, "n1", "pbx-1")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("VerifyAnswer error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// signRaw signs payload exactly as given, as a portal signs what it means.
func signRaw(t *testing.T, s *license.Signer, payload string) string {
	t.Helper()
	out, err := s.Sign(TypeAnswer, json.RawMessage(payload))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyRequest(t *testing.T) {
	seed := sha256.Sum256([]byte("device"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pub := priv.Public().(ed25519.PublicKey)
	dev, err := license.NewSigner(DeviceKeyID(pub), priv)
	if err != nil {
		t.Fatal(err)
	}
	req := HeartbeatRequest{Request: Request{Time: time.Now().UTC(), Nonce: "abc"}, PBXID: "pbx-1", Revision: 3}
	compact, err := dev.Sign(TypeHeartbeat, req)
	if err != nil {
		t.Fatal(err)
	}
	var got HeartbeatRequest
	if err := VerifyRequest(compact, TypeHeartbeat, pub, &got); err != nil || got.Revision != 3 || got.Nonce != "abc" {
		t.Errorf("VerifyRequest = %+v, %v", got, err)
	}
	other := signer(t, "other").Public()
	if err := VerifyRequest(compact, TypeHeartbeat, other, &got); !errors.Is(err, license.ErrUnknownSigner) {
		t.Errorf("request checked against another device key: error = %v, want ErrUnknownSigner", err)
	}
	if err := VerifyRequest(compact, TypeActivate, pub, &got); !errors.Is(err, license.ErrWrongType) {
		t.Errorf("heartbeat taken as activation: error = %v, want ErrWrongType", err)
	}
}
