package portalsim

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// An air-gapped PBX is activated and renewed by files an admin carries:
// the appliance's request or usage report in, an offline licence file out.
// A licence file joins the PBX's one chain (pbxRecord.Chain) as an
// answer to a heartbeat does, so a PBX moves between online and offline
// operation freely. What was issued is kept per request or report, so a
// replayed one gets the same file again and never forks the chain.

// OfflineExchange is the body of the offline admin endpoints: the request
// or report as carried, armoured or bare.
type OfflineExchange struct {
	File string `json:"file"`
}

// OfflineLicence is the licence file to carry back, armoured, with what
// the admin needs to know about it.
type OfflineLicence struct {
	PBX      PBX       `json:"pbx"`
	File     string    `json:"file"`
	Revision int64     `json:"revision"`
	Horizon  time.Time `json:"horizon"`
	// Replayed: the request or report was answered before; this is the
	// same file again.
	Replayed bool `json:"replayed,omitempty"`
	// Reanchored: the report came from a state older than the chain's
	// head (a restored or rolled-back appliance); the fork is recorded.
	Reanchored bool `json:"reanchored,omitempty"`
}

// offlineLedger is what the portal keeps of a PBX's offline exchanges.
type offlineLedger struct {
	Issued     []offlineIssue `json:"issued,omitempty"` // newest last, at most maxOfflineIssued
	LastReport *time.Time     `json:"last_report,omitempty"`
	LastPeak   license.Counts `json:"last_peak,omitempty"`
}

// offlineIssue is one licence file issued, by the nonce it answered.
type offlineIssue struct {
	Nonce  string    `json:"nonce"`
	Device string    `json:"device"`
	Digest string    `json:"digest"` // protocol.Digest(File)
	Seq    uint64    `json:"seq"`    // the chain position the file starts: its link's sequence + 1
	File   string    `json:"file"`   // compact
	At     time.Time `json:"at"`
	// What the file holds, to show the admin.
	Revision int64     `json:"revision"`
	Horizon  time.Time `json:"horizon"`
}

// maxOfflineIssued bounds the files remembered per PBX: enough to answer
// a report replayed after a few renewals and to name old links.
const maxOfflineIssued = 16

func (l *offlineLedger) find(device, nonce string) *offlineIssue {
	for i := range l.Issued {
		if l.Issued[i].Device == device && l.Issued[i].Nonce == nonce {
			return &l.Issued[i]
		}
	}
	return nil
}

func (l *offlineLedger) byDigest(digest string) *offlineIssue {
	for i := range l.Issued {
		if l.Issued[i].Digest == digest {
			return &l.Issued[i]
		}
	}
	return nil
}

func (l *offlineLedger) add(is offlineIssue) {
	l.Issued = append(l.Issued, is)
	if n := len(l.Issued); n > maxOfflineIssued {
		l.Issued = slices.Clone(l.Issued[n-maxOfflineIssued:])
	}
}

// offlineActivate binds the PBX {ref} to the appliance whose request the
// body carries, as an online activation does, and answers with a licence
// file that starts the chain.
func (p *Portal) offlineActivate(r *http.Request) (any, error) {
	var in OfflineExchange
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	req, err := parseOfflineRequest(in.File)
	if err != nil {
		return nil, errBadRequest("%v", err)
	}
	kid := req.DeviceID()
	var out OfflineLicence
	err = p.updatePBX(r, false, func(rec *pbxRecord, now time.Time) error {
		if is := rec.Offline.find(kid, req.Nonce); is != nil && rec.Device != nil && rec.Device.DeviceID == kid {
			p.log.Info("offline activation request replayed: the same licence file again", "pbx", rec.Name, "device", kid)
			out = offlineLicenceOut(rec, *is, true, false)
			return nil
		}
		if err := p.checkRequestKey(rec, req, now); err != nil {
			return err
		}
		switch {
		case rec.Device != nil && rec.Device.DeviceID != kid:
			return &apiError{status: http.StatusConflict, code: protocol.CodeBoundElsewhere,
				msg: fmt.Sprintf("PBX %q is bound to another appliance since %s; a hardware replacement needs the portal to re-bind it (pbx-portal-sim pbx rebind %s)",
					rec.Name, rec.Device.BoundAt.Format(time.RFC3339), rec.Name)}
		}
		if rec.Device == nil {
			rec.Device = &binding{DeviceID: kid, PublicKey: req.DeviceKey, Fingerprint: req.Fingerprint, Model: req.Model,
				Serial: req.Serial, Overrides: req.Overrides, AgentVersion: req.AgentVersion, BoundAt: now}
			p.devices[kid] = req.DeviceKey
			p.log.Info("PBX bound by an offline activation request", "pbx", rec.Name, "device", kid)
		}
		rec.AgentVersion = req.AgentVersion
		is, err := p.signOfflineLicence(rec, req.Nonce, protocol.Link{}, now)
		if err != nil {
			return err
		}
		rec.Chain.Restart(is.File)
		rec.Cloned = nil
		rec.Offline.add(is)
		p.markDirty()
		out = offlineLicenceOut(rec, is, false, false)
		return nil
	})
	return out, err
}

// parseOfflineRequest reads an activation request as carried: the file,
// armoured or bare, or the short form its QR code carries.
func parseOfflineRequest(text string) (*offline.Request, error) {
	if offline.IsShortRequest(text) {
		return offline.ParseShortRequest(text)
	}
	compact, err := offline.Unarmour(text, offline.KindRequest)
	if err != nil {
		return nil, err
	}
	return offline.ParseRequest(compact)
}

// checkRequestKey checks the PBX key an activation request carries, or
// names and proves (the short form), against the key rec holds now: a key
// of another PBX, one replaced by a newer one, an expired one or one for
// another model activates nothing.
func (p *Portal) checkRequestKey(rec *pbxRecord, req *offline.Request, now time.Time) error {
	if req.KeyRef != nil {
		return p.checkKeyRef(rec, req, now)
	}
	key, err := license.ParseKey(req.Key, p.keyring, license.KeyCheck{Now: now, Model: req.Model})
	if err != nil {
		return errBadRequest("the key in the request: %v", err)
	}
	switch {
	case key.PBX.ID != rec.ID:
		return errBadRequest("the request carries the key of PBX %q (%s), not of %q: carry it to that PBX's page", key.PBX.Name, key.PBX.ID, rec.Name)
	case rec.deleted():
		return errDeleted(rec)
	case key.ID != rec.KeyID:
		return errBadRequest("this key of PBX %q has been replaced by a newer one: use the newest key, or %s", rec.Name, license.NewKeyFix(key.PBX))
	}
	return nil
}

// checkKeyRef checks the key a short request names by its id against the
// keys the portal issued, and its proof against the digest kept of it.
func (p *Portal) checkKeyRef(rec *pbxRecord, req *offline.Request, now time.Time) error {
	ref := req.KeyRef
	if ref.ID != rec.KeyID {
		for _, o := range p.st.PBXs {
			if o != rec && (o.KeyID == ref.ID || slices.Contains(o.FormerKeyIDs, ref.ID)) {
				return errBadRequest("the request names key %s of PBX %q (%s), not a key of %q: carry it to that PBX's page", ref.ID, o.Name, o.ID, rec.Name)
			}
		}
		if slices.Contains(rec.FormerKeyIDs, ref.ID) {
			return errBadRequest("key %s of PBX %q has been replaced by a newer one: use the newest key, or %s", ref.ID, rec.Name, license.NewKeyFix(rec.License.PBX))
		}
		return errBadRequest("the request names key %s, which this portal never issued: the appliance was given the key of another portal, "+
			"or the code was altered; check the key on the appliance (pbx-agent key inspect)", ref.ID)
	}
	switch {
	case rec.deleted():
		return errDeleted(rec)
	case len(rec.KeyDigest) == 0:
		return errBadRequest("the portal kept no digest of the key of PBX %q, issued before it read short requests: "+
			"carry the request file (pbx-agent activate --offline --out FILE) instead of the QR code, or %s", rec.Name, license.NewKeyFix(rec.License.PBX))
	case !ref.Proves(rec.KeyDigest):
		return errBadRequest("the request names key %s of PBX %q, but its proof of that key does not match the key the portal issued: "+
			"it was not made with that key on the appliance that signed it (made from a photograph of another appliance's code, or altered); "+
			"make a new request on the appliance holding the key", ref.ID, rec.Name)
	case !now.Before(rec.KeyExpiresAt):
		return errBadRequest("the key in the request: PBX key expired: it expired at %s; %s", rec.KeyExpiresAt.UTC().Format(time.RFC3339), license.NewKeyFix(rec.License.PBX))
	case req.Model != rec.License.PBX.Model:
		return errBadRequest("the key in the request: PBX key for the wrong model: it is for a %s, but this appliance is a %s; create the PBX on the portal as a %s, or set identity.model if detection is wrong",
			rec.License.PBX.Model, req.Model, req.Model)
	}
	return nil
}

// offlineRenew answers the usage report the body carries with a renewed
// licence file, after checking that it continues the PBX's chain.
func (p *Portal) offlineRenew(r *http.Request) (any, error) {
	var in OfflineExchange
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	short := offline.IsShortReport(in.File)
	var compact, kid string
	if short {
		// Its shape is checked now, its signature once the PBX's
		// appliance is known: it names no device.
		_, err := offline.ParseShortReport(in.File, make(ed25519.PublicKey, ed25519.PublicKeySize))
		if err != nil && !errors.Is(err, license.ErrBadSignature) {
			return nil, errBadRequest("%v", err)
		}
	} else {
		var err error
		if compact, err = offline.Unarmour(in.File, offline.KindReport); err != nil {
			return nil, errBadRequest("%v", err)
		}
		if kid, err = offline.ReportDevice(compact); err != nil {
			return nil, errBadRequest("%v", err)
		}
	}
	var out OfflineLicence
	err := p.updatePBX(r, false, func(rec *pbxRecord, now time.Time) error {
		if short {
			kid = shortReportDevice(rec, in.File)
		}
		switch {
		case kid == "":
			return errConflict("PBX %q is bound to no appliance: activate it (pbx offline-activate) before renewing it", rec.Name)
		case (rec.Device == nil || rec.Device.DeviceID != kid) && rec.formerDevice(kid):
			return errConflict("PBX %q was re-bound away from appliance %s: that appliance holds it no longer", rec.Name, kid)
		case rec.Device == nil || rec.Device.DeviceID != kid:
			return &apiError{status: http.StatusUnauthorized, code: protocol.CodeUnknownDevice,
				msg: fmt.Sprintf("appliance %s holds no PBX %q: carry the report to the page of the PBX it holds", kid, rec.Name)}
		case rec.deleted():
			return errDeleted(rec)
		}
		parse := func() (*offline.Report, error) { return offline.ParseReport(compact, rec.Device.PublicKey) }
		if short {
			parse = func() (*offline.Report, error) { return offline.ParseShortReport(in.File, rec.Device.PublicKey) }
		}
		rep, err := parse()
		if err != nil {
			return errBadRequest("%v", err)
		}
		if rep.PBXID != rec.ID {
			return errBadRequest("the report is about PBX %s, not %q (%s)", rep.PBXID, rec.Name, rec.ID)
		}
		if is := rec.Offline.find(kid, rep.Nonce); is != nil {
			p.log.Info("usage report replayed: the same licence file again", "pbx", rec.Name, "seq", rep.Seq)
			out = offlineLicenceOut(rec, *is, true, false)
			return nil
		}
		forked, err := p.judgeOfflineLink(rec, rep)
		if err != nil {
			return err
		}
		is, err := p.signOfflineLicence(rec, rep.Nonce, rep.Position(), now)
		if err != nil {
			return err
		}
		if forked {
			rec.LastFork = &ForkRecord{At: now, ApplianceSeq: rep.Seq, PortalSeq: rec.Chain.HeadSeq}
			p.log.Warn("offline chain forked: the report came from a state older than the chain's head (restored or rolled back); re-anchored",
				"pbx", rec.Name, "device", kid, "appliance_seq", rep.Seq, "portal_seq", rec.Chain.HeadSeq)
		}
		rec.Chain.Advance(rep.Position(), is.File, forked)
		t := now
		rec.Offline.LastReport, rec.Offline.LastPeak = &t, rep.Peak
		rec.LastUsage, rec.LastOveruse, rec.LastState, rec.AgentVersion = rep.Usage, rep.Overuse, rep.State, rep.AgentVersion
		rec.Offline.add(is)
		p.markDirty()
		out = offlineLicenceOut(rec, is, false, forked)
		return nil
	})
	return out, err
}

// shortReportDevice is the appliance whose device key signed the short
// report text: the one rec is bound to, or one it was re-bound away from.
// A report none of them signed is the bound one's to refuse, precisely;
// "" when rec is bound to none.
func shortReportDevice(rec *pbxRecord, text string) string {
	if rec.Device != nil {
		if _, err := offline.ParseShortReport(text, rec.Device.PublicKey); err == nil {
			return rec.Device.DeviceID
		}
	}
	for _, b := range rec.Former {
		if _, err := offline.ParseShortReport(text, b.PublicKey); err == nil {
			return b.DeviceID
		}
	}
	if rec.Device != nil {
		return rec.Device.DeviceID
	}
	return ""
}

// judgeOfflineLink checks the link a report carries against the chain. A
// link to the head (or the one before it) continues it; a link to an
// older file the portal issued is a state from the past, recorded as a
// fork as online; a link the portal never issued is refused, naming it.
func (p *Portal) judgeOfflineLink(rec *pbxRecord, rep *offline.Report) (forked bool, err error) {
	switch rec.Chain.Judge(rep.Link) {
	case protocol.LinkAccepted:
		return false, nil
	case protocol.LinkCloned:
		if rec.Cloned == nil {
			t := p.nowLocked()
			rec.Cloned = &t
			p.markDirty()
		}
		return false, errConflict("two copies of the appliance holding PBX %q both advance its chain (the report links to %s, a branch left behind); "+
			"re-bind the PBX (pbx rebind) or, once only one copy is left, resync it (pbx resync)", rec.Name, rep.Link)
	}
	if rec.Cloned != nil {
		return false, errConflict("PBX %q is refused since %s: two copies of its appliance were seen; re-bind or resync it first",
			rec.Name, rec.Cloned.UTC().Format(time.RFC3339))
	}
	if is := rec.Offline.byDigest(rep.Link); is != nil && rep.Link != "" {
		return true, nil
	}
	link := rep.Link
	if link == "" {
		link = "nothing (a chain not started)"
	}
	return false, errConflict("the report links to %s (sequence %d), which the portal never issued to PBX %q: "+
		"the chain is at %s (sequence %d), and the files between are missing on the appliance; "+
		"install the latest licence file on it and carry the report it makes then, or resync the PBX (pbx resync)",
		link, rep.Seq, rec.Name, rec.Chain.Head, rec.Chain.HeadSeq)
}

// signOfflineLicence signs the PBX's current licence into an offline
// licence file for the bound appliance, answering nonce from position at.
// The horizon is the licence's offline grace from now.
func (p *Portal) signOfflineLicence(rec *pbxRecord, nonce string, at protocol.Link, now time.Time) (offlineIssue, error) {
	lic, err := p.signLicense(rec.License)
	if err != nil {
		return offlineIssue{}, err
	}
	horizon := now.Add(rec.License.OfflineGracePeriod())
	file, err := offline.SignLicence(p.signer, offline.Licence{
		PBXID: rec.ID, Device: rec.Device.DeviceID, Fingerprint: rec.Device.Fingerprint,
		Time: now, Horizon: horizon, Nonce: nonce, License: lic, Link: at.Digest, Seq: at.Seq,
	})
	if err != nil {
		return offlineIssue{}, fmt.Errorf("signing the offline licence file: %w", err)
	}
	return offlineIssue{Nonce: nonce, Device: rec.Device.DeviceID, Digest: protocol.Digest(file), Seq: at.Seq + 1,
		File: file, At: now, Revision: rec.License.Revision, Horizon: horizon}, nil
}

// offlineLicenceOut armours a licence file issued for the admin to carry.
func offlineLicenceOut(rec *pbxRecord, is offlineIssue, replayed, reanchored bool) OfflineLicence {
	headers := []offline.Header{
		{Name: "PBX", Value: fmt.Sprintf("%s (%s)", rec.Name, rec.ID)},
		{Name: "Revision", Value: fmt.Sprint(is.Revision)},
		{Name: "Horizon", Value: is.Horizon.UTC().Format(time.RFC3339)},
		{Name: "Install", Value: "pbx-agent activate --licence-file FILE"},
	}
	return OfflineLicence{PBX: rec.view(), File: offline.Armour(offline.KindLicence, headers, is.File),
		Revision: is.Revision, Horizon: is.Horizon, Replayed: replayed, Reanchored: reanchored}
}
