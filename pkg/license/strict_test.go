package license

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// signRaw signs payload under a protected header given byte for byte, as a
// portal whose signer emits odd JSON would.
func signRaw(t testing.TB, s *Signer, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	return input + "." + enc.EncodeToString(ed25519.Sign(s.priv, []byte(input)))
}

// withMembers returns the JSON of v with raw members added first, so a
// duplicate or case variant comes before the real member, or after it
// when after is set.
func withMembers(t testing.TB, v any, members string, after bool) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if after {
		return s[:len(s)-1] + "," + members + "}"
	}
	return "{" + members + "," + s[1:]
}

// TestSignedJSONIsStrict signs, with a trusted key, payloads and headers
// that encoding/json reads one way and an exact, duplicate-refusing reader
// (go-jose, the portal) another: every one must be refused, naming the
// member.
func TestSignedJSONIsStrict(t *testing.T) {
	portal := testSigner(t, "portal-1")
	kr := testKeyring(t, portal)
	const lic = `{"alg":"EdDSA","kid":"portal-1","typ":"pbx-license+jws"}`
	doc, key := testDocument(), testKey()
	tests := []struct {
		name, header, payload string
		parse                 func(string) error
		kind                  error
		want                  string
	}{
		{name: "licence revision case variant after", header: lic, payload: withMembers(t, doc, `"Revision":9`, true),
			kind: ErrInvalid, want: `member "Revision" differs only in case from member "revision"`},
		{name: "licence revision case variant alone", header: lic,
			payload: strings.Replace(mustJSON(t, doc), `"revision":7`, `"Revision":9`, 1),
			kind:    ErrInvalid, want: `member "Revision" differs only in case from "revision"`},
		{name: "licence duplicate revision", header: lic, payload: withMembers(t, doc, `"revision":9`, true),
			kind: ErrInvalid, want: `duplicate member "revision"`},
		{name: "licence duplicate pbx", header: lic, payload: withMembers(t, doc, `"pbx":{"id":"pbx-other","model":"WPBX-HW"}`, false),
			kind: ErrInvalid, want: `duplicate member "pbx"`},
		{name: "licence nested case variant", header: lic,
			payload: strings.Replace(mustJSON(t, doc), `"id":"pbx-42"`, `"id":"pbx-42","ID":"pbx-other"`, 1),
			kind:    ErrInvalid, want: `member "ID" differs only in case from member "id" in "pbx"`},
		{name: "licence profile counted twice", header: lic,
			payload: strings.Replace(mustJSON(t, doc), `"uc-premium":10`, `"uc-premium":10,"uc-premium":1000`, 1),
			kind:    ErrInvalid, want: `duplicate member "uc-premium" in "profiles"`},
		{name: "licence trailing value", header: lic, payload: mustJSON(t, doc) + `{"revision":99}`,
			kind: ErrInvalid, want: "more than one JSON value"},
		{name: "header typ and Typ", header: `{"alg":"EdDSA","kid":"portal-1","typ":"pbx-license+jws","Typ":"pbx-key+jws"}`,
			payload: mustJSON(t, doc), kind: ErrCorrupted, want: `its header is ambiguous: member "Typ" differs only in case from member "typ"`},
		{name: "header duplicate typ", header: `{"alg":"EdDSA","kid":"portal-1","typ":"pbx-key+jws","typ":"pbx-license+jws"}`,
			payload: mustJSON(t, doc), kind: ErrCorrupted, want: `duplicate member "typ"`},
		{name: "header duplicate kid", header: `{"alg":"EdDSA","kid":"portal-9","kid":"portal-1","typ":"pbx-license+jws"}`,
			payload: mustJSON(t, doc), kind: ErrCorrupted, want: `duplicate member "kid"`},
		{name: "header Alg", header: `{"Alg":"EdDSA","kid":"portal-1","typ":"pbx-license+jws"}`,
			payload: mustJSON(t, doc), kind: ErrCorrupted, want: `member "Alg" differs only in case from "alg"`},
		{name: "key expiry case variant", header: `{"alg":"EdDSA","kid":"portal-1","typ":"pbx-key+jws"}`,
			payload: withMembers(t, key, `"EXP":"2199-01-01T00:00:00Z"`, true),
			parse:   func(s string) error { _, err := ParseKey(s, kr, KeyCheck{Now: testNow}); return err },
			kind:    ErrInvalid, want: `member "EXP" differs only in case from member "exp"`},
		{name: "key model duplicate", header: `{"alg":"EdDSA","kid":"portal-1","typ":"pbx-key+jws"}`,
			payload: strings.Replace(mustJSON(t, key), `"model":"WPBX-VM"`, `"model":"WPBX-VM","model":"WPBX-HW"`, 1),
			parse:   func(s string) error { _, err := ParseKey(s, kr, KeyCheck{Now: testNow}); return err },
			kind:    ErrInvalid, want: `duplicate member "model" in "pbx"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := tt.parse
			if parse == nil {
				parse = func(s string) error { _, err := ParseDocument(s, kr, DocumentCheck{}); return err }
			}
			err := parse(signRaw(t, portal, tt.header, tt.payload))
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %v naming %q", err, tt.kind, tt.want)
			}
		})
	}
	// The same construction without the attack verifies: the test signs
	// what it means to.
	if _, err := ParseDocument(signRaw(t, portal, lic, mustJSON(t, doc)), kr, DocumentCheck{}); err != nil {
		t.Fatalf("plain licence refused: %v", err)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckTime(t *testing.T) {
	for _, tt := range []struct {
		t  time.Time
		ok bool
	}{
		{time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{time.Date(2019, 12, 31, 23, 59, 59, 999999999, time.UTC), false},
		{time.Date(2199, 12, 31, 23, 59, 59, 999999999, time.UTC), true},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), false},
		// The range is in UTC, whatever the offset a time is written at.
		{time.Date(2200, 1, 1, 0, 30, 0, 0, time.FixedZone("", 3600)), true},
		{time.Date(2199, 12, 31, 23, 30, 0, 0, time.FixedZone("", -3600)), false},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), false},
		{time.Time{}, false},
	} {
		err := CheckTime("exp", tt.t)
		if (err == nil) != tt.ok {
			t.Errorf("CheckTime(%v) = %v, want ok %v", tt.t, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "exp ") {
			t.Errorf("CheckTime error %q does not name the member", err)
		}
	}
}

// TestSignedTimesInRange signs, with a trusted key, documents whose times
// are far in the past or future: year 9999 overflowed the deadlines
// computed from it, and made the status page fail.
func TestSignedTimesInRange(t *testing.T) {
	portal := testSigner(t, "portal-1")
	kr := testKeyring(t, portal)
	y9999 := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	y2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	y2019 := time.Date(2019, 6, 1, 0, 0, 0, 0, time.UTC)
	docTests := map[string]func(*Document){
		"term_end year 9999":      func(d *Document) { d.TermEnd = y9999 },
		"term_end 2200":           func(d *Document) { d.TermEnd = y2200 },
		"iat 2019":                func(d *Document) { d.IssuedAt = y2019 },
		"soft_overage.until 9999": func(d *Document) { d.SoftOverage = &SoftOverage{Factor: 1.1, Until: y9999} },
		"suspended_since 2019":    func(d *Document) { d.Suspended, d.SuspendedSince = true, &y2019 },
		"delete_at year 9999":     func(d *Document) { d.Counts, d.ZeroSince, d.StopAt, d.DeleteAt = Counts{}, &testNow, &testNow, &y9999 },
		"zero_since 2019 onwards": func(d *Document) { d.Counts, d.ZeroSince, d.StopAt, d.DeleteAt = Counts{}, &y2019, &testNow, &testNow },
	}
	for name, edit := range docTests {
		t.Run("licence "+name, func(t *testing.T) {
			d := testDocument()
			edit(&d)
			_, err := ParseDocument(mustSign(t, portal, TypeLicense, d), kr, DocumentCheck{})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "outside the years 2020 to 2199") ||
				!strings.Contains(err.Error(), strings.Fields(name)[0]+" ") {
				t.Fatalf("got %v, want ErrInvalid naming %s", err, strings.Fields(name)[0])
			}
		})
	}
	for name, edit := range map[string]func(*Key){
		"exp year 9999": func(k *Key) { k.ExpiresAt = y9999 },
		"iat 2019":      func(k *Key) { k.IssuedAt = y2019 },
	} {
		t.Run("key "+name, func(t *testing.T) {
			k := testKey()
			edit(&k)
			_, err := ParseKey(mustSign(t, portal, TypeKey, k), kr, KeyCheck{Now: testNow})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), strings.Fields(name)[0]+" ") {
				t.Fatalf("got %v, want ErrInvalid naming %s", err, strings.Fields(name)[0])
			}
		})
	}
	// The last valid instant still verifies.
	d := testDocument()
	d.TermEnd = y2200.Add(-time.Second)
	if _, err := ParseDocument(mustSign(t, portal, TypeLicense, d), kr, DocumentCheck{}); err != nil {
		t.Fatalf("term end 2199-12-31T23:59:59Z refused: %v", err)
	}
}

func TestSecondsDurationSaturates(t *testing.T) {
	for s, want := range map[Seconds]time.Duration{
		1:            time.Second,
		86400:        24 * time.Hour,
		9223372036:   9223372036 * time.Second,
		9223372037:   time.Duration(1<<63 - 1),
		18446744074:  time.Duration(1<<63 - 1),
		-9223372037:  time.Duration(-1 << 63),
		-18446744074: time.Duration(-1 << 63),
	} {
		if got := s.Duration(); got != want {
			t.Errorf("Seconds(%d).Duration() = %v, want %v", s, got, want)
		}
	}
}
