package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// signJSON signs payload byte for byte as the key signer(name) would, so a
// test can sign what encoding/json would never write. kid is the key id
// the header names.
func signJSON(t testing.TB, name, kid, typ, payload string) string {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	priv := ed25519.NewKeyFromSeed(seed[:])
	hdr, err := json.Marshal(map[string]string{"alg": "EdDSA", "kid": kid, "typ": typ})
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hdr) + "." + enc.EncodeToString([]byte(payload))
	return input + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(input)))
}

// portalSigned is signJSON by the test portal key "portal-1".
func portalSigned(t testing.TB, typ, payload string) string {
	return signJSON(t, "portal-1", "portal-1", typ, payload)
}

func commandJSON(t testing.TB, c Command) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCommandTTLRange signs ssh.open commands whose ttl_seconds wrap when
// multiplied into a Duration: 18446744074 s became 0.29 s and 9223372037 s
// a negative TTL ("until 1734"). Both must be refused as malformed.
func TestCommandTTLRange(t *testing.T) {
	portal := signer(t, "portal-1")
	kr := fuzzKeyring(t, portal)
	for ttl, ok := range map[license.Seconds]bool{
		1: true, 86400: true,
		0: false, -1: false, 86401: false,
		18446744074: false, 9223372037: false, 9223372036854775807: false, -9223372037: false,
	} {
		c := fuzzCommand()
		c.SSH.TTL = ttl
		got, err := VerifyCommand(mustSign(t, portal, TypeCommand, c), kr, fuzzPBX, fuzzNow)
		if ok {
			if err != nil || got.SSH.TTL.Duration() != time.Duration(ttl)*time.Second {
				t.Errorf("ttl_seconds %d: %v", ttl, err)
			}
			continue
		}
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Code != RefusedMalformed || !strings.Contains(ce.Detail, "ttl_seconds") || ce.ID != "cmd-1" {
			t.Errorf("ttl_seconds %d: got %v (%+v), want a malformed refusal naming ttl_seconds", ttl, err, got)
		}
	}
}

// TestCommandTunnel: a tunnelled ssh.open is strict like the rest of the
// command, and names no port.
func TestCommandTunnel(t *testing.T) {
	portal := signer(t, "portal-1")
	kr := fuzzKeyring(t, portal)
	tunnelled := fuzzCommand()
	tunnelled.SSH.Tunnel = true
	got, err := VerifyCommand(mustSign(t, portal, TypeCommand, tunnelled), kr, fuzzPBX, fuzzNow)
	if err != nil || !got.SSH.Tunnel {
		t.Fatalf("a tunnelled ssh.open: %v (%+v), want accepted with its tunnel", err, got)
	}
	plain := commandJSON(t, tunnelled)
	for name, tc := range map[string]struct{ payload, want string }{
		"with a port": {strings.Replace(plain, `"tunnel":true`, `"tunnel":true,"port":2222`, 1), "names no port"},
		"as a string": {strings.Replace(plain, `"tunnel":true`, `"tunnel":"yes"`, 1), "tunnel"},
		"case variant": {strings.Replace(plain, `"tunnel":true`, `"tunnel":false,"Tunnel":true`, 1),
			`member "Tunnel" differs only in case from member "tunnel"`},
	} {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(plain, `"tunnel":true`) {
				t.Fatalf("no tunnel member in %s", plain)
			}
			_, err := VerifyCommand(portalSigned(t, TypeCommand, tc.payload), kr, fuzzPBX, fuzzNow)
			var ce *CommandError
			if !errors.As(err, &ce) || ce.Code != RefusedMalformed || !strings.Contains(ce.Detail, tc.want) {
				t.Fatalf("got %v, want a malformed refusal naming %q", err, tc.want)
			}
		})
	}
}

// TestCommandStrictJSON signs commands that encoding/json reads one way and
// an exact, duplicate-refusing reader another.
func TestCommandStrictJSON(t *testing.T) {
	portal := signer(t, "portal-1")
	kr := fuzzKeyring(t, portal)
	plain := commandJSON(t, fuzzCommand())
	replace := func(old, new string) string {
		if !strings.Contains(plain, old) {
			t.Fatalf("%s is not in %s", old, plain)
		}
		return strings.Replace(plain, old, new, 1)
	}
	tests := []struct {
		name, payload, want, id string
	}{
		{"ttl case variant after", replace(`"ttl_seconds":3600`, `"ttl_seconds":60,"TTL_SECONDS":86400`),
			`member "TTL_SECONDS" differs only in case from member "ttl_seconds" in "ssh"`, "cmd-1"},
		{"ttl duplicate", replace(`"ttl_seconds":3600`, `"ttl_seconds":60,"ttl_seconds":86400`),
			`duplicate member "ttl_seconds" in "ssh"`, "cmd-1"},
		{"pbx_id case variant alone", replace(`"pbx_id"`, `"PBX_ID"`),
			`member "PBX_ID" differs only in case from "pbx_id"`, "cmd-1"},
		{"type duplicate", replace(`"type":"ssh.open"`, `"type":"ssh.close","type":"ssh.open"`),
			`duplicate member "type"`, "cmd-1"},
		// Which id would another reader take? Neither is reported.
		{"id duplicate", replace(`"id":"cmd-1"`, `"id":"cmd-1","id":"cmd-2"`), `duplicate member "id"`, ""},
		{"id case variant", replace(`"id":"cmd-1"`, `"id":"cmd-1","ID":"cmd-2"`), `member "ID" differs only in case`, ""},
		{"second value", plain + `{"id":"cmd-2"}`, "more than one JSON value", ""},
		{"exp year 9999", replace(`"exp":"2026-11-27T13:00:00Z"`, `"exp":"9999-12-31T23:59:59Z"`), "exp 9999-12-31T23:59:59Z is outside", "cmd-1"},
		{"iat 2019", replace(`"iat":"2026-11-27T12:00:00Z"`, `"iat":"2019-11-27T12:00:00Z"`), "iat 2019-11-27T12:00:00Z is outside", "cmd-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyCommand(portalSigned(t, TypeCommand, tt.payload), kr, fuzzPBX, fuzzNow)
			var ce *CommandError
			if !errors.As(err, &ce) || ce.Code != RefusedMalformed || !strings.Contains(ce.Detail, tt.want) || ce.ID != tt.id {
				t.Fatalf("got %#v, want a malformed refusal of id %q naming %q", err, tt.id, tt.want)
			}
		})
	}
	if _, err := VerifyCommand(portalSigned(t, TypeCommand, plain), kr, fuzzPBX, fuzzNow); err != nil {
		t.Fatalf("the plain command is refused: %v", err)
	}
}

// TestSignedPayloadsStrictInVerify: Keyring.Verify refuses an ambiguous
// answer or request before answer.go decodes it.
func TestSignedPayloadsStrictInVerify(t *testing.T) {
	portal, device := signer(t, "portal-1"), signer(t, "device")
	kr := fuzzKeyring(t, portal)
	ans := `{"status":"ok","time":"2026-11-27T12:00:00Z","nonce":"n0","pbx_id":"pbx-1","Nonce":"n1"}`
	if _, err := VerifyAnswer(portalSigned(t, TypeAnswer, ans), kr, fuzzNonce, fuzzPBX); !errors.Is(err, license.ErrInvalid) ||
		!strings.Contains(err.Error(), `member "Nonce" differs only in case from member "nonce"`) {
		t.Fatalf("answer with two nonces: %v", err)
	}
	dup := `{"status":"gone","reason":"deleted","time":"2026-11-27T12:00:00Z","nonce":"n1","pbx_id":"pbx-1","status":"ok"}`
	if _, err := VerifyAnswer(portalSigned(t, TypeAnswer, dup), kr, fuzzNonce, fuzzPBX); !errors.Is(err, license.ErrInvalid) ||
		!strings.Contains(err.Error(), `duplicate member "status"`) {
		t.Fatalf("answer with two statuses: %v", err)
	}
	hb := `{"time":"2026-11-27T12:00:00Z","nonce":"n1","pbx_id":"pbx-1","revision":3,"Revision":9,"state":"active"}`
	var req HeartbeatRequest
	if err := VerifyRequest(signJSON(t, "device", DeviceKeyID(device.Public()), TypeHeartbeat, hb), TypeHeartbeat, device.Public(), &req); !errors.Is(err, license.ErrInvalid) ||
		!strings.Contains(err.Error(), `member "Revision" differs only in case`) {
		t.Fatalf("heartbeat with two revisions: %v", err)
	}
}
