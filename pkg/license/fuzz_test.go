package license

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

var updateSeeds = flag.Bool("update", false, "rewrite the committed fuzz seeds under testdata/fuzz")

// checkRefusal fails unless err is an *Error wrapping a known sentinel, the
// promise every parser of outside input makes.
func checkRefusal(t *testing.T, err error) {
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T is not an *Error: %v", err, err)
	}
	for _, kind := range []error{ErrNotAKey, ErrWrongType, ErrTruncated, ErrCorrupted, ErrAlgorithm,
		ErrUnknownSigner, ErrBadSignature, ErrExpired, ErrWrongModel, ErrInvalid} {
		if errors.Is(err, kind) {
			return
		}
	}
	t.Fatalf("error wraps no sentinel: %v", err)
}

func FuzzParseKey(f *testing.F) {
	portal := testSigner(f, "portal-1")
	kr := testKeyring(f, portal)
	f.Add(mustSign(f, portal, TypeKey, testKey()))
	f.Fuzz(func(t *testing.T, input string) {
		k, err := ParseKey(input, kr, KeyCheck{Now: testNow, Model: ModelVM})
		if err != nil {
			checkRefusal(t, err)
			return
		}
		// Accepted: the content must be a valid key and survive a re-sign.
		if k.PBX.ID == "" || !k.PBX.Model.Valid() || k.Counts.Validate() != nil || k.SignerKeyID != "portal-1" {
			t.Fatalf("accepted an invalid key: %+v", k)
		}
		mustBeUnambiguous(t, NormalizeKey(input), &Key{})
		if CheckTime("exp", k.ExpiresAt) != nil {
			t.Fatalf("accepted a key expiring at %v", k.ExpiresAt)
		}
		if _, err := ParseKey(mustSign(t, portal, TypeKey, k), kr, KeyCheck{Now: testNow}); err != nil {
			t.Fatalf("re-signed accepted key refused: %v", err)
		}
	})
}

func FuzzParseDocument(f *testing.F) {
	portal := testSigner(f, "portal-1")
	kr := testKeyring(f, portal)
	f.Add(mustSign(f, portal, TypeLicense, testDocument()))
	f.Fuzz(func(t *testing.T, input string) {
		d, err := ParseDocument(input, kr, DocumentCheck{})
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted a document that does not validate: %v", err)
		}
		mustBeUnambiguous(t, input, &Document{})
		for _, tm := range []time.Time{d.IssuedAt, d.TermEnd, d.SuspendedAt()} {
			if !tm.IsZero() && CheckTime("time", tm) != nil {
				t.Fatalf("accepted a document with time %v", tm)
			}
		}
	})
}

// mustBeUnambiguous fails unless the header and payload of an accepted
// compact JWS read alike for every parser: no duplicate or case-variant
// member names.
func mustBeUnambiguous(t *testing.T, compact string, target any) {
	t.Helper()
	parts := strings.Split(compact, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := strictjson.Check(hdr, &header{}); err != nil {
		t.Fatalf("accepted an ambiguous header %q: %v", hdr, err)
	}
	if err := strictjson.Check(payload, target); err != nil {
		t.Fatalf("accepted an ambiguous payload %q: %v", payload, err)
	}
}

// TestWriteFuzzSeeds regenerates the committed seeds with -update. The seeds
// are signed by the deterministic test key, so they verify in every run.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	portal, other := testSigner(t, "portal-1"), testSigner(t, "portal-9")
	key := mustSign(t, portal, TypeKey, testKey())
	doc := testDocument()
	zero, stop, del := testNow, testNow.AddDate(0, 0, 5), testNow.AddDate(0, 0, 14)
	countdown := testDocument()
	countdown.Counts, countdown.ZeroSince, countdown.StopAt, countdown.DeleteAt = Counts{}, &zero, &stop, &del
	lic := mustSign(t, portal, TypeLicense, doc)

	writeSeeds(t, "FuzzParseKey", map[string]string{
		"valid":          key,
		"wrapped-quoted": `"` + wrap(key, 64) + `"`,
		"truncated":      key[:len(key)-20],
		"unknown-signer": mustSign(t, other, TypeKey, testKey()),
		"licence-as-key": lic,
		"alg-none":       "eyJhbGciOiJub25lIiwia2lkIjoicG9ydGFsLTEiLCJ0eXAiOiJwYngta2V5K2p3cyJ9." + strings.Split(key, ".")[1] + ".",
		"not-a-key":      "ssh-ed25519 AAAA",
		"empty":          "",
		// Attacks on the reading of signed JSON and times.
		"exp-case-variant": signRaw(t, portal, keyHeader, withMembers(t, testKey(), `"EXP":"2199-01-01T00:00:00Z"`, true)),
		"model-duplicate": signRaw(t, portal, keyHeader,
			strings.Replace(mustJSON(t, testKey()), `"model":"WPBX-VM"`, `"model":"WPBX-VM","model":"WPBX-HW"`, 1)),
		"header-typ-case": signRaw(t, portal, `{"alg":"EdDSA","kid":"portal-1","typ":"pbx-key+jws","Typ":"pbx-license+jws"}`, mustJSON(t, testKey())),
		"exp-year-9999":   mustSign(t, portal, TypeKey, func() Key { k := testKey(); k.ExpiresAt = year9999; return k }()),
	})
	writeSeeds(t, "FuzzParseDocument", map[string]string{
		"valid":     lic,
		"countdown": mustSign(t, portal, TypeLicense, countdown),
		"key":       key,
		"truncated": lic[:len(lic)/2],
		// Attacks on the reading of signed JSON and times.
		"revision-case-variant": signRaw(t, portal, licHeader, withMembers(t, doc, `"Revision":9`, true)),
		"revision-case-alone":   signRaw(t, portal, licHeader, strings.Replace(mustJSON(t, doc), `"revision":7`, `"Revision":9`, 1)),
		"revision-duplicate":    signRaw(t, portal, licHeader, withMembers(t, doc, `"revision":9`, true)),
		"pbx-duplicate":         signRaw(t, portal, licHeader, withMembers(t, doc, `"pbx":{"id":"pbx-other","model":"WPBX-HW"}`, false)),
		"profile-duplicate": signRaw(t, portal, licHeader,
			strings.Replace(mustJSON(t, doc), `"uc-premium":10`, `"uc-premium":10,"uc-premium":1000`, 1)),
		"header-typ-duplicate": signRaw(t, portal, `{"alg":"EdDSA","kid":"portal-1","typ":"pbx-key+jws","typ":"pbx-license+jws"}`, mustJSON(t, doc)),
		"term-end-year-9999":   mustSign(t, portal, TypeLicense, func() Document { d := testDocument(); d.TermEnd = year9999; return d }()),
	})
}

const (
	keyHeader = `{"alg":"EdDSA","kid":"portal-1","typ":"pbx-key+jws"}`
	licHeader = `{"alg":"EdDSA","kid":"portal-1","typ":"pbx-license+jws"}`
)

var year9999 = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

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
