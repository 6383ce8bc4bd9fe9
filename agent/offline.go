package agent

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/identity"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// An air-gapped PBX never reaches its portal: it is activated and renewed
// by files an admin carries (pkg/offline). The daemon writes them with its
// device key and checks what comes back, as it does online, and keeps the
// exchange in its state:
//
//   - the activation request or usage report written and not yet answered,
//     so that asking again re-emits the same file (same nonce): a file lost
//     on the way costs nothing, and the portal answers it with the same
//     licence file instead of forking the chain;
//   - the last licence file installed: its signed time and horizon rule
//     the lifecycle until a portal answer supersedes it. The horizon plays
//     the part of the heartbeat tolerance and the offline grace at once:
//     the PBX is active until it, then lapses as an offline one does;
//   - the peak of users counted since that file, for the next report.
//
// The licence clock is the same as online: the high-water of the portal's
// signed times (each file's time is a floor) and the boot time elapsed,
// persisted, so a clock set back never extends a horizon.

// offlineState is the file exchange in the state file.
type offlineState struct {
	Request      string         `json:"request,omitempty"`       // the activation request outstanding, compact
	RequestNonce string         `json:"request_nonce,omitempty"` // its nonce
	RequestKey   string         `json:"request_key,omitempty"`   // the id (jti) of the PBX key it carries
	Report       string         `json:"report,omitempty"`        // the usage report outstanding, compact
	ReportNonce  string         `json:"report_nonce,omitempty"`
	File         string         `json:"file,omitempty"` // the last licence file installed, compact; verified at each load
	Peak         license.Counts `json:"peak,omitempty"` // the most users per profile since File was installed
}

// outstanding are the nonces a licence file may answer.
func (o offlineState) outstanding() []string {
	var n []string
	for _, s := range []string{o.RequestNonce, o.ReportNonce} {
		if s != "" {
			n = append(n, s)
		}
	}
	return n
}

// errFileSetup: what the file exchange needs is not configured.
var errFileSetup = fmt.Errorf("%w: it cannot exchange files with its portal until its configuration is fixed", apitype.ErrRefusedLocally)

// errOfflineNoDevice: a licence file arrived before any request was made here.
var errOfflineNoDevice = fmt.Errorf("%w: it has written no offline activation request: run pbx-agent activate --offline first, "+
	"carry its request to the portal, and install the licence file the portal answers with", apitype.ErrRefusedLocally)

// fileSetupErr is the setup's problems that keep the file exchange from
// working: the portal keyring and the model. portal.url is not one: an
// air-gapped PBX has none.
func (s setup) fileSetupErr() error {
	var p problems
	for _, e := range s.problems {
		if e.Key != "portal.url" {
			p = append(p, e)
		}
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

// offlineRequest validates a pasted key and writes the device-signed
// activation request to carry to the portal. An outstanding request for
// the same key is written again, unchanged.
func (l *licence) offlineRequest(raw string) (apitype.OfflineFile, error) {
	l.exchangeMu.Lock()
	defer l.exchangeMu.Unlock()
	if l.fileSetupErr != nil {
		return apitype.OfflineFile{}, fmt.Errorf("%w: %v", errFileSetup, l.fileSetupErr)
	}
	now := l.clock.Now()
	key, err := license.ParseKey(raw, l.trust.Keyring(), license.KeyCheck{Now: now, Model: l.env.model})
	if err != nil {
		return apitype.OfflineFile{}, err
	}
	l.mu.Lock()
	held, st, device := l.doc, l.st, l.device
	deleted := l.verdictLocked(now).State == license.Deleted
	l.mu.Unlock()
	if held != nil && !deleted && held.PBX.ID != key.PBX.ID {
		return apitype.OfflineFile{}, fmt.Errorf("%w: this appliance already holds PBX %s (%s); it can hold one PBX",
			apitype.ErrRefusedLocally, held.PBX.ID, held.PBX.Name)
	}
	if st.Offline.Request != "" && st.Offline.RequestKey == key.ID && device != nil {
		out := apitype.OfflineFile{File: armourRequest(st.Offline.Request, key.PBX), Again: true}
		if req, err := offline.ParseRequest(st.Offline.Request); err == nil {
			out.Short = l.shortRequest(device, *req, key.ID)
		}
		return out, nil
	}
	device, err = l.ensureDevice()
	if err != nil {
		return apitype.OfflineFile{}, err
	}
	fingerprint, err := identity.Fingerprint(l.env.root, key.PBX.ID, l.env.identity.Serial)
	if err != nil {
		return apitype.OfflineFile{}, err
	}
	req := offline.Request{Time: now, Nonce: newNonce(), Key: license.NormalizeKey(raw), DeviceKey: device.Public(),
		Fingerprint: fingerprint, Model: l.env.model, Serial: l.env.identity.Serial,
		Overrides: l.identityOverrides(), AgentVersion: l.env.version}
	signed, err := offline.SignRequest(device, req)
	if err != nil {
		return apitype.OfflineFile{}, err
	}
	// Kept before it is shown: a licence file can only answer a request
	// the state remembers.
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.st
	next.Offline.Request, next.Offline.RequestNonce, next.Offline.RequestKey = signed, req.Nonce, key.ID
	if err := l.commitLocked(next, l.doc); err != nil {
		return apitype.OfflineFile{}, err
	}
	l.env.audit(l.clock.Now(), auditOfflineRequest, map[string]any{"pbx": key.PBX.ID, "name": key.PBX.Name, "device": device.KeyID()})
	l.env.log.Info("offline activation request written", "pbx", key.PBX.ID, "name", key.PBX.Name)
	return apitype.OfflineFile{File: armourRequest(signed, key.PBX), Short: l.shortRequest(device, req, key.ID)}, nil
}

// shortRequest is the short form of req for a QR code, or "" when it
// cannot be made (a field too long): the file is then the only form.
// Signing is deterministic, so a request written again has the same one.
func (l *licence) shortRequest(device *license.Signer, req offline.Request, keyID string) string {
	short, err := offline.SignShortRequest(device, req, keyID)
	if err != nil {
		l.env.log.Warn("no QR code for the activation request: the file alone is carried", "err", err)
		return ""
	}
	return short
}

// identityOverrides are the identity keys set by configuration, reported
// to the portal.
func (l *licence) identityOverrides() []string {
	var o []string
	if l.env.identity.Model != "" {
		o = append(o, "identity.model")
	}
	if l.env.identity.Serial != "" {
		o = append(o, "identity.serial")
	}
	return o
}

func armourRequest(compact string, pbx license.PBX) string {
	return offline.Armour(offline.KindRequest, []offline.Header{
		{Name: "PBX", Value: pbxLabel(pbx)},
		{Name: "Carry-To", Value: "the portal: pbx-portal-sim pbx offline-activate " + pbxRef(pbx)},
	}, compact)
}

func pbxLabel(p license.PBX) string {
	if p.Name == "" {
		return p.ID
	}
	return fmt.Sprintf("%s (%s)", p.Name, p.ID)
}

func pbxRef(p license.PBX) string {
	if p.Name == "" {
		return p.ID
	}
	return p.Name
}

// installLicenceFile checks an offline licence file (signature, binding to
// this appliance, the request or report it answers, the chain it
// continues, the licence revision) and installs it: the state is written
// (temp file, fsync, rename) before anything of it is used.
func (l *licence) installLicenceFile(text string, then func()) (*offline.Licence, error) {
	l.exchangeMu.Lock()
	defer l.exchangeMu.Unlock()
	if l.fileSetupErr != nil {
		return nil, fmt.Errorf("%w: %v", errFileSetup, l.fileSetupErr)
	}
	compact, err := offline.Unarmour(text, offline.KindLicence)
	if err != nil {
		return nil, err
	}
	f, err := offline.ParseLicence(compact, l.trust.Keyring())
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	device, held, st, installed := l.device, l.doc, l.st, l.ans.offline
	deleted := l.verdictLocked(l.clock.Now()).State == license.Deleted
	l.mu.Unlock()
	if device == nil {
		return nil, errOfflineNoDevice
	}
	fingerprint, err := identity.Fingerprint(l.env.root, f.PBXID, l.env.identity.Serial)
	if err != nil {
		return nil, err
	}
	h := offline.Holder{Device: device.KeyID(), Fingerprint: fingerprint, Chain: st.Chain, Outstanding: st.Offline.outstanding()}
	if held != nil && !deleted {
		h.PBXID, h.Revision = held.PBX.ID, held.Revision
	}
	if installed != nil {
		h.Issued = installed.Time
	}
	if err := f.Check(h); err != nil {
		return nil, err
	}
	first := f.Activation()
	doc, err := l.acceptLicense(f.License, f.PBXID, first || held == nil || deleted)
	if err != nil {
		return nil, err
	}
	// The portal was at least at the file's time: the licence clock never
	// goes back behind it, whatever the machine's clock says.
	l.clock.Floor(f.Time)

	l.mu.Lock()
	now := l.clock.Now()
	var next persisted
	if first {
		next = persisted{License: f.License, PBX: &doc.PBX, ActivatedAt: now, Chain: f.Next(),
			State: l.st.State, Fingerprint: fingerprint}
	} else {
		next = l.st
		if next.License != f.License {
			next.Decreases = next.Decreases.NoteRevision(l.doc, doc, now)
			next.License = f.License
		}
		next.Chain = f.Next()
	}
	next.Offline = offlineState{File: compact} // answered: nothing outstanding, the peak counts afresh
	previous := l.doc
	err = l.commitLocked(next, doc)
	if err == nil {
		l.ans.offline, l.ans.restored, l.ans.refusedAt, l.ans.lastError = f, false, time.Time{}, ""
		if first {
			l.ans.lastOK = time.Time{} // the answers kept were of the binding this file replaced
		}
		if first {
			err = l.mark.restart(l.clock.Mark(), doc.Revision, next.Chain.Seq)
		} else {
			l.mark.noteSeq(next.Chain.Seq)
			err = l.mark.write(l.clock.Mark(), doc.Revision)
		}
		if err != nil {
			l.env.log.Error("writing the licence clock's mark", "err", err)
			err = nil // the state is saved: the file is installed
		}
		fields := licenceFields(doc)
		fields["pbx"], fields["horizon"], fields["seq"] = doc.PBX.ID, f.Horizon.UTC().Format(time.RFC3339), next.Chain.Seq
		if previous != nil && !first {
			fields["previous"] = previous.Revision
		}
		l.env.audit(now, auditOfflineInstalled, fields)
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	l.env.log.Info("offline licence file installed", "pbx", doc.PBX.ID, "revision", doc.Revision,
		"horizon", f.Horizon, "users", doc.Counts.String())
	then()
	return f, nil
}

// offlineReport writes the device-signed usage report to carry to the
// portal for a renewed licence file. Until a file answering it is
// installed, the same report is written again: the portal answers a
// replay with the same file.
func (l *licence) offlineReport() (apitype.OfflineFile, error) {
	l.exchangeMu.Lock()
	defer l.exchangeMu.Unlock()
	var used license.Counts
	if l.peers.usage != nil {
		used = l.peers.usage() // before l.mu: the users component takes its own lock
	}
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	doc, st, device := l.doc, l.st, l.device
	if doc == nil || st.Gone != "" || device == nil {
		return apitype.OfflineFile{}, ErrNotActivated
	}
	if st.Offline.Report != "" {
		out := apitype.OfflineFile{File: armourReport(st.Offline.Report, doc.PBX), Again: true}
		if rep, err := offline.ParseReport(st.Offline.Report, device.Public()); err == nil {
			out.Short = l.shortReport(device, *rep)
		}
		return out, nil
	}
	rep := offline.Report{Time: now, Nonce: newNonce(), PBXID: doc.PBX.ID, Revision: doc.Revision,
		Digest: protocol.Digest(st.License), Link: st.Chain.Digest, Seq: st.Chain.Seq,
		State: string(l.verdictLocked(now).State), Usage: used, Peak: maxCounts(st.Offline.Peak, used),
		AgentVersion: l.env.version}
	if used != nil {
		rep.Overuse = admission.Overuse(doc, used)
	}
	signed, err := offline.SignReport(device, rep)
	if err != nil {
		return apitype.OfflineFile{}, err
	}
	// Kept before it is shown, so a crash in between re-emits this one
	// rather than a second report from the same link.
	next := st
	next.Offline.Report, next.Offline.ReportNonce, next.Offline.Peak = signed, rep.Nonce, rep.Peak
	if err := l.commitLocked(next, doc); err != nil {
		return apitype.OfflineFile{}, err
	}
	l.env.audit(now, auditOfflineReport, map[string]any{"pbx": doc.PBX.ID, "seq": rep.Seq, "usage": rep.Usage.String(), "peak": rep.Peak.String()})
	l.env.log.Info("offline usage report written", "pbx", doc.PBX.ID, "seq", rep.Seq)
	return apitype.OfflineFile{File: armourReport(signed, doc.PBX), Short: l.shortReport(device, rep)}, nil
}

// shortReport is the short form of rep for a QR code, or "" when it
// cannot be made: the file is then the only form.
func (l *licence) shortReport(device *license.Signer, rep offline.Report) string {
	short, err := offline.SignShortReport(device, rep)
	if err != nil {
		l.env.log.Warn("no QR code for the usage report: the file alone is carried", "err", err)
		return ""
	}
	return short
}

func armourReport(compact string, pbx license.PBX) string {
	return offline.Armour(offline.KindReport, []offline.Header{
		{Name: "PBX", Value: pbxLabel(pbx)},
		{Name: "Carry-To", Value: "the portal: pbx-portal-sim pbx offline-renew " + pbxRef(pbx)},
	}, compact)
}

// maxCounts is the larger count of each profile of a and b.
func maxCounts(a, b license.Counts) license.Counts {
	if a == nil && b == nil {
		return nil
	}
	m := maps.Clone(a)
	if m == nil {
		m = license.Counts{}
	}
	for p, n := range b {
		m[p] = max(m[p], n)
	}
	return m
}

// notePeak raises the peak of users since the last licence file installed
// to the users counted now, and saves it when it rose: a restart must not
// forget a peak the next report carries. Only once a file was installed.
func (l *licence) notePeak() {
	if l.peers.usage == nil {
		return
	}
	used := l.peers.usage()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.Offline.File == "" || l.doc == nil {
		return
	}
	peak := maxCounts(l.st.Offline.Peak, used)
	if maps.Equal(peak, l.st.Offline.Peak) {
		return
	}
	next := l.st
	next.Offline.Peak = peak
	if err := l.commitLocked(next, l.doc); err != nil {
		l.env.log.Error("saving the peak of users", "err", err)
	}
}

// loadOffline verifies the licence file the state says was installed and
// takes its signed time as a floor of the licence clock. A file that no
// longer verifies, or is not this appliance's, is ignored (the PBX then
// counts from its last portal answer, which lapses it sooner). Called
// from finish, once the device key is loaded and the machine checked.
func (l *licence) loadOffline() {
	if l.st.Offline.File == "" || l.doc == nil || l.device == nil {
		return
	}
	f, err := offline.ParseLicence(l.st.Offline.File, l.trust.Keyring())
	if err == nil && (f.Device != l.device.KeyID() || f.PBXID != l.doc.PBX.ID) {
		err = fmt.Errorf("it is bound to appliance %s for PBX %s, not to this one", f.Device, f.PBXID)
	}
	if err != nil {
		l.env.log.Warn("the offline licence file in the state is not used", "err", err)
		return
	}
	l.clock.Floor(f.Time)
	l.ans.offline = f
}

// errNoPortal is a heartbeat's outcome on an air-gapped PBX with no
// portal.url: no exchange is made, and none failed, so the heartbeat loop
// neither backs off nor warns, and the heartbeat metrics count nothing; a
// refresh asked for by hand says why.
var errNoPortal = fmt.Errorf("%w: no portal.url is set, so this air-gapped PBX makes no heartbeat: "+
	"renew it by file (pbx-agent report --offline)", apitype.ErrUnreachable)

// airGapped reports whether a licence file rules the lifecycle.
func (l *licence) airGapped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.airGappedLocked() != nil
}

// airGappedLocked is the licence file that rules the lifecycle: the one
// installed, while the licence held is the one it carried and no portal
// answer came after it. Callers hold l.mu.
func (l *licence) airGappedLocked() *offline.Licence {
	f := l.ans.offline
	if f == nil || l.doc == nil || l.st.License != f.License || l.ans.lastOK.After(f.Time) {
		return nil
	}
	return f
}

// airGappedFacts turns the document and last success of the lifecycle's
// facts into an air-gapped PBX's: the file's signed time is the last
// contact, and its horizon bounds both the tolerance and the grace.
func airGappedFacts(doc *license.Document, f *offline.Licence) (*license.Document, time.Time) {
	c := *doc
	span := license.Seconds(f.Horizon.Sub(f.Time) / time.Second)
	c.HeartbeatTolerance, c.OfflineGrace = span, span
	return &c, f.Time
}

// offlineNextDue is when the next licence file is due: a week before the
// horizon, or a quarter of the file's span before it when that is shorter.
func offlineNextDue(f *offline.Licence) time.Time {
	margin := min(7*24*time.Hour, f.Horizon.Sub(f.Time)/4)
	return f.Horizon.Add(-margin)
}

// offlineStatus is the file exchange's part of the status at now; nil
// when the PBX never used it.
func (l *licence) offlineStatus(now time.Time) (mode string, st *apitype.OfflineStatus) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, f := l.st.Offline, l.airGappedLocked()
	if f == nil && o.Request == "" && o.Report == "" {
		return "", nil
	}
	st = &apitype.OfflineStatus{}
	switch {
	case o.Request != "" && (l.doc == nil || f == nil):
		st.Outstanding = "request"
		st.Carry = "carry the activation request (pbx-agent activate --offline writes it again) to the portal, then install the licence file it answers with (pbx-agent activate --licence-file FILE)"
	case o.Report != "":
		st.Outstanding = "report"
		st.Carry = "carry the usage report (pbx-agent report --offline writes it again) to the portal, then install the licence file it answers with (pbx-agent activate --licence-file FILE)"
	case f != nil && !now.Before(offlineNextDue(f)):
		st.Carry = "a renewal is due: write a usage report (pbx-agent report --offline) and carry it to the portal"
	case f != nil:
		st.Carry = "nothing until " + offlineNextDue(f).UTC().Format(time.RFC3339) + "; then write a usage report (pbx-agent report --offline) and carry it to the portal"
	}
	if f == nil {
		return "", st
	}
	st.Horizon, st.NextDue, st.LastFile = utc(f.Horizon), utc(offlineNextDue(f)), utc(f.Time)
	return apitype.ModeAirGapped, st
}

// Audit event kinds of the file exchange.
const (
	auditOfflineRequest   = "offline.request"   // an activation request written: pbx, name, device
	auditOfflineInstalled = "offline.installed" // a licence file installed: pbx, revision, horizon, seq, profiles
	auditOfflineReport    = "offline.report"    // a usage report written: pbx, seq, usage, peak
)

// OfflineRequest validates a pasted key and writes the activation request
// an air-gapped PBX carries to its portal.
func (a *Agent) OfflineRequest(_ context.Context, key string) (apitype.OfflineFile, error) {
	return a.lic.offlineRequest(key)
}

// InstallLicenceFile installs an offline licence file the portal answered
// a request or a report with.
func (a *Agent) InstallLicenceFile(_ context.Context, file string) error {
	_, err := a.lic.installLicenceFile(file, func() {
		a.record()
		a.wakeLifecycle()
		a.checkOveruse()
	})
	return err
}

// OfflineReport writes the usage report an air-gapped PBX carries to its
// portal for a renewed licence file.
func (a *Agent) OfflineReport(context.Context) (apitype.OfflineFile, error) {
	return a.lic.offlineReport()
}
