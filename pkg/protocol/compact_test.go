package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// deviceSigner is a device key named as the portal names device keys.
func deviceSigner(t testing.TB, name string) *license.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	priv := ed25519.NewKeyFromSeed(seed[:])
	d, err := license.NewSigner(DeviceKeyID(priv.Public().(ed25519.PublicKey)), priv)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// b64 is the base64url of 16 bytes of b.
func b64(b byte) string { return base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{b}, 16)) }

func compactFixture() CompactHeartbeat {
	return CompactHeartbeat{
		Request: Request{Time: fuzzNow, Nonce: b64(1)},
		Held:    Held{Revision: 3, Digest: b64(2)},
		Link:    Link{Digest: b64(3), Seq: 7},
	}
}

func signCompact(t testing.TB, dev *license.Signer, h CompactHeartbeat) string {
	t.Helper()
	payload, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := dev.SignRaw(TypeCompactHeartbeat, payload)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCompactHeartbeatRoundTrip(t *testing.T) {
	usage, none := license.Counts{license.UCPremium: 12, license.PBXBasic: 1}, license.Counts{}
	for _, tt := range []struct {
		name string
		edit func(*CompactHeartbeat)
	}{
		{"unchanged", func(*CompactHeartbeat) {}},
		{"chain not started", func(h *CompactHeartbeat) { h.Link = Link{} }},
		{"revision 0", func(h *CompactHeartbeat) { h.Held.Revision = 0 }},
		{"large numbers", func(h *CompactHeartbeat) { h.Held.Revision, h.Link.Seq = 1<<62, 1<<63+5 }},
		{"report", func(h *CompactHeartbeat) {
			h.Report = Report{Fetch: true, State: "active", Usage: &usage, Overuse: &none, AgentVersion: "1.2.0",
				Results: []CommandResult{{ID: "cmd-1", State: "done"}}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := compactFixture()
			tt.edit(&h)
			payload, err := h.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseCompactHeartbeat(payload)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, h) {
				t.Errorf("read back %+v, want %+v", got, h)
			}
		})
	}
}

// TestCompactHeartbeatSize pins the fixed part: a revision and sequence
// under 128 cost a byte each, the rest is the time and three 128-bit
// values.
func TestCompactHeartbeatSize(t *testing.T) {
	payload, err := compactFixture().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := 5 + 16 + 1 + 16 + 1 + 16; len(payload) != want {
		t.Errorf("an unchanged compact heartbeat's payload is %d bytes, want %d", len(payload), want)
	}
}

func TestCompactHeartbeatMarshalRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*CompactHeartbeat)
		want string
	}{
		{"sub-second time", func(h *CompactHeartbeat) { h.Time = h.Time.Add(time.Millisecond) }, "whole seconds"},
		{"short nonce", func(h *CompactHeartbeat) { h.Nonce = "n1" }, "nonce"},
		{"negative revision", func(h *CompactHeartbeat) { h.Held.Revision = -1 }, "negative revision"},
		{"digest of 32 bytes", func(h *CompactHeartbeat) { h.Held.Digest = b64(2) + b64(2) }, "digest"},
		{"link without sequence", func(h *CompactHeartbeat) { h.Link.Seq = 0 }, "sequence 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := compactFixture()
			tt.edit(&h)
			if _, err := h.MarshalBinary(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming %q", err, tt.want)
			}
		})
	}
}

// TestParseCompactHeartbeatRefuses: every payload has one reading, and
// one reading only.
func TestParseCompactHeartbeatRefuses(t *testing.T) {
	good, err := compactFixture().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	noLink := compactFixture()
	noLink.Link = Link{}
	short, err := noLink.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tt := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"empty", nil, "before ts"},
		{"truncated in the link", good[:len(good)-1], "inside link"},
		{"truncated in the nonce", good[:10], "inside nonce"},
		{"time 0", cat([]byte{0}, good[5:]), "ts 0 out of range"},
		{"time not shortest", cat([]byte{good[0] | 0x80, good[1] | 0x80, good[2] | 0x80, good[3] | 0x80, good[4] | 0x80, 0}, good[5:]), "shortest"},
		{"time overflows", cat(bytes.Repeat([]byte{0xff}, 10), []byte{1}, good[5:]), "overflows"},
		{"revision not shortest", cat(good[:21], []byte{0x83, 0x00}, good[22:]), "revision is not in its shortest"},
		{"link with sequence 0 reads as a report", cat(short[:len(short)-1], []byte{0}, bytes.Repeat([]byte{3}, 16)), "not a JSON object"},
		{"trailing bytes", cat(good, []byte("xyz")), "not a JSON object"},
		{"report with a case variant", cat(good, []byte(`{"s":"active","S":"lapsed"}`)), "report"},
		{"report with a second value", cat(good, []byte(`{"s":"active"}{"s":"lapsed"}`)), "report"},
		{"report not an object", cat(good, []byte(`{"u":[1]}`)), "report"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCompactHeartbeat(tt.payload)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestVerifyCompactHeartbeat(t *testing.T) {
	dev, other := deviceSigner(t, "device-1"), deviceSigner(t, "device-2")
	h := compactFixture()
	signed := signCompact(t, dev, h)
	got, err := VerifyCompactHeartbeat(signed, dev.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Errorf("verified %+v, want %+v", got, h)
	}
	full := mustSign(t, dev, TypeHeartbeat, HeartbeatRequest{Request: h.Request, PBXID: fuzzPBX})
	for _, tt := range []struct {
		name    string
		compact string
		kind    error
	}{
		{"another device's", signCompact(t, other, h), license.ErrUnknownSigner},
		{"a full heartbeat", full, license.ErrWrongType},
		{"an answer's type", mustSignRaw(t, dev, TypeSame, []byte{1}), license.ErrWrongType},
		{"a payload altered", alterPayload(t, signed), license.ErrBadSignature},
		{"a report of another shape", mustSignRaw(t, dev, TypeCompactHeartbeat, append(mustMarshal(t, h), `{"u":"12"}`...)), license.ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyCompactHeartbeat(tt.compact, dev.Public())
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %v, want %v", err, tt.kind)
			}
		})
	}
}

func mustSignRaw(t testing.TB, s *license.Signer, typ string, payload []byte) string {
	t.Helper()
	out, err := s.SignRaw(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustMarshal(t testing.TB, h CompactHeartbeat) []byte {
	t.Helper()
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// alterPayload flips a bit of a compact JWS's payload, keeping its
// signature.
func alterPayload(t testing.TB, compact string) string {
	t.Helper()
	parts := strings.Split(compact, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// TestVerifySameAttacks: a "same" answer says everything the request said
// is current, so each attack on it must be refused: replayed to another
// request, made for another appliance or PBX, stripped of a field, signed
// by a key the agent does not trust, sent as another type, or standing for
// a request that is not the one sent.
func TestVerifySameAttacks(t *testing.T) {
	portal, rogue := signer(t, "portal-1"), signer(t, "portal-2")
	kr := fuzzKeyring(t, portal)
	dev, other := deviceSigner(t, "device-1"), deviceSigner(t, "device-2")
	h := compactFixture()
	req := signCompact(t, dev, h)
	ans, err := SignSame(portal, fuzzNow.Add(1500*time.Millisecond), req)
	if err != nil {
		t.Fatal(err)
	}

	a, err := VerifySame(ans, kr, req, fuzzPBX)
	if err != nil {
		t.Fatal(err)
	}
	// To the millisecond: the licence clock takes this time.
	want := &Answer{Status: StatusOK, Time: fuzzNow.Add(1500 * time.Millisecond), Nonce: h.Nonce, PBXID: fuzzPBX, Revision: 3, Digest: b64(2),
		Standing: StandingActive, Link: b64(3), Seq: 7, Compact: ans, Same: true}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("a same answer reads as %+v, want %+v", a, want)
	}
	if !a.Matches(Held{Revision: 3, Digest: b64(2)}) || a.CheckEcho(h.Link) != nil {
		t.Errorf("a same answer does not confirm what its request held: %+v", a)
	}

	next := h
	next.Nonce, next.Time = b64(9), fuzzNow.Add(time.Minute)
	nextReq := signCompact(t, dev, next)
	otherReq := signCompact(t, other, h) // the same claims, another appliance
	fullReq := mustSign(t, dev, TypeHeartbeat, HeartbeatRequest{Request: h.Request, PBXID: fuzzPBX, Revision: 3, Digest: b64(2)})
	echo := Echo(req)
	stripped := mustSignRaw(t, portal, TypeSame, sameBytes(fuzzNow, echo)[:len(sameBytes(fuzzNow, echo))-DigestBytes]) // the time alone
	for _, tt := range []struct {
		name     string
		answer   string
		request  string
		kind     error
		contains string
	}{
		{"replayed to the next request", ans, nextReq, license.ErrInvalid, "another request"},
		{"made for another appliance's request", mustSame(t, portal, otherReq), req, license.ErrInvalid, "another request"},
		{"standing for an edited kept request", ans, alterPayload(t, req), license.ErrInvalid, "another request"},
		{"answering a full heartbeat", mustSame(t, portal, fullReq), fullReq, license.ErrInvalid, "not a compact heartbeat"},
		{"stripped of its echo", stripped, req, license.ErrInvalid, "inside echo"},
		{"with a byte after the echo", mustSignRaw(t, portal, TypeSame, append(sameBytes(fuzzNow, echo), 0)), req, license.ErrInvalid, "after the echo"},
		{"time 0", mustSignRaw(t, portal, TypeSame, append([]byte{0}, echo[:]...)), req, license.ErrInvalid, "out of range"},
		{"signed by an untrusted key", mustSame(t, rogue, req), req, license.ErrUnknownSigner, ""},
		{"signed as a full answer", mustSignRaw(t, portal, TypeAnswer, sameBytes(fuzzNow, echo)), req, license.ErrWrongType, ""},
		{"a full answer's type claimed by the device", mustSignRaw(t, dev, TypeSame, sameBytes(fuzzNow, echo)), req, license.ErrUnknownSigner, ""},
		{"altered", alterPayload(t, ans), req, license.ErrBadSignature, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifySame(tt.answer, kr, tt.request, fuzzPBX)
			mustRefusal(t, err)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %v, want %v naming %q", err, tt.kind, tt.contains)
			}
		})
	}
	// A same answer read as a full one (an agent that did not send a
	// compact heartbeat) is refused for its type.
	if _, err := VerifyAnswer(ans, kr, h.Nonce, fuzzPBX); !errors.Is(err, license.ErrWrongType) {
		t.Errorf("a same answer checked as a full one: %v, want %v", err, license.ErrWrongType)
	}
}

func mustSame(t testing.TB, s *license.Signer, request string) string {
	t.Helper()
	out, err := SignSame(s, fuzzNow, request)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameBytes(now time.Time, echo [DigestBytes]byte) []byte {
	b := []byte{}
	for v := uint64(now.Unix()); ; v >>= 7 {
		if v < 0x80 {
			b = append(b, byte(v))
			break
		}
		b = append(b, byte(v)|0x80)
	}
	return append(b, echo[:]...)
}

// FuzzVerifyCompactHeartbeat feeds the portal's check of a compact
// heartbeat: a refusal naming its kind, or a heartbeat that encodes back
// to the very payload signed.
func FuzzVerifyCompactHeartbeat(f *testing.F) {
	dev := deviceSigner(f, "device-1")
	f.Add(signCompact(f, dev, compactFixture()))
	pub := dev.Public()
	f.Fuzz(func(t *testing.T, compact string) {
		h, err := VerifyCompactHeartbeat(compact, pub)
		if err != nil {
			mustRefusal(t, err)
			return
		}
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(compact, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		fixed := h
		fixed.Report = Report{}
		again, err := fixed.MarshalBinary()
		if err != nil {
			t.Fatalf("an accepted heartbeat does not encode: %v", err)
		}
		if !bytes.HasPrefix(payload, again) {
			t.Fatalf("an accepted heartbeat has two encodings: %x signed, %x again", payload, again)
		}
	})
}

// FuzzVerifySame feeds the agent's check of a "same" answer to one
// compact heartbeat: a refusal naming its kind, or an answer that confirms
// exactly what that heartbeat held.
func FuzzVerifySame(f *testing.F) {
	portal := signer(f, "portal-1")
	kr := fuzzKeyring(f, portal)
	dev := deviceSigner(f, "device-1")
	h := compactFixture()
	req := signCompact(f, dev, h)
	f.Add(mustSame(f, portal, req))
	f.Fuzz(func(t *testing.T, compact string) {
		a, err := VerifySame(compact, kr, req, fuzzPBX)
		if err != nil {
			mustRefusal(t, err)
			return
		}
		if a.Nonce != h.Nonce || a.Revision != h.Held.Revision || a.Digest != h.Held.Digest || a.CheckEcho(h.Link) != nil ||
			a.Time.IsZero() || a.PBXID != fuzzPBX {
			t.Fatalf("accepted a same answer that says something else than its request: %+v", a)
		}
	})
}

func TestEchoIsOfTheRequestAsSent(t *testing.T) {
	dev := deviceSigner(t, "device-1")
	req := signCompact(t, dev, compactFixture())
	if Echo(req) == Echo(req+" ") || Echo(req) != Echo(strings.Clone(req)) {
		t.Error("the echo is not a function of the request's bytes")
	}
	var zero [DigestBytes]byte
	if Echo(req) == zero {
		t.Error("zero echo")
	}
	if _, err := SignSame(signer(t, "portal-1"), time.Unix(0, 0), req); err == nil {
		t.Error("signed a same answer at 1970")
	}
}
