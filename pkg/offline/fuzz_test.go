package offline

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

var updateSeeds = flag.Bool("update", false, "rewrite the committed fuzz seeds under testdata/fuzz")

// checkRefusal fails unless err is a *license.Error wrapping a known
// sentinel: every reader of a carried file promises a precise refusal.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	var e *license.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T is not a *license.Error: %v", err, err)
	}
	for _, kind := range []error{license.ErrWrongType, license.ErrTruncated, license.ErrCorrupted, license.ErrAlgorithm,
		license.ErrUnknownSigner, license.ErrBadSignature, license.ErrInvalid} {
		if errors.Is(err, kind) {
			return
		}
	}
	t.Fatalf("error wraps no sentinel: %v", err)
}

// FuzzParseLicence reads what an admin carries to the appliance, armoured
// or bare, as `pbx-agent activate --licence-file` does.
func FuzzParseLicence(f *testing.F) {
	fx := newFixture(f)
	for _, s := range seeds(f, fx)["FuzzParseLicence"] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		compact, err := Unarmour(input, KindLicence)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		l, err := ParseLicence(compact, fx.kr)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if l.Doc == nil || l.Doc.PBX.ID != l.PBXID || !l.Horizon.After(l.Time) || l.Nonce == "" {
			t.Fatalf("accepted an invalid file: %+v", l)
		}
		// Checking it against any holder refuses precisely or accepts.
		if err := l.Check(Holder{Device: l.Device, Fingerprint: l.Fingerprint, Outstanding: []string{"x"}}); err != nil {
			checkRefusal(t, err)
		}
	})
}

// FuzzParseReport reads what the portal receives from an appliance.
func FuzzParseReport(f *testing.F) {
	fx := newFixture(f)
	for _, s := range seeds(f, fx)["FuzzParseReport"] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		compact, err := Unarmour(input, KindReport)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if _, err := ReportDevice(compact); err != nil {
			checkRefusal(t, err)
			return
		}
		r, err := ParseReport(compact, fx.device.Public())
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if r.PBXID == "" || r.Revision < 1 || r.Usage.Validate() != nil || r.Peak.Validate() != nil {
			t.Fatalf("accepted an invalid report: %+v", r)
		}
	})
}

// FuzzParseRequest reads an activation request, verified with the key it carries.
func FuzzParseRequest(f *testing.F) {
	fx := newFixture(f)
	for _, s := range seeds(f, fx)["FuzzParseRequest"] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		compact, err := Unarmour(input, KindRequest)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		r, err := ParseRequest(compact)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if r.Key == "" || !r.Model.Valid() || r.DeviceID() == "" {
			t.Fatalf("accepted an invalid request: %+v", r)
		}
	})
}

// FuzzParseShortRequest reads the short form of an activation request,
// as a phone scanned it from the appliance's QR code.
func FuzzParseShortRequest(f *testing.F) {
	fx := newFixture(f)
	for _, s := range seeds(f, fx)["FuzzParseShortRequest"] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		r, err := ParseShortRequest(input)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if r.KeyRef == nil || r.KeyRef.ID == "" || r.Key != "" || !r.Model.Valid() || r.DeviceID() == "" || r.Nonce == "" {
			t.Fatalf("accepted an invalid short request: %+v", r)
		}
		if r.KeyRef.Proves(KeyDigest("some other key")) {
			t.Fatalf("the proof of key %q holds for a key never used", r.KeyRef.ID)
		}
	})
}

// FuzzParseShortReport reads the short form of a usage report, as a
// phone scanned it from the appliance's QR code.
func FuzzParseShortReport(f *testing.F) {
	fx := newFixture(f)
	for _, s := range seeds(f, fx)["FuzzParseShortReport"] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		r, err := ParseShortReport(input, fx.device.Public())
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if r.PBXID == "" || r.Revision < 1 || r.Usage.Validate() != nil || r.Peak.Validate() != nil || r.Device != fx.device.KeyID() {
			t.Fatalf("accepted an invalid report: %+v", r)
		}
	})
}

// seeds are the starting points of each target: valid files, armoured and
// bare, and the mistakes and attacks a carried file meets.
func seeds(t testing.TB, fx *fixture) map[string]map[string]string {
	lic := must(t)(SignLicence(fx.portal, fx.file("nonce-activate", protocol.Link{})))
	rep := must(t)(SignReport(fx.device, fx.report(protocol.Link{Digest: protocol.Digest(lic), Seq: 1})))
	req := must(t)(SignRequest(fx.device, fx.request()))
	short := must(t)(SignShortRequest(fx.device, fx.request(), "key-0123456789abcdef"))
	shortRep := must(t)(SignShortReport(fx.device, fx.report(protocol.Link{Digest: protocol.Digest(lic), Seq: 1})))
	dupNonce := func(compact string) string { // a second "nonce" member after the signed one
		parts := strings.Split(compact, ".")
		return parts[0] + "." + parts[1] + "x." + parts[2]
	}
	return map[string]map[string]string{
		"FuzzParseLicence": {
			"armoured":       Armour(KindLicence, []Header{{"PBX", "acme"}}, lic),
			"bare":           lic,
			"truncated":      lic[:len(lic)-30],
			"report":         rep,
			"inner-licence":  fx.licence,
			"damaged":        dupNonce(lic),
			"armoured-other": Armour(KindReport, nil, lic),
		},
		"FuzzParseReport": {
			"armoured":     Armour(KindReport, []Header{{"PBX", "acme"}}, rep),
			"bare":         rep,
			"licence":      lic,
			"other-device": must(t)(SignReport(fx.other, fx.report(protocol.Link{}))),
		},
		"FuzzParseRequest": {
			"armoured": Armour(KindRequest, nil, req),
			"bare":     req,
			"report":   rep,
			"short":    short,
		},
		"FuzzParseShortRequest": {
			"short":     short,
			"wrapped":   strings.ToLower(short[:40]) + "\n" + short[40:],
			"truncated": short[:len(short)-20],
			"full":      req,
			"overrides": must(t)(SignShortRequest(fx.device, overridden(fx.request()), "key-0123456789abcdef")),
			"report":    shortRep,
		},
		"FuzzParseShortReport": {
			"short":        shortRep,
			"wrapped":      strings.ToLower(shortRep[:40]) + "\n" + shortRep[40:],
			"truncated":    shortRep[:len(shortRep)-20],
			"other-device": must(t)(SignShortReport(fx.other, fx.report(protocol.Link{}))),
			"request":      short,
		},
	}
}

// TestWriteFuzzSeeds rewrites the committed seeds with -update; they are
// signed by deterministic test keys, so they verify in every run.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	for target, set := range seeds(t, newFixture(t)) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, s := range set {
			body := fmt.Sprintf("go test fuzz v1\nstring(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
