package license

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// wrap breaks s into lines of n columns, as a mail client would.
func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

// flip replaces the character at i by another base64url character.
func flip(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// signWith signs claims with an arbitrary JWS algorithm and key.
func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid, typ string, payload string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseKey(t *testing.T) {
	portal := testSigner(t, "portal-1")
	other := testSigner(t, "portal-9")
	kr := testKeyring(t, portal)

	valid := mustSign(t, portal, TypeKey, testKey())
	parts := strings.Split(valid, ".")
	expired := testKey()
	expired.ExpiresAt = testNow.Add(-time.Hour)
	hw := testKey()
	hw.PBX.Model = ModelHW
	future := testKey()
	future.Version = KeyVersion + 1
	noPBX := testKey()
	noPBX.PBX.ID = ""
	badProfile := testKey()
	badProfile.Counts = Counts{"uc-gold": 1}
	doc := testDocument()

	tests := []struct {
		name    string
		input   string
		check   KeyCheck
		kr      *Keyring
		wantErr error
		wantMsg string // the whole error message, as a user reads it
	}{
		{name: "valid", input: valid},
		{name: "valid wrapped at 64 columns in quotes", input: `"` + wrap(valid, 64) + `"`},
		{name: "valid with CRLF, indentation and typographic quotes", input: "  “" + strings.ReplaceAll(wrap(valid, 70), "\n", "\r\n\t") + "”\r\n"},
		{name: "valid with single quotes and a trailing newline", input: "'" + valid + "'\n"},
		{name: "valid, model matches", input: valid, check: KeyCheck{Model: ModelVM}},
		{
			name: "empty", input: " \n\t ", wantErr: ErrNotAKey,
			wantMsg: "input not a PBX key: it is empty; paste the PBX key copied from the portal",
		},
		{
			name: "not a key at all", input: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG support@example", wantErr: ErrNotAKey,
			wantMsg: `input not a PBX key: a PBX key starts with "eyJ"; paste the PBX key copied from the portal`,
		},
		{
			name: "a licence document instead of a key", input: mustSign(t, portal, TypeLicense, doc), wantErr: ErrNotAKey,
			wantMsg: "input not a PBX key: it is a licence document; paste the PBX key, not another portal document",
		},
		{
			name: "truncated inside the header", input: valid[:20], wantErr: ErrTruncated,
			wantMsg: "PBX key truncated: it stops inside its header; copy the whole key again from the portal (Copy PBX key)",
		},
		{
			name: "truncated inside the content", input: parts[0] + "." + parts[1][:40], wantErr: ErrTruncated,
			wantMsg: "PBX key truncated: it stops inside its content, before the signature; copy the whole key again from the portal (Copy PBX key)",
		},
		{
			name: "truncated inside the signature", input: valid[:len(valid)-10], wantErr: ErrTruncated,
			wantMsg: "PBX key truncated: its signature has 76 of 86 characters; copy the whole key again from the portal (Copy PBX key)",
		},
		{
			name: "shortened display with an ellipsis", input: valid[:30] + "…", wantErr: ErrTruncated,
			wantMsg: "PBX key truncated: it ends with an ellipsis, as in a shortened display; copy the whole key again from the portal (Copy PBX key)",
		},
		{
			name: "stray character", input: valid[:50] + "%" + valid[50:], wantErr: ErrCorrupted,
			wantMsg: `PBX key corrupted: character 51 ('%') cannot appear in it; copy the whole key again from the portal (Copy PBX key)`,
		},
		{
			name: "extra part", input: valid + ".eyJ9", wantErr: ErrCorrupted,
			wantMsg: "PBX key corrupted: it has 4 dot-separated parts, not 3; copy the whole key again from the portal (Copy PBX key)",
		},
		{
			name: "header damaged", input: flip(valid, 5), wantErr: ErrCorrupted,
			wantMsg: "PBX key corrupted: its header is not valid JSON; copy the whole key again from the portal (Copy PBX key)",
		},
		{
			name: "signature too long", input: valid + "AAAA", wantErr: ErrCorrupted,
			wantMsg: "PBX key corrupted: its signature has 90 characters, not 86; copy the whole key again from the portal (Copy PBX key)",
		},
		{
			name: "content altered", input: parts[0] + "." + flip(parts[1], 30) + "." + parts[2], wantErr: ErrBadSignature,
			wantMsg: "PBX key bad signature: the signature does not match the content; it was altered after the portal signed it; copy the whole key again from the portal (Copy PBX key)",
		},
		{
			name: "signature altered", input: parts[0] + "." + parts[1] + "." + flip(parts[2], 40), wantErr: ErrBadSignature,
			wantMsg: "PBX key bad signature: the signature does not match the content; it was altered after the portal signed it; copy the whole key again from the portal (Copy PBX key)",
		},
		{
			name: "signed by an unknown portal", input: mustSign(t, other, TypeKey, testKey()), wantErr: ErrUnknownSigner,
			wantMsg: `PBX key signed by an untrusted portal key: portal key "portal-9" is not in the keyring (trusted: portal-1); it comes from another portal, or this PBX's portal keyring is out of date`,
		},
		{
			name: "signed by a revoked portal key", input: valid, kr: kr.WithRevoked([]string{"portal-1"}), wantErr: ErrUnknownSigner,
			wantMsg: `PBX key signed by an untrusted portal key: portal key "portal-1" has been revoked; it comes from another portal, or this PBX's portal keyring is out of date`,
		},
		{
			name: "signed with HS256", input: signWith(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "portal-1", TypeKey, `{"v":1}`), wantErr: ErrAlgorithm,
			wantMsg: `PBX key unsupported signature algorithm: it is signed with "HS256"; only EdDSA is accepted`,
		},
		{
			name: "alg none", input: "eyJhbGciOiJub25lIiwia2lkIjoicG9ydGFsLTEiLCJ0eXAiOiJwYngta2V5K2p3cyJ9." + parts[1] + "." + parts[2], wantErr: ErrAlgorithm,
			wantMsg: `PBX key unsupported signature algorithm: it is signed with "none"; only EdDSA is accepted`,
		},
		{
			name: "expired", input: mustSign(t, portal, TypeKey, expired), wantErr: ErrExpired,
			wantMsg: "PBX key expired: it expired at 2026-11-27T11:00:00Z; issue a new key on the portal (pbx-portal-sim pbx key acme.example)",
		},
		{
			name: "wrong model", input: mustSign(t, portal, TypeKey, hw), check: KeyCheck{Model: ModelVM}, wantErr: ErrWrongModel,
			wantMsg: "PBX key wrong model: it is for a WPBX-HW, but this appliance is a WPBX-VM; create the PBX on the portal as a WPBX-VM, or set identity.model if detection is wrong",
		},
		{
			name: "newer format", input: mustSign(t, portal, TypeKey, future), wantErr: ErrInvalid,
			wantMsg: "PBX key invalid content: format version 2 is newer than this agent reads (1); upgrade pbx-agent",
		},
		{
			name: "no PBX", input: mustSign(t, portal, TypeKey, noPBX), wantErr: ErrInvalid,
			wantMsg: "PBX key invalid content: it names no PBX",
		},
		{
			name: "unknown profile", input: mustSign(t, portal, TypeKey, badProfile), wantErr: ErrInvalid,
			wantMsg: `PBX key invalid content: unknown profile "uc-gold": use one of pbx-basic, uc-essential, uc-business, uc-premium, uc-wizyconf, pbx-service`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyring := kr
			if tt.kr != nil {
				keyring = tt.kr
			}
			check := tt.check
			check.Now = testNow
			k, err := ParseKey(tt.input, keyring, check)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseKey: %v", err)
				}
				want := testKey()
				if k.PBX != want.PBX || k.Term != want.Term || k.Counts.String() != want.Counts.String() || k.SignerKeyID != "portal-1" {
					t.Errorf("ParseKey = %+v, want %+v signed by portal-1", k, want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseKey error = %v, want %v", err, tt.wantErr)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("ParseKey error %T is not an *Error", err)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("ParseKey error message\n got: %s\nwant: %s", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), parts[1][:20]) {
				t.Errorf("error message leaks the key: %s", err)
			}
		})
	}
}

func TestParseKeyReturnsVerifiedKeyWhenExpired(t *testing.T) {
	portal := testSigner(t, "portal-1")
	k := testKey()
	k.ExpiresAt = testNow
	got, err := ParseKey(mustSign(t, portal, TypeKey, k), testKeyring(t, portal), KeyCheck{Now: testNow})
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("error = %v, want ErrExpired (a key expires at its expiry instant)", err)
	}
	if got == nil || got.PBX.ID != "pbx-42" {
		t.Errorf("expired key not returned beside the error: %+v", got)
	}
}

func TestDecodeKeyUnverified(t *testing.T) {
	other := testSigner(t, "portal-9")
	k, ok := DecodeKeyUnverified(`"` + wrap(mustSign(t, other, TypeKey, testKey()), 64) + `"`)
	if !ok || k.PBX.ID != "pbx-42" {
		t.Errorf("DecodeKeyUnverified = %+v, %v; want the claims of pbx-42", k, ok)
	}
	if _, ok := DecodeKeyUnverified("eyJ.broken"); ok {
		t.Error("DecodeKeyUnverified accepted a two-part input")
	}
}

func TestNormalizeKey(t *testing.T) {
	tests := map[string]string{
		"abc":             "abc",
		"  a b\nc\r\n":    "abc",
		`"abc"`:           "abc",
		`'abc'`:           "abc",
		"“abc”":           "abc",
		"«abc»":           "abc",
		"\ufeffabc\u200b": "abc",
		`"abc`:            `"abc`,
		`""`:              "",
		"`a\n b`":         "ab",
		`"'abc'"`:         "'abc'",
	}
	for in, want := range tests {
		if got := NormalizeKey(in); got != want {
			t.Errorf("NormalizeKey(%q) = %q, want %q", in, got, want)
		}
	}
}
