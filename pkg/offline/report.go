package offline

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// Report is the usage report an air-gapped appliance carries to the
// portal for a renewed licence file: the usage now, the peak since the
// last file installed, and the link to that file. Signed by the device key
// the PBX is bound to. An appliance re-emits the same report (same nonce)
// until a file answering it is installed, so a report lost on the way
// costs nothing and the portal answers a replay with the same file.
type Report struct {
	Version  int       `json:"v"`
	Time     time.Time `json:"ts"`    // the licence clock at signing
	Nonce    string    `json:"nonce"` // echoed by the licence file answering it
	PBXID    string    `json:"pbx_id"`
	Revision int64     `json:"revision"` // the licence revision held
	Digest   string    `json:"digest"`   // protocol.Digest of the licence held
	// Link and Seq are the appliance's end of the chain: the Digest of the
	// last portal document it accepted (a licence file, or an online
	// answer) and how many it has accepted.
	Link         string         `json:"link"`
	Seq          uint64         `json:"seq"`
	State        string         `json:"state"`
	Usage        license.Counts `json:"usage,omitempty"`   // users per profile now, once counted
	Peak         license.Counts `json:"peak,omitempty"`    // the most users per profile since the last file
	Overuse      license.Counts `json:"overuse,omitempty"` // users beyond the licences now
	AgentVersion string         `json:"agent_version"`

	// Set by ParseReport, not signed.
	Device  string `json:"-"` // the device key id that signed it
	Compact string `json:"-"`
}

// SignReport signs a usage report with the device key.
func SignReport(dev *license.Signer, r Report) (string, error) {
	r.Version = Version
	return dev.Sign(TypeReport, r)
}

// ReportDevice returns the device key id a report claims to be signed
// by, to look the key up with; nothing is verified.
func ReportDevice(compact string) (string, error) {
	if err := checkType(compact, docReport); err != nil {
		return "", err
	}
	kid, _, err := license.PeekHeader(compact)
	return kid, err
}

// ParseReport verifies a usage report with the device key dev and checks
// its content. Refusals are *license.Error values.
func ParseReport(compact string, dev ed25519.PublicKey) (*Report, error) {
	if err := checkType(compact, docReport); err != nil {
		return nil, err
	}
	var r Report
	if err := verifyDevice(compact, TypeReport, docReport, dev, &r); err != nil {
		return nil, err
	}
	if err := r.validate(docReport); err != nil {
		return nil, err
	}
	r.Device, r.Compact = protocol.DeviceKeyID(dev), compact
	return &r, nil
}

func (r *Report) validate(doc string) error {
	if err := checkVersion(doc, r.Version); err != nil {
		return err
	}
	switch {
	case r.PBXID == "":
		return invalid(doc, "it names no PBX")
	case r.Revision < 1 || r.Digest == "":
		return invalid(doc, "it names no licence held (revision %d, digest %q)", r.Revision, r.Digest)
	case (r.Link == "") != (r.Seq == 0):
		return invalid(doc, "link %q and sequence %d: a chain position has both or neither", r.Link, r.Seq)
	}
	if err := checkNonce(doc, r.Nonce); err != nil {
		return err
	}
	if err := checkTime(doc, "ts", r.Time); err != nil {
		return err
	}
	for name, c := range map[string]license.Counts{"usage": r.Usage, "peak": r.Peak, "overuse": r.Overuse} {
		if err := c.Validate(); err != nil {
			return invalid(doc, "%s: %v", name, err)
		}
	}
	return nil
}

// Position is the chain position the report was made at.
func (r *Report) Position() protocol.Link { return protocol.Link{Digest: r.Link, Seq: r.Seq} }

// String names the report for logs and errors.
func (r *Report) String() string {
	return fmt.Sprintf("usage report of PBX %s at chain sequence %d", r.PBXID, r.Seq)
}
