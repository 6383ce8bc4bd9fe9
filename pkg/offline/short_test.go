package offline

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

const testKeyID = "key-0123456789abcdef"

// overridden is r as an appliance with both identity overrides makes it.
func overridden(r Request) Request {
	r.Serial, r.Overrides = "SN-0042", []string{"identity.model", "identity.serial"}
	return r
}

// realistic is a request with fields as long as the agent makes them: a
// 22-character nonce and a 43-character fingerprint.
func realistic(fx *fixture) Request {
	r := fx.request()
	r.Nonce = base64.RawURLEncoding.EncodeToString(make([]byte, 16))
	r.Fingerprint = base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	r.AgentVersion = "1.4.2-rc.1+g0123abcd"
	return r
}

func TestShortRequestRoundTrip(t *testing.T) {
	fx := newFixture(t)
	for name, req := range map[string]Request{"plain": realistic(fx), "overrides": overridden(realistic(fx))} {
		t.Run(name, func(t *testing.T) {
			text := must(t)(SignShortRequest(fx.device, req, testKeyID))
			if again := must(t)(SignShortRequest(fx.device, req, testKeyID)); again != text {
				t.Errorf("the same request gave two short forms:\n%s\n%s", text, again)
			}
			// About 400 characters: a version-12 QR code at error
			// correction M, 73 columns with its quiet zone.
			if len(text) > 420 {
				t.Errorf("short form is %d characters, want about 400", len(text))
			}
			// A phone or a mail may break the line and change the case.
			r, err := ParseShortRequest("  " + strings.ToLower(text[:50]) + "\r\n" + text[50:] + "\n")
			if err != nil {
				t.Fatal(err)
			}
			if r.Key != "" || r.KeyRef == nil || r.KeyRef.ID != testKeyID {
				t.Fatalf("key = %q, ref = %+v; want only the id %s", r.Key, r.KeyRef, testKeyID)
			}
			if r.Nonce != req.Nonce || r.Fingerprint != req.Fingerprint || r.Model != req.Model || r.Serial != req.Serial ||
				strings.Join(r.Overrides, ",") != strings.Join(req.Overrides, ",") || r.AgentVersion != req.AgentVersion ||
				!r.Time.Equal(req.Time) || r.DeviceID() != fx.device.KeyID() {
				t.Errorf("read back\n%+v\nwant\n%+v", r, req)
			}
			if !r.KeyRef.Proves(KeyDigest(req.Key)) {
				t.Error("the proof does not hold for the key it was made with")
			}
			if !r.KeyRef.Proves(KeyDigest(" \"" + req.Key + "\"\n")) {
				t.Error("the proof does not hold for the same key pasted with quotes and spaces")
			}
			if r.KeyRef.Proves(KeyDigest(req.Key + "x")) {
				t.Error("the proof holds for another key")
			}
		})
	}
}

// TestShortRequestPhotographed: whoever photographs the QR code gets the
// key's id and proof, and the device key. Re-signing that content with
// their own device key, to bind the PBX to their appliance, keeps a proof
// made for another device key, which the portal refuses; altering it
// under the original signature breaks the signature.
func TestShortRequestPhotographed(t *testing.T) {
	fx := newFixture(t)
	req := realistic(fx)
	text := must(t)(SignShortRequest(fx.device, req, testKeyID))
	raw, err := shortEncoding.DecodeString(text[len(ShortPrefix):])
	if err != nil {
		t.Fatal(err)
	}
	proof := raw[len(raw)-64-keyProofSize : len(raw)-64]

	// The attacker's own request, with the photographed proof spliced in
	// and signed again with the attacker's device key.
	mine := req
	mine.DeviceKey = fx.other.Public()
	mineText := must(t)(SignShortRequest(fx.other, mine, testKeyID))
	mineRaw, _ := shortEncoding.DecodeString(mineText[len(ShortPrefix):])
	body := append(append([]byte{}, mineRaw[:len(mineRaw)-64-keyProofSize]...), proof...)
	forged := ShortPrefix + shortEncoding.EncodeToString(append(body, fx.other.SignMessage(append([]byte(shortSignContext), body...))...))
	r, err := ParseShortRequest(forged)
	if err != nil {
		t.Fatalf("the forged request should verify (it is well signed): %v", err)
	}
	if r.KeyRef.Proves(KeyDigest(req.Key)) {
		t.Fatal("a proof made for one device key holds for another: a photograph would activate any appliance")
	}

	// The original, with its device key swapped and the signature kept.
	swapped := append([]byte{}, raw...)
	copy(swapped[len(swapped)-64-keyProofSize-32:], fx.other.Public())
	if _, err := ParseShortRequest(ShortPrefix + shortEncoding.EncodeToString(swapped)); !errors.Is(err, license.ErrBadSignature) {
		t.Errorf("device key swapped: err = %v, want a bad signature", err)
	}
}

// TestShortFormInMail: a short form pasted into a mail, wrapped, quoted
// in a reply, between other text, reads as it was written.
func TestShortFormInMail(t *testing.T) {
	fx := newFixture(t)
	text := must(t)(SignShortRequest(fx.device, realistic(fx), testKeyID))
	wrap := func(s, indent string) string {
		var b strings.Builder
		for len(s) > 60 {
			b.WriteString(indent + s[:60] + "\n")
			s = s[60:]
		}
		return b.String() + indent + s + "\n"
	}
	for name, mail := range map[string]string{
		"wrapped":         "Hello,\n\nhere is the code of the PBX:\n\n" + wrap(text, "") + "\nRegards,\nAnna\n",
		"quoted":          "> On Monday, Anna wrote:\n> \n" + wrap(text, "> ") + "> \n> Regards,\n",
		"lower case":      "code: " + strings.ToLower(text) + "\r\n\r\nthanks",
		"on its own line": "PBX-ACTIVATE:\n" + wrap(text[len(ShortPrefix):], ""),
		"a line of text":  wrap(text, "  ") + "Sent from my phone\n",
	} {
		t.Run(name, func(t *testing.T) {
			r, err := ParseShortRequest(mail)
			if err != nil {
				t.Fatal(err)
			}
			if r.KeyRef.ID != testKeyID || r.DeviceID() != fx.device.KeyID() {
				t.Errorf("read %+v", r)
			}
		})
	}
}

func TestShortRequestRefusals(t *testing.T) {
	fx := newFixture(t)
	text := must(t)(SignShortRequest(fx.device, realistic(fx), testKeyID))
	raw, _ := shortEncoding.DecodeString(text[len(ShortPrefix):])
	flip := append([]byte{}, raw...)
	flip[12] ^= 1
	for _, tc := range []struct {
		name, input string
		want        error
		words       string
	}{
		{"empty", "", license.ErrWrongType, "it holds no PBX-ACTIVATE: text"},
		{"a request file", must(t)(SignRequest(fx.device, fx.request())), license.ErrWrongType, "holds no PBX-ACTIVATE:"},
		{"an armoured file around it", Armour(KindRequest, nil, text), license.ErrWrongType, "holds no PBX-ACTIVATE:"},
		{"text on its line", text + " (scanned today)", license.ErrCorrupted, "not base32"},
		{"not base32", ShortPrefix + "ABC!DEF", license.ErrCorrupted, "not base32"},
		{"truncated", text[:len(text)-10], license.ErrTruncated, "stops early"},
		{"trailing bytes", ShortPrefix + shortEncoding.EncodeToString(append(raw, 0, 0, 0, 0, 0)), license.ErrInvalid, "5 bytes follow"},
		{"altered", ShortPrefix + shortEncoding.EncodeToString(flip), license.ErrBadSignature, "not signed by the device key"},
		{"newer version", ShortPrefix + shortEncoding.EncodeToString(append([]byte{2}, raw[1:]...)), license.ErrInvalid, "version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseShortRequest(tc.input)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) {
				t.Errorf("err = %v, want %v saying %q", err, tc.want, tc.words)
			}
		})
	}
}

func TestSignShortRequestRefusesWhatItCannotCarry(t *testing.T) {
	fx := newFixture(t)
	for name, mutate := range map[string]func(*Request){
		"another device key": func(r *Request) { r.DeviceKey = fx.other.Public() },
		"no key":             func(r *Request) { r.Key = "" },
		"unknown override":   func(r *Request) { r.Overrides = []string{"identity.colour"} },
		"long serial":        func(r *Request) { r.Serial = strings.Repeat("s", 256) },
	} {
		r := fx.request()
		mutate(&r)
		if _, err := SignShortRequest(fx.device, r, testKeyID); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

func TestShortReportRoundTrip(t *testing.T) {
	fx := newFixture(t)
	rep := fx.report(protocol.Link{Digest: protocol.Digest("a licence file"), Seq: 3})
	rep.Nonce, rep.AgentVersion = base64.RawURLEncoding.EncodeToString(make([]byte, 16)), "1.4.2-rc.1+g0123abcd"
	rep.Usage = license.Counts{license.UCPremium: 4, license.PBXBasic: 120, license.UCEssential: 0}
	rep.Overuse = license.Counts{license.PBXBasic: 20}
	text := must(t)(SignShortReport(fx.device, rep))
	if again := must(t)(SignShortReport(fx.device, rep)); again != text {
		t.Fatalf("the same report gave two short forms")
	}
	if len(text) > 480 {
		t.Errorf("short form is %d characters, want at most 480 (a version-13 QR code)", len(text))
	}
	r, err := ParseShortReport(strings.ToLower(text[:30])+"\n"+text[30:], fx.device.Public())
	if err != nil {
		t.Fatal(err)
	}
	r.Version, rep.Version = 0, 0
	rep.Device = fx.device.KeyID()
	if !r.Time.Equal(rep.Time) {
		t.Errorf("time %v, want %v", r.Time, rep.Time)
	}
	r.Time = rep.Time
	if fmt.Sprintf("%+v", *r) != fmt.Sprintf("%+v", rep) {
		t.Errorf("read back\n%+v\nwant\n%+v", *r, rep)
	}
	// Another appliance's device key does not verify it.
	if _, err := ParseShortReport(text, fx.other.Public()); !errors.Is(err, license.ErrBadSignature) {
		t.Errorf("verified with another device key: %v", err)
	}
}

func TestShortReportRefusals(t *testing.T) {
	fx := newFixture(t)
	signed := func(build func(w *shortWriter)) string {
		var w shortWriter
		build(&w)
		return ReportPrefix + shortEncoding.EncodeToString(append(w.buf, fx.device.SignMessage(append([]byte(shortReportContext), w.buf...))...))
	}
	head := func(w *shortWriter) {
		w.buf = append(w.buf, shortVersion)
		w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(testNow.Unix()))
		w.str("nonce")
		w.str("pbx-42")
		w.buf = binary.BigEndian.AppendUint64(w.buf, 7)
		w.str("digest")
		w.str("")
		w.buf = binary.BigEndian.AppendUint64(w.buf, 0)
		w.str("active")
	}
	text := must(t)(SignShortReport(fx.device, fx.report(protocol.Link{})))
	for _, tc := range []struct {
		name, input string
		want        error
		words       string
	}{
		{"a request", must(t)(SignShortRequest(fx.device, fx.request(), testKeyID)), license.ErrWrongType, "holds no PBX-REPORT: text"},
		{"truncated", text[:len(text)-8], license.ErrTruncated, "stops early"},
		{"an unknown profile bit", signed(func(w *shortWriter) {
			head(w)
			w.buf = append(w.buf, 1<<6, 1, 0, 0)
			w.str("1.0")
		}), license.ErrInvalid, "unknown profile bits 0x40"},
		{"a count out of range", signed(func(w *shortWriter) {
			head(w)
			w.buf = binary.AppendUvarint(append(w.buf, 1), 1<<40)
			w.buf = append(w.buf, 0, 0)
			w.str("1.0")
		}), license.ErrInvalid, "profile pbx-basic: count out of range"},
		{"no licence held", signed(func(w *shortWriter) {
			w.buf = append(w.buf, shortVersion)
			w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(testNow.Unix()))
			w.str("nonce")
			w.str("pbx-42")
			w.buf = binary.BigEndian.AppendUint64(w.buf, 0)
			w.str("")
			w.str("")
			w.buf = binary.BigEndian.AppendUint64(w.buf, 0)
			w.str("active")
			w.buf = append(w.buf, 0, 0, 0)
			w.str("1.0")
		}), license.ErrInvalid, "names no licence held"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseShortReport(tc.input, fx.device.Public())
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) {
				t.Errorf("err = %v, want %v saying %q", err, tc.want, tc.words)
			}
		})
	}
}

func TestSignShortReportRefusesAProfileItHasNoPlaceFor(t *testing.T) {
	fx := newFixture(t)
	rep := fx.report(protocol.Link{})
	rep.Usage = license.Counts{"uc-gold": 1}
	if _, err := SignShortReport(fx.device, rep); err == nil || !strings.Contains(err.Error(), `"uc-gold" has no place`) {
		t.Fatalf("err = %v", err)
	}
}
