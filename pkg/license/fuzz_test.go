package license

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	})
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
	})
	writeSeeds(t, "FuzzParseDocument", map[string]string{
		"valid":     lic,
		"countdown": mustSign(t, portal, TypeLicense, countdown),
		"key":       key,
		"truncated": lic[:len(lic)/2],
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
