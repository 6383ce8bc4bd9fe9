package offline

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// The short form of a usage report is the same report for a QR code, as
// the short request is (short.go): binary fields in base32 after
// ReportPrefix, signed by the device key. It names no device: the portal
// verifies it with the key of the appliance the PBX is bound to. It holds
// no secret: usage, the chain position and the licence held.
//
//	version        1 byte (shortVersion)
//	time           8 bytes, Unix seconds
//	nonce, PBX id  strings
//	revision       8 bytes
//	digest, link   strings
//	sequence       8 bytes
//	state          string
//	usage, peak, overuse   counts: 1 byte, bit i set for shortProfiles[i] counted, then each count as a uvarint
//	agent version  string
//	signature      64 bytes: Ed25519(device key, shortReportContext ‖ the fields above)

// ReportPrefix begins the short form of a usage report.
const ReportPrefix = "PBX-REPORT:"

const shortReportContext = "pbx-agent offline report short form v1\x00"

// SignShortReport writes the short form of r signed by the device key.
// The same report gives the same text every time.
func SignShortReport(dev *license.Signer, r Report) (string, error) {
	var w shortWriter
	w.buf = append(w.buf, shortVersion)
	w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(r.Time.Unix()))
	w.str(r.Nonce)
	w.str(r.PBXID)
	w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(r.Revision))
	w.str(r.Digest)
	w.str(r.Link)
	w.buf = binary.BigEndian.AppendUint64(w.buf, r.Seq)
	w.str(r.State)
	for _, c := range []license.Counts{r.Usage, r.Peak, r.Overuse} {
		w.counts(c)
	}
	w.str(r.AgentVersion)
	if w.err != nil {
		return "", fmt.Errorf("writing the short form of the usage report: %w", w.err)
	}
	sig := dev.SignMessage(append([]byte(shortReportContext), w.buf...))
	return ReportPrefix + shortEncoding.EncodeToString(append(w.buf, sig...)), nil
}

// shortProfiles are the profiles a short report counts, by their bit in
// its counts' first byte: fixed for this version of the format, as a
// profile's name would take ten times the room.
var shortProfiles = []license.Profile{license.PBXBasic, license.UCEssential, license.UCBusiness,
	license.UCPremium, license.UCWizyconf, license.PBXService}

// counts writes which profiles c counts, then their counts in the order
// of shortProfiles, so one report always gives one text.
func (w *shortWriter) counts(c license.Counts) {
	var mask byte
	var values []byte
	for i, p := range shortProfiles {
		if n, ok := c[p]; ok {
			if n < 0 {
				w.err = fmt.Errorf("profile %s: negative count %d", p, n)
				return
			}
			mask |= 1 << i
			values = binary.AppendUvarint(values, uint64(n))
		}
	}
	for p := range c {
		if !slices.Contains(shortProfiles, p) {
			w.err = fmt.Errorf("profile %q has no place in the short form", p)
			return
		}
	}
	w.buf = append(append(w.buf, mask), values...)
}

// IsShortReport reports whether text, as carried, holds the short form
// of a usage report rather than a report file.
func IsShortReport(text string) bool { return findShort(text, ReportPrefix) >= 0 }

// ParseShortReport verifies the short form of a usage report with the
// device key dev and checks its content, as ParseReport does a report
// file. Text around it, line breaks, spaces and lower case are undone,
// as for a short request. Refusals are *license.Error values.
func ParseShortReport(text string, dev ed25519.PublicKey) (*Report, error) {
	const doc = docReport + " (short form)"
	encoded, ok := shortText(text, ReportPrefix)
	if !ok {
		return nil, &license.Error{Doc: doc, Kind: license.ErrWrongType, Detail: "it holds no " + ReportPrefix + " text"}
	}
	raw, err := shortEncoding.DecodeString(encoded)
	if err != nil {
		return nil, &license.Error{Doc: doc, Kind: license.ErrCorrupted, Detail: fmt.Sprintf("it is not base32 text: %v", err),
			Fix: "scan the QR code again, or carry the report file instead"}
	}
	rd := shortReader{buf: raw}
	if v := rd.byte(); rd.err == nil && v != shortVersion {
		return nil, &license.Error{Doc: doc, Kind: license.ErrInvalid,
			Detail: fmt.Sprintf("short form version %d is not the one this program reads (%d)", v, shortVersion),
			Fix:    "carry the report file instead, or upgrade the portal tools"}
	}
	r := Report{Version: Version, Time: time.Unix(int64(rd.uint64()), 0).UTC(), Nonce: rd.str(), PBXID: rd.str()}
	r.Revision = int64(rd.uint64())
	r.Digest, r.Link = rd.str(), rd.str()
	r.Seq = rd.uint64()
	r.State = rd.str()
	r.Usage, r.Peak, r.Overuse = rd.counts(), rd.counts(), rd.counts()
	r.AgentVersion = rd.str()
	signed := raw[:min(rd.off, len(raw))]
	sig := rd.bytes(ed25519.SignatureSize)
	switch {
	case rd.bad != "":
		return nil, invalid(doc, "%s", rd.bad)
	case rd.err != nil:
		return nil, &license.Error{Doc: doc, Kind: license.ErrTruncated, Detail: fmt.Sprintf("it stops early (%d bytes)", len(raw)),
			Fix: "scan the whole QR code again, or carry the report file instead"}
	case len(raw) != rd.off:
		return nil, invalid(doc, "%d bytes follow its signature", len(raw)-rd.off)
	}
	if len(dev) != ed25519.PublicKeySize || !ed25519.Verify(dev, append([]byte(shortReportContext), signed...), sig) {
		return nil, &license.Error{Doc: doc, Kind: license.ErrBadSignature,
			Detail: fmt.Sprintf("it is not signed by device key %q", protocol.DeviceKeyID(dev)),
			Fix:    "it was made by another appliance, or altered on the way"}
	}
	if err := r.validate(doc); err != nil {
		return nil, err
	}
	r.Device = protocol.DeviceKeyID(dev)
	return &r, nil
}

// counts reads what shortWriter.counts wrote; nil for no profile, as a
// report file omits them.
func (rd *shortReader) counts() license.Counts {
	mask := rd.byte()
	if rd.err != nil || mask == 0 {
		return nil
	}
	if mask>>len(shortProfiles) != 0 {
		rd.bad, rd.err = fmt.Sprintf("unknown profile bits %#x in its counts", mask), errShortEnd
		return nil
	}
	c := license.Counts{}
	for i, p := range shortProfiles {
		if mask&(1<<i) == 0 {
			continue
		}
		v, size := binary.Uvarint(rd.buf[rd.off:])
		switch {
		case size == 0:
			rd.err = errShortEnd
			return nil
		case size < 0 || v > 1<<31:
			rd.bad, rd.err = fmt.Sprintf("profile %s: count out of range", p), errShortEnd
			return nil
		}
		rd.off += size
		c[p] = int(v)
	}
	return c
}
