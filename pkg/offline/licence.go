package offline

import (
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

// Licence is the offline licence file: the portal's answer to an
// activation request or a usage report, carried back by hand. It binds the
// signed licence document to one appliance (its device key and
// fingerprint), answers one request or report (its nonce), continues the
// chain from the link that report carried, and holds until Horizon: past
// it without a newer file, the PBX lapses as it does when its portal is
// not reached.
type Licence struct {
	Version     int       `json:"v"`
	PBXID       string    `json:"pbx_id"`
	Device      string    `json:"device"`      // protocol.DeviceKeyID of the appliance bound
	Fingerprint string    `json:"fingerprint"` // that appliance's fingerprint for the PBX
	Time        time.Time `json:"time"`        // the portal's clock at signing
	Horizon     time.Time `json:"horizon"`     // valid until; the next file is due before
	Nonce       string    `json:"nonce"`       // of the request or report answered
	License     string    `json:"license"`     // the signed licence document (license.TypeLicense)
	// Link and Seq echo the chain position of the report answered; empty
	// and 0 for an activation, which starts the chain. The file's own
	// Digest is the next link.
	Link string `json:"link,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`

	// Set by ParseLicence, not signed.
	Doc     *license.Document `json:"-"` // License, verified
	Compact string            `json:"-"` // the file as read
}

// SignLicence signs an offline licence file with a portal key.
func SignLicence(portal *license.Signer, f Licence) (string, error) {
	f.Version = Version
	return portal.Sign(TypeLicence, f)
}

// ParseLicence verifies an offline licence file and the licence document
// it carries against the portal keyring, and checks its content. Whether
// it is for this appliance and continues what it holds is Check's.
// Refusals are *license.Error values.
func ParseLicence(compact string, kr *license.Keyring) (*Licence, error) {
	if err := checkType(compact, docLicence); err != nil {
		return nil, err
	}
	v, err := kr.Verify(compact, TypeLicence, docLicence)
	if err != nil {
		return nil, err
	}
	var f Licence
	if err := strictjson.Unmarshal(v.Payload, &f); err != nil {
		return nil, invalid(docLicence, "its signed content is not an offline licence file: %v", err)
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	doc, err := license.ParseDocument(f.License, kr, license.DocumentCheck{PBXID: f.PBXID})
	if err != nil {
		return nil, fmt.Errorf("the licence inside the %s: %w", docLicence, err)
	}
	f.Doc, f.Compact = doc, compact
	return &f, nil
}

func (f *Licence) validate() error {
	if err := checkVersion(docLicence, f.Version); err != nil {
		return err
	}
	switch {
	case f.PBXID == "":
		return invalid(docLicence, "it names no PBX")
	case f.Device == "" || f.Fingerprint == "":
		return invalid(docLicence, "it is bound to no appliance (device and fingerprint)")
	case f.License == "":
		return invalid(docLicence, "it carries no licence")
	case (f.Link == "") != (f.Seq == 0):
		return invalid(docLicence, "link %q and sequence %d: an activation has neither, a renewal both", f.Link, f.Seq)
	}
	if err := checkNonce(docLicence, f.Nonce); err != nil {
		return err
	}
	if err := checkTime(docLicence, "time", f.Time); err != nil {
		return err
	}
	if err := checkTime(docLicence, "horizon", f.Horizon); err != nil {
		return err
	}
	if !f.Horizon.After(f.Time) {
		return invalid(docLicence, "its horizon %s is not after its time %s",
			f.Horizon.UTC().Format(time.RFC3339), f.Time.UTC().Format(time.RFC3339))
	}
	return nil
}

// Activation reports whether the file answers an activation request
// (it starts the chain) rather than a usage report.
func (f *Licence) Activation() bool { return f.Link == "" }

// Next is the chain position after installing the file.
func (f *Licence) Next() protocol.Link {
	return protocol.Link{Digest: f.Link, Seq: f.Seq}.Next(f.Compact)
}

// Holder is what an appliance holds, as a licence file is checked against.
type Holder struct {
	Device      string // this appliance's device key id
	Fingerprint string // this appliance's fingerprint for the file's PBX
	PBXID       string // the PBX held; empty before activation
	Revision    int64  // the licence revision held; 0 before activation
	Chain       protocol.Link
	Issued      time.Time // the portal's time in the last file installed; zero if none
	// Outstanding are the nonces of the request and report this appliance
	// issued and has not had answered: the file must answer one of them.
	Outstanding []string
}

// Check refuses a file that is not for this appliance or does not continue
// what it holds, saying which and what to do. The order gives the most
// useful error: the wrong appliance before anything about time.
func (f *Licence) Check(h Holder) error {
	refuse := func(fix, format string, args ...any) error {
		return &license.Error{Doc: docLicence, Kind: license.ErrInvalid, Detail: fmt.Sprintf(format, args...), Fix: fix}
	}
	switch {
	case f.Device != h.Device:
		return refuse("carry it to the appliance it was made for, or bring this appliance's own request or report to the portal",
			"this licence file is for appliance %s, this is %s", f.Device, h.Device)
	case f.Fingerprint != h.Fingerprint:
		return refuse("the device key was copied from another machine: activate this one with its own request",
			"this licence file is for machine %s, this is machine %s (same device key)", short(f.Fingerprint), short(h.Fingerprint))
	case h.PBXID != "" && f.PBXID != h.PBXID && !f.Activation():
		return refuse("", "this licence file is for PBX %q, this appliance holds %q", f.PBXID, h.PBXID)
	case h.Chain.Digest == protocol.Digest(f.Compact):
		return refuse("nothing to do", "this licence file is already installed")
	case f.Doc.Revision < h.Revision && f.PBXID == h.PBXID:
		return refuse("install the newest file the portal issued",
			"this file is older than the one installed (revision %d < %d)", f.Doc.Revision, h.Revision)
	case f.Seq < h.Chain.Seq && !f.Activation():
		return refuse("install the newest file the portal issued",
			"this file is older than the one installed (chain sequence %d < %d)", f.Seq+1, h.Chain.Seq)
	case f.Time.Before(h.Issued):
		return refuse("install the newest file the portal issued",
			"this file is older than the one installed (issued %s, the installed one %s)",
			f.Time.UTC().Format(time.RFC3339), h.Issued.UTC().Format(time.RFC3339))
	}
	answers := false
	for _, n := range h.Outstanding {
		answers = answers || n == f.Nonce
	}
	if !answers {
		return refuse("bring the appliance's latest request or report (pbx-agent report --offline prints it again) to the portal and install the file it answers with",
			"this licence file answers a request or report this appliance is not waiting for (nonce %s)", short(f.Nonce))
	}
	if !f.Activation() && (f.Link != h.Chain.Digest || f.Seq != h.Chain.Seq) {
		return refuse("bring the appliance's latest report to the portal",
			"this licence file continues the chain from link %s (sequence %d), not from the %s (sequence %d) this appliance holds",
			short(f.Link), f.Seq, short(h.Chain.Digest), h.Chain.Seq)
	}
	return nil
}
