package protocol

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

var updateSeeds = flag.Bool("update", false, "rewrite the committed fuzz seeds under testdata/fuzz")

// fuzzNow is the time every seed is signed at, so the seeds never change.
var fuzzNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// The answer the fuzz targets expect: to request "n1" about PBX "pbx-1".
const (
	fuzzNonce = "n1"
	fuzzPBX   = "pbx-1"
)

// mustRefusal fails unless err is a *license.Error wrapping a sentinel:
// the promise every parser of outside input makes, so callers can tell a
// bad document from a broken machine.
func mustRefusal(t *testing.T, err error) {
	t.Helper()
	var e *license.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T is not a *license.Error: %v", err, err)
	}
	for _, kind := range []error{license.ErrNotAKey, license.ErrWrongType, license.ErrTruncated, license.ErrCorrupted,
		license.ErrAlgorithm, license.ErrUnknownSigner, license.ErrBadSignature, license.ErrExpired,
		license.ErrWrongModel, license.ErrInvalid} {
		if errors.Is(err, kind) {
			return
		}
	}
	t.Fatalf("error wraps no sentinel: %v", err)
}

func fuzzKeyring(t testing.TB, s *license.Signer) *license.Keyring {
	kr, err := license.NewKeyring(map[string]ed25519.PublicKey{s.KeyID(): s.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func mustSign(t testing.TB, s *license.Signer, typ string, v any) string {
	out, err := s.Sign(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzVerifyAnswer feeds the agent's check of a portal answer: whatever
// the body, either a refusal naming its kind, or an answer that really
// answers request n1 about pbx-1 with the portal's time.
func FuzzVerifyAnswer(f *testing.F) {
	portal := signer(f, "portal-1")
	kr := fuzzKeyring(f, portal)
	f.Add(mustSign(f, portal, TypeAnswer, Answer{Status: StatusOK, Time: fuzzNow, Nonce: fuzzNonce, PBXID: fuzzPBX, Interval: 60}))
	f.Fuzz(func(t *testing.T, compact string) {
		a, err := VerifyAnswer(compact, kr, fuzzNonce, fuzzPBX)
		if err != nil {
			mustRefusal(t, err)
			return
		}
		switch {
		case a.Nonce != fuzzNonce:
			t.Fatalf("accepted an answer to request %q", a.Nonce)
		case a.PBXID != fuzzPBX && !(a.Status == StatusStale && a.PBXID == ""):
			t.Fatalf("accepted a %s answer about PBX %q", a.Status, a.PBXID)
		case a.Time.IsZero() || a.Interval < 0:
			t.Fatalf("accepted an answer without a time or with a negative interval: %+v", a)
		case a.Status != StatusOK && a.Status != StatusStale && a.Status != StatusGone:
			t.Fatalf("accepted status %q", a.Status)
		case a.Status == StatusGone && a.Reason != GoneDeleted && a.Reason != GoneRebound:
			t.Fatalf("accepted gone for reason %q", a.Reason)
		}
		mustBeUnambiguous(t, compact, nil)
	})
}

// FuzzVerifyRequest feeds the portal's check of a device-signed heartbeat.
func FuzzVerifyRequest(f *testing.F) {
	device := signer(f, "device")
	f.Add(mustSign(f, device, TypeHeartbeat, HeartbeatRequest{
		Request: Request{Time: fuzzNow, Nonce: fuzzNonce}, PBXID: fuzzPBX, Revision: 3, State: "active",
	}))
	pub := device.Public()
	f.Fuzz(func(t *testing.T, compact string) {
		var req HeartbeatRequest
		if err := VerifyRequest(compact, TypeHeartbeat, pub, &req); err != nil {
			mustRefusal(t, err)
			return
		}
		mustBeUnambiguous(t, compact, nil)
		// Accepted: the same content signed again verifies again.
		again := mustSign(t, device, TypeHeartbeat, req)
		var back HeartbeatRequest
		if err := VerifyRequest(again, TypeHeartbeat, pub, &back); err != nil {
			t.Fatalf("re-signed accepted request refused: %v", err)
		}
	})
}

// fuzzCommand is a valid ssh.open for pbx-1, live at fuzzNow.
func fuzzCommand() Command {
	return Command{ID: "cmd-1", PBXID: fuzzPBX, Type: CommandSSHOpen, IssuedAt: fuzzNow, ExpiresAt: fuzzNow.Add(time.Hour),
		SSH: &SSHOpen{TTL: 3600, PublicKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl support@example"}}}
}

// FuzzVerifyCommand feeds the agent's check of a portal command: either a
// refusal with its code, or a well-formed command for pbx-1, not expired.
func FuzzVerifyCommand(f *testing.F) {
	portal := signer(f, "portal-1")
	kr := fuzzKeyring(f, portal)
	f.Add(mustSign(f, portal, TypeCommand, fuzzCommand()))
	codes := []string{RefusedBadSignature, RefusedExpired, RefusedForeign, RefusedMalformed, RefusedUnsupported}
	f.Fuzz(func(t *testing.T, compact string) {
		c, err := VerifyCommand(compact, kr, fuzzPBX, fuzzNow)
		if err != nil {
			var ce *CommandError
			if !errors.As(err, &ce) || !slices.Contains(codes, ce.Code) {
				t.Fatalf("refusal %T %v is not a *CommandError with a known code", err, err)
			}
			if ce.ID != "" && !ValidCommandID(ce.ID) {
				t.Fatalf("refusal carries an unsafe id %q", ce.ID)
			}
			return
		}
		switch {
		case c.PBXID != fuzzPBX || !fuzzNow.Before(c.ExpiresAt) || !ValidCommandID(c.ID):
			t.Fatalf("accepted %+v", c)
		case c.Validate() != nil:
			t.Fatalf("accepted an invalid command: %v", c.Validate())
		case c.SSH != nil && (c.SSH.TTL < 1 || c.SSH.TTL > 86400):
			t.Fatalf("accepted ttl_seconds %d", c.SSH.TTL)
		case license.CheckTime("exp", c.ExpiresAt) != nil || license.CheckTime("iat", c.IssuedAt) != nil:
			t.Fatalf("accepted times %v to %v", c.IssuedAt, c.ExpiresAt)
		}
		mustBeUnambiguous(t, compact, &Command{})
		for _, k := range func() []string {
			if c.SSH == nil {
				return nil
			}
			return c.SSH.PublicKeys
		}() {
			if line, err := ParseSSHKey(k); err != nil || strings.ContainsAny(line, "\r\n") {
				t.Fatalf("accepted key %q: %v", k, err)
			}
		}
	})
}

// mustBeUnambiguous fails unless the payload of an accepted compact JWS
// reads alike for every parser: no duplicate or case-variant member names,
// against target's field names when it is not nil.
func mustBeUnambiguous(t *testing.T, compact string, target any) {
	t.Helper()
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(compact, ".")[1])
	if err != nil {
		t.Fatalf("accepted a payload that is not base64url: %v", err)
	}
	if err := strictjson.Check(payload, target); err != nil {
		t.Fatalf("accepted an ambiguous payload %q: %v", payload, err)
	}
}

// FuzzParseRetryAfter feeds the Retry-After header of a portal refusal.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "30", " 5 ", "-1", "soon", "Fri, 27 Nov 2026 12:01:00 GMT", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if d := ParseRetryAfter(v, fuzzNow); d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v: a wait is never negative", v, d)
		}
	})
}

// TestWriteFuzzSeeds regenerates the committed seeds with -update. They are
// signed by deterministic test keys, so they verify in every run.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	portal, other, device := signer(t, "portal-1"), signer(t, "portal-2"), signer(t, "device")
	ok := Answer{Status: StatusOK, Time: fuzzNow, Nonce: fuzzNonce, PBXID: fuzzPBX, Interval: 60}
	edit := func(f func(*Answer)) Answer { a := ok; f(&a); return a }
	lic := mustSign(t, portal, license.TypeLicense, map[string]any{"revision": 2})
	okAns := mustSign(t, portal, TypeAnswer, ok)
	writeSeeds(t, "FuzzVerifyAnswer", map[string]string{
		"ok":             okAns,
		"ok-licence":     mustSign(t, portal, TypeAnswer, edit(func(a *Answer) { a.License = lic })),
		"stale":          mustSign(t, portal, TypeAnswer, edit(func(a *Answer) { a.Status, a.PBXID = StatusStale, "" })),
		"gone":           mustSign(t, portal, TypeAnswer, edit(func(a *Answer) { a.Status, a.Reason = StatusGone, GoneRebound })),
		"other-nonce":    mustSign(t, portal, TypeAnswer, edit(func(a *Answer) { a.Nonce = "n0" })),
		"unknown-signer": mustSign(t, other, TypeAnswer, ok),
		"licence":        lic,
		"truncated":      okAns[:len(okAns)/2],
		"error-json":     `{"error": "injected fault: internal error", "code": "unavailable"}`,
		"empty":          "",
		// Ambiguous signed JSON.
		"nonce-case-variant": portalSigned(t, TypeAnswer, `{"status":"ok","time":"2026-11-27T12:00:00Z","nonce":"n0","pbx_id":"pbx-1","Nonce":"n1"}`),
		"status-duplicate": portalSigned(t, TypeAnswer,
			`{"status":"gone","reason":"deleted","time":"2026-11-27T12:00:00Z","nonce":"n1","pbx_id":"pbx-1","status":"ok"}`),
	})
	hb := HeartbeatRequest{Request: Request{Time: fuzzNow, Nonce: fuzzNonce}, PBXID: fuzzPBX, Revision: 3, State: "active",
		Usage: license.Counts{license.UCPremium: 4}}
	hbSigned := mustSign(t, device, TypeHeartbeat, hb)
	writeSeeds(t, "FuzzVerifyRequest", map[string]string{
		"heartbeat":      hbSigned,
		"activate":       mustSign(t, device, TypeActivate, ActivateRequest{Request: hb.Request, Model: license.ModelVM}),
		"other-device":   mustSign(t, portal, TypeHeartbeat, hb),
		"truncated":      hbSigned[:len(hbSigned)-10],
		"payload-string": mustSign(t, device, TypeHeartbeat, "not an object"),
		"revision-case-variant": signJSON(t, "device", DeviceKeyID(device.Public()), TypeHeartbeat,
			`{"time":"2026-11-27T12:00:00Z","nonce":"n1","pbx_id":"pbx-1","revision":3,"Revision":9,"state":"active"}`),
	})
	cmd := fuzzCommand()
	cmdEdit := func(f func(*Command)) Command { c := cmd; f(&c); return c }
	cmdSigned := mustSign(t, portal, TypeCommand, cmd)
	writeSeeds(t, "FuzzVerifyCommand", map[string]string{
		"ssh-open":  cmdSigned,
		"ssh-close": mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) { c.Type, c.SSH = CommandSSHClose, nil })),
		"wms-upgrade": mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) {
			c.Type, c.SSH = CommandWMSUpgrade, nil
			c.WMS = &WMSUpgrade{Version: "7.3.20261120.1", Repository: "rel07", WindowStart: fuzzNow, WindowEnd: fuzzNow.Add(30 * time.Minute)}
		})),
		"expired": mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) { c.IssuedAt, c.ExpiresAt = fuzzNow.Add(-2*time.Hour), fuzzNow.Add(-time.Hour) })),
		"foreign": mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) { c.PBXID = "pbx-2" })),
		"key-options": mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) {
			c.SSH = &SSHOpen{TTL: 60, PublicKeys: []string{`command="sh" ` + cmd.SSH.PublicKeys[0]}}
		})),
		"ssh-open-tunnel": mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) {
			c.SSH = &SSHOpen{TTL: 60, Tunnel: true, PublicKeys: cmd.SSH.PublicKeys}
		})),
		"tunnel-with-port": mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) { c.SSH = &SSHOpen{TTL: 60, Tunnel: true, Port: 2222} })),
		"unknown":          mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) { c.Type = "rm.rf" })),
		"other-key":        mustSign(t, other, TypeCommand, cmd),
		"answer-type":      mustSign(t, portal, TypeAnswer, cmd),
		"truncated":        cmdSigned[:len(cmdSigned)-20],
		// TTLs that wrap when multiplied into a Duration, times out of range.
		"ttl-wraps-to-0.29s": mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) { c.SSH = &SSHOpen{TTL: 18446744074} })),
		"ttl-negative":       mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) { c.SSH = &SSHOpen{TTL: 9223372037} })),
		"exp-year-9999":      mustSign(t, portal, TypeCommand, cmdEdit(func(c *Command) { c.ExpiresAt = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC) })),
		// Ambiguous signed JSON.
		"ttl-case-variant": portalSigned(t, TypeCommand,
			strings.Replace(commandJSON(t, cmd), `"ttl_seconds":3600`, `"ttl_seconds":60,"TTL_SECONDS":86400`, 1)),
		"id-duplicate": portalSigned(t, TypeCommand, strings.Replace(commandJSON(t, cmd), `"id":"cmd-1"`, `"id":"cmd-1","id":"cmd-2"`, 1)),
		"second-value": portalSigned(t, TypeCommand, commandJSON(t, cmd)+`{"id":"cmd-2"}`),
		"pbx-id-case":  portalSigned(t, TypeCommand, strings.Replace(commandJSON(t, cmd), `"pbx_id"`, `"PBX_ID"`, 1)),
	})
	dev := deviceSigner(t, "device-1")
	hb2 := compactFixture()
	hb2Signed := signCompact(t, dev, hb2)
	hb2Payload := mustMarshal(t, hb2)
	usage := license.Counts{license.UCPremium: 4}
	withReport := hb2
	withReport.Report = Report{State: "active", Usage: &usage, AgentVersion: "1.2.0"}
	noLink := hb2
	noLink.Link = Link{}
	writeSeeds(t, "FuzzVerifyCompactHeartbeat", map[string]string{
		"unchanged":         hb2Signed,
		"report":            signCompact(t, dev, withReport),
		"chain-not-started": signCompact(t, dev, noLink),
		"full-heartbeat":    mustSign(t, dev, TypeHeartbeat, hb),
		"other-device":      signCompact(t, deviceSigner(t, "device-2"), hb2),
		"truncated":         hb2Signed[:len(hb2Signed)-10],
		"time-not-shortest": mustSignRaw(t, dev, TypeCompactHeartbeat, append([]byte{hb2Payload[0] | 0x80, hb2Payload[1] | 0x80,
			hb2Payload[2] | 0x80, hb2Payload[3] | 0x80, hb2Payload[4] | 0x80, 0}, hb2Payload[5:]...)),
		"report-case-variant": mustSignRaw(t, dev, TypeCompactHeartbeat, append(slices.Clone(hb2Payload), `{"s":"active","S":"lapsed"}`...)),
		"trailing-bytes":      mustSignRaw(t, dev, TypeCompactHeartbeat, append(slices.Clone(hb2Payload), 0, 1)),
	})
	next := hb2
	next.Nonce = b64(9)
	echo := Echo(hb2Signed)
	writeSeeds(t, "FuzzVerifySame", map[string]string{
		"same":             mustSame(t, portal, hb2Signed),
		"replayed":         mustSame(t, portal, signCompact(t, dev, next)),
		"other-appliance":  mustSame(t, portal, signCompact(t, deviceSigner(t, "device-2"), hb2)),
		"stripped-echo":    mustSignRaw(t, portal, TypeSame, sameBytes(fuzzNow, echo)[:5]),
		"byte-after-echo":  mustSignRaw(t, portal, TypeSame, append(sameBytes(fuzzNow, echo), 0)),
		"full-answer-type": mustSignRaw(t, portal, TypeAnswer, sameBytes(fuzzNow, echo)),
		"untrusted":        mustSame(t, other, hb2Signed),
		"full-answer":      okAns,
		"signed-by-device": mustSignRaw(t, dev, TypeSame, sameBytes(fuzzNow, echo)),
	})
	writeSeeds(t, "FuzzParseRetryAfter", map[string]string{
		"seconds": "120", "date": "Fri, 27 Nov 2026 12:05:00 GMT", "past": "Thu, 26 Nov 2026 12:05:00 GMT", "junk": "1.5",
	})
}

func writeSeeds(t *testing.T, target string, seeds map[string]string) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\nstring(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
