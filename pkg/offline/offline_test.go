package offline

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

func TestRequestRoundTrip(t *testing.T) {
	f := newFixture(t)
	signed := must(t)(SignRequest(f.device, f.request()))
	r, err := ParseRequest(signed)
	if err != nil {
		t.Fatal(err)
	}
	if r.DeviceID() != f.device.KeyID() || r.Nonce != "nonce-activate" || r.Version != Version {
		t.Fatalf("parsed %+v", r)
	}
}

// An attacker on the way swaps the device key inside a captured request
// for their own: the signature no longer verifies with the key carried.
func TestRequestSwappedDeviceKeyRefused(t *testing.T) {
	f := newFixture(t)
	req := f.request()
	req.DeviceKey = f.other.Public()
	forged := must(t)(f.device.Sign(TypeRequest, func() Request { req.Version = Version; return req }()))
	_, err := ParseRequest(forged)
	if !errors.Is(err, license.ErrUnknownSigner) {
		t.Fatalf("got %v, want a refusal naming the device key", err)
	}
	if !strings.Contains(err.Error(), f.other.KeyID()) {
		t.Errorf("error %q does not name the key carried", err)
	}
	if _, err := SignRequest(f.device, req); err == nil {
		t.Error("SignRequest signed a request carrying another key")
	}
}

func TestWrongFileTypeNamed(t *testing.T) {
	f := newFixture(t)
	report := must(t)(SignReport(f.device, f.report(protocol.Link{})))
	_, err := ParseLicence(report, f.kr)
	if !errors.Is(err, license.ErrWrongType) || !strings.Contains(err.Error(), "this is an offline usage report") {
		t.Fatalf("got %v", err)
	}
	_, err = ParseLicence(f.licence, f.kr)
	if !errors.Is(err, license.ErrWrongType) || !strings.Contains(err.Error(), "this is a licence document") {
		t.Fatalf("got %v", err)
	}
}

// A licence file signed by a key the appliance does not trust (the
// owner's own "portal") is refused, however well formed.
func TestLicenceFromUntrustedPortalRefused(t *testing.T) {
	f := newFixture(t)
	rogue := signer(t, "rogue", "portal-1") // same key id, other key
	file := f.file("n", protocol.Link{})
	signed := must(t)(SignLicence(rogue, file))
	if _, err := ParseLicence(signed, f.kr); !errors.Is(err, license.ErrBadSignature) {
		t.Fatalf("got %v, want a bad signature", err)
	}
	// The outer file genuine, the licence inside it the owner's.
	lic := must(t)(rogue.Sign(license.TypeLicense, mustParse(t, f).Doc))
	file.License = lic
	signed = must(t)(SignLicence(f.portal, file))
	_, err := ParseLicence(signed, f.kr)
	if !errors.Is(err, license.ErrBadSignature) || !strings.Contains(err.Error(), "the licence inside") {
		t.Fatalf("got %v, want the inner licence refused", err)
	}
}

func mustParse(t *testing.T, f *fixture) *Licence {
	t.Helper()
	l, err := ParseLicence(must(t)(SignLicence(f.portal, f.file("n", protocol.Link{}))), f.kr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLicenceValidate(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		edit func(*Licence)
		want string
	}{
		{"horizon before time", func(l *Licence) { l.Horizon = l.Time.Add(-1) }, "is not after its time"},
		{"no device", func(l *Licence) { l.Device = "" }, "bound to no appliance"},
		{"link without sequence", func(l *Licence) { l.Link = "abc" }, "an activation has neither"},
		{"no nonce", func(l *Licence) { l.Nonce = "" }, "nonce"},
		{"another PBX's licence inside", func(l *Licence) { l.PBXID = "pbx-other" }, `it is for PBX "pbx-42"`},
		{"horizon in year 2226", func(l *Licence) { l.Horizon = l.Time.AddDate(200, 0, 0) }, "outside the years"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := f.file("n", protocol.Link{})
			tc.edit(&l)
			_, err := ParseLicence(must(t)(SignLicence(f.portal, l)), f.kr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestLicenceCheck walks the chain: activation, a renewal, and every way
// a file can fail to continue what the appliance holds.
func TestLicenceCheck(t *testing.T) {
	f := newFixture(t)
	parse := func(l Licence) *Licence {
		t.Helper()
		p, err := ParseLicence(must(t)(SignLicence(f.portal, l)), f.kr)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	act := parse(f.file("nonce-activate", protocol.Link{}))
	fresh := Holder{Device: f.device.KeyID(), Fingerprint: "fp-this-machine-0123456789", Outstanding: []string{"nonce-activate"}}
	if err := act.Check(fresh); err != nil {
		t.Fatalf("activation file refused: %v", err)
	}
	held := Holder{Device: fresh.Device, Fingerprint: fresh.Fingerprint, PBXID: "pbx-42", Revision: 7,
		Chain: act.Next(), Outstanding: []string{"nonce-report"}}
	renewal := parse(f.file("nonce-report", held.Chain))
	if err := renewal.Check(held); err != nil {
		t.Fatalf("renewal refused: %v", err)
	}
	after := held
	after.Chain, after.Outstanding, after.Issued = renewal.Next(), nil, renewal.Time

	for _, tc := range []struct {
		name string
		file *Licence
		h    Holder
		want string
	}{
		{"another appliance", act, Holder{Device: f.other.KeyID(), Fingerprint: fresh.Fingerprint},
			"this licence file is for appliance " + f.device.KeyID() + ", this is " + f.other.KeyID()},
		{"device key copied to another machine", act, Holder{Device: fresh.Device, Fingerprint: "fp-clone-9999999999"},
			"this licence file is for machine fp-this-mach…, this is machine fp-clone-999…"},
		{"installed twice", renewal, after, "already installed"},
		{"activation file replayed", parse(func() Licence {
			l := f.file("nonce-activate", protocol.Link{})
			l.Time = testNow.Add(-time.Hour)
			return l
		}()), after, "older than the one installed (issued 2026-11-27T11:00:00Z, the installed one 2026-11-27T12:00:00Z)"},
		{"renewal replayed after the next", renewal, func() Holder {
			h := after
			h.Chain = h.Chain.Next("a later file")
			return h
		}(), "older than the one installed (chain sequence 2 < 3)"},
		{"answers nothing outstanding", parse(f.file("nonce-elsewhere", held.Chain)), held, "is not waiting for"},
		{"continues another link", parse(f.file("nonce-report", protocol.Link{Digest: "forked", Seq: held.Chain.Seq})), held,
			"continues the chain from link forked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.file.Check(tc.h)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}

	older := f.file("nonce-report", held.Chain)
	doc := *act.Doc
	doc.Revision = 6
	older.License = must(t)(f.portal.Sign(license.TypeLicense, doc))
	if err := parse(older).Check(held); err == nil || !strings.Contains(err.Error(), "older than the one installed (revision 6 < 7)") {
		t.Fatalf("an older revision: got %v", err)
	}
}

func TestReportRoundTrip(t *testing.T) {
	f := newFixture(t)
	signed := must(t)(SignReport(f.device, f.report(protocol.Link{Digest: "abc", Seq: 1})))
	kid, err := ReportDevice(signed)
	if err != nil || kid != f.device.KeyID() {
		t.Fatalf("ReportDevice = %q, %v", kid, err)
	}
	r, err := ParseReport(signed, f.device.Public())
	if err != nil {
		t.Fatal(err)
	}
	if r.Device != f.device.KeyID() || r.Peak[license.UCPremium] != 6 {
		t.Fatalf("parsed %+v", r)
	}
	// Another appliance's key, or one of its reports, does not pass for this one's.
	if _, err := ParseReport(signed, f.other.Public()); !errors.Is(err, license.ErrUnknownSigner) {
		t.Fatalf("verified with another device key: %v", err)
	}
	bad := f.report(protocol.Link{Digest: "abc", Seq: 1})
	bad.Peak = license.Counts{"uc-gold": 1}
	if _, err := ParseReport(must(t)(SignReport(f.device, bad)), f.device.Public()); err == nil || !strings.Contains(err.Error(), "peak") {
		t.Fatalf("an unknown profile in the peak: %v", err)
	}
}

func TestArmour(t *testing.T) {
	f := newFixture(t)
	signed := must(t)(SignLicence(f.portal, f.file("n", protocol.Link{})))
	text := Armour(KindLicence, []Header{{"PBX", "acme (pbx-42)"}, {"Horizon", "2026-12-27"}}, signed)
	for _, line := range strings.Split(text, "\n") {
		if len(line) > 80 {
			t.Fatalf("line of %d characters: %q", len(line), line)
		}
	}
	quoted := "Hi, here is the file:\r\n" + strings.ReplaceAll(strings.ReplaceAll(text, "\n", "\r\n"), "\r\n", "\r\n>  ") + "\r\nBye"
	for name, in := range map[string]string{
		"as written": text, "bare": signed, "in a quoted mail with CRLF": quoted, "indented": strings.ReplaceAll(text, "\n", "\n    "),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Unarmour(in, KindLicence)
			if err != nil || got != signed {
				t.Fatalf("Unarmour = %v; same: %v", err, got == signed)
			}
		})
	}
	for _, tc := range []struct {
		name, in string
		want     error
		text     string
	}{
		{"cut before its end", text[:len(text)/2], license.ErrTruncated, "before its END line"},
		{"another kind", strings.ReplaceAll(text, KindLicence, KindReport), license.ErrWrongType, `"PBX OFFLINE USAGE REPORT" block`},
		{"empty", "  \n", license.ErrTruncated, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unarmour(tc.in, KindLicence)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.text)
			}
		})
	}
}
