package portalsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// The admin API's JSON documents. Times are RFC 3339 UTC, durations Go text.

// PBX is a PBX as the admin API shows it.
type PBX struct {
	ID            string         `json:"id"`
	Name          string         `json:"name"`
	Model         license.Model  `json:"model"`
	Term          license.Term   `json:"term"`
	TermEnd       *time.Time     `json:"term_end,omitempty"`
	Profiles      license.Counts `json:"profiles"`
	Revision      int64          `json:"revision"`
	CreatedAt     time.Time      `json:"created_at"`
	KeyID         string         `json:"key_id"` // jti of the current PBX key (not the key)
	KeyExpiresAt  time.Time      `json:"key_expires_at"`
	Device        *Device        `json:"device,omitempty"` // the bound appliance
	FormerDevices []Device       `json:"former_devices,omitempty"`
	LastHeartbeat *time.Time     `json:"last_heartbeat,omitempty"`
	LastUsage     license.Counts `json:"last_usage,omitempty"`
	LastOveruse   license.Counts `json:"last_overuse,omitempty"`
	LastState     string         `json:"last_state,omitempty"`
	// The last usage report carried by hand and the peak it reported.
	LastOfflineReport *time.Time     `json:"last_offline_report,omitempty"`
	LastPeak          license.Counts `json:"last_peak,omitempty"`
	AgentVersion      string         `json:"agent_version,omitempty"`
	Deleted           bool           `json:"deleted"`
	DeletedAt         *time.Time     `json:"deleted_at,omitempty"`
	Suspended         bool           `json:"suspended,omitempty"`
	// The zero-licence countdown, as signed in the licence.
	ZeroSince *time.Time `json:"zero_since,omitempty"`
	StopAt    *time.Time `json:"stop_at,omitempty"`
	DeleteAt  *time.Time `json:"delete_at,omitempty"`
	// The heartbeat chain: forks re-anchored (a state rolled back, restored
	// or reverted on the appliance), the last of them, and since when two
	// copies of the appliance are refused (pbx resync lifts it).
	ChainForks int         `json:"chain_forks,omitempty"`
	LastFork   *ForkRecord `json:"last_fork,omitempty"`
	Cloned     *time.Time  `json:"cloned,omitempty"`
	// The licence terms the agent honours besides the counts, as signed:
	// the grace periods in whole seconds, 0 when the agent's default holds.
	HigherCoversLower  bool                 `json:"higher_covers_lower,omitempty"`
	SoftOverage        *license.SoftOverage `json:"soft_overage,omitempty"`
	OfflineGrace       license.Seconds      `json:"offline_grace_seconds,omitempty"`
	HeartbeatTolerance license.Seconds      `json:"heartbeat_tolerance_seconds,omitempty"`
	LapseGrace         license.Seconds      `json:"lapse_grace_seconds,omitempty"`
}

// ForkRecord is a fork of the heartbeat chain the portal re-anchored: the
// appliance came back with a state from the past.
type ForkRecord struct {
	At           time.Time `json:"at"`
	ApplianceSeq uint64    `json:"appliance_seq"` // the sequence the appliance sent
	PortalSeq    uint64    `json:"portal_seq"`    // the portal's head when it did
}

// Device is an appliance bound, or once bound, to a PBX.
type Device struct {
	ID           string        `json:"id"` // device key id
	Fingerprint  string        `json:"fingerprint,omitempty"`
	Model        license.Model `json:"model"`
	Serial       string        `json:"serial,omitempty"`
	Overrides    []string      `json:"overrides,omitempty"`
	AgentVersion string        `json:"agent_version,omitempty"`
	BoundAt      time.Time     `json:"bound_at"`
	UnboundAt    *time.Time    `json:"unbound_at,omitempty"`
}

// CreatePBXRequest is the body of POST /admin/v1/pbxs.
type CreatePBXRequest struct {
	Name     string         `json:"name"`
	Model    string         `json:"model"`             // WPBX-HW or WPBX-VM, any case
	Term     string         `json:"term"`              // monthly, yearly or lifetime
	Profiles license.Counts `json:"profiles"`          // users per profile id
	KeyTTL   *Duration      `json:"key_ttl,omitempty"` // default Config.KeyTTL
}

// CreatePBXResponse carries the new PBX and its key, a bearer credential.
type CreatePBXResponse struct {
	PBX PBX    `json:"pbx"`
	Key string `json:"key"`
}

// PBXList is the body of GET /admin/v1/pbxs.
type PBXList struct {
	PBXs []PBX `json:"pbxs"`
}

// LicenseChange is the body of POST /admin/v1/pbxs/{ref}/licenses: the
// profiles it names get the new counts, the others keep theirs; the licence
// terms it sets (see licenceterms.go) change, those it leaves out stay.
type LicenseChange struct {
	Profiles license.Counts `json:"profiles,omitempty"`
	LicenceTerms
}

// LicenseChangeResult says whether the change made a new revision, with
// the portal's warnings about it (a change less than 2 days before the term
// ends).
type LicenseChangeResult struct {
	PBX      PBX      `json:"pbx"`
	Changed  bool     `json:"changed"`
	Warnings []string `json:"warnings,omitempty"`
}

// RebindResult names the device the PBX was released from, if any, and
// carries the new PBX key that binds the next appliance.
type RebindResult struct {
	PBX           PBX    `json:"pbx"`
	UnboundDevice string `json:"unbound_device,omitempty"`
	Key           string `json:"key"`
}

// Clock is the portal's clock.
type Clock struct {
	Now    time.Time `json:"now"`
	Offset Duration  `json:"offset"` // from the real clock
}

// ClockAdvance is the body of POST /admin/v1/clock/advance.
type ClockAdvance struct {
	By Duration `json:"by"`
}

// ClockSet is the body of PUT /admin/v1/clock.
type ClockSet struct {
	Now time.Time `json:"now"`
}

// adminFunc handles an admin request and returns the value to answer.
type adminFunc func(r *http.Request) (any, error)

// created marks a value answered with 201.
type created struct{ v any }

func (p *Portal) admin(fn adminFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if c, ok := v.(created); ok {
			writeJSON(w, http.StatusCreated, c.v)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

// decode reads a JSON body strictly: a misspelt field is an error.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errBadRequest("reading the JSON body: %v", err)
	}
	return nil
}

// pbxNamePattern: a PBX is named by its domain.
var pbxNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

func (p *Portal) createPBX(r *http.Request) (any, error) {
	var in CreatePBXRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if !pbxNamePattern.MatchString(in.Name) {
		return nil, errBadRequest("PBX name %q: use the PBX's domain name (letters, digits, '.', '-', '_')", in.Name)
	}
	model, err := license.ParseModel(in.Model)
	if err != nil {
		return nil, errBadRequest("%v", err)
	}
	term, err := license.ParseTerm(in.Term)
	if err != nil {
		return nil, errBadRequest("%v", err)
	}
	if err := in.Profiles.Validate(); err != nil {
		return nil, errBadRequest("%v", err)
	}
	ttl := p.keyTTL
	if in.KeyTTL != nil {
		if ttl = time.Duration(*in.KeyTTL); ttl <= 0 {
			return nil, errBadRequest("key_ttl %v: must be positive", ttl)
		}
	}
	var out CreatePBXResponse
	err = p.update(func(now time.Time) error {
		for _, o := range p.st.PBXs {
			if o.Name != in.Name {
				continue
			}
			if p.settle(o, now); !o.deleted() {
				return errConflict("a PBX named %q exists already (%s)", in.Name, o.ID)
			}
		}
		now = now.Truncate(time.Second)
		info := license.PBX{ID: "pbx-" + randomHex(6), Name: in.Name, Model: model}
		key := license.Key{
			Version:   license.KeyVersion,
			ID:        "key-" + randomHex(8),
			PBX:       info,
			Term:      term,
			Counts:    in.Profiles,
			IssuedAt:  now,
			ExpiresAt: now.Add(ttl),
		}
		signed, err := p.signer.Sign(license.TypeKey, key)
		if err != nil {
			return err
		}
		rec := &pbxRecord{
			ID:           info.ID,
			Name:         info.Name,
			CreatedAt:    now,
			KeyID:        key.ID,
			KeyExpiresAt: key.ExpiresAt,
			KeyDigest:    offline.KeyDigest(signed),
			License:      newLicense(info, term, in.Profiles, now),
		}
		rec.License.HeartbeatTolerance = p.tolerance
		if rec.License.Counts == nil {
			rec.License.Counts = license.Counts{}
		}
		if err := rec.License.Validate(); err != nil {
			return errBadRequest("%v", err)
		}
		p.st.PBXs = append(p.st.PBXs, rec)
		p.byID[rec.ID] = rec
		p.markDirty()
		p.log.Info("PBX created", "pbx", rec.Name, "pbx_id", rec.ID, "model", model, "term", term, "profiles", in.Profiles.String())
		out = CreatePBXResponse{PBX: rec.view(), Key: signed}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created{out}, nil
}

func (p *Portal) listPBXs(*http.Request) (any, error) {
	out := PBXList{PBXs: []PBX{}}
	err := p.update(func(now time.Time) error {
		for _, r := range p.st.PBXs {
			p.settle(r, now)
			out.PBXs = append(out.PBXs, r.view())
		}
		return nil
	})
	return out, err
}

func (p *Portal) getPBX(r *http.Request) (any, error) {
	var out PBX
	err := p.updatePBX(r, false, func(rec *pbxRecord, now time.Time) error {
		out = rec.view()
		return nil
	})
	return out, err
}

func (p *Portal) changeLicenses(r *http.Request) (any, error) {
	var in LicenseChange
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if len(in.Profiles) == 0 && in.LicenceTerms.empty() {
		return nil, errBadRequest("name at least one profile or licence term to change")
	}
	var out LicenseChangeResult
	err := p.updatePBX(r, true, func(rec *pbxRecord, now time.Time) error {
		changed, err := applyLicense(rec, now, in.change(now))
		if err != nil {
			return asAPIError(err)
		}
		out = LicenseChangeResult{PBX: rec.view(), Changed: changed}
		if changed {
			p.markDirty()
			p.wakeLocked(rec.ID)
			p.log.Info("licence changed", "pbx", rec.Name, "revision", rec.License.Revision, "profiles", rec.License.Counts.String())
			if w := changeWarning(rec.License, now); w != "" {
				out.Warnings = append(out.Warnings, w)
				p.log.Info("licence change warning", "pbx", rec.Name, "warning", w)
			}
		}
		return nil
	})
	return out, err
}

// SuspendResult is the answer of suspend and resume.
type SuspendResult struct {
	PBX     PBX  `json:"pbx"`
	Changed bool `json:"changed"`
}

// suspendPBX suspends a PBX's licence in a new revision: its appliance
// lapses, and stops after the licence's lapse grace.
func (p *Portal) suspendPBX(r *http.Request) (any, error) {
	return p.setSuspended(r, true)
}

// resumePBX lifts a suspension in a new revision.
func (p *Portal) resumePBX(r *http.Request) (any, error) {
	return p.setSuspended(r, false)
}

func (p *Portal) setSuspended(r *http.Request, suspend bool) (any, error) {
	var out SuspendResult
	err := p.updatePBX(r, true, func(rec *pbxRecord, now time.Time) error {
		changed, err := applyLicense(rec, now, func(d *license.Document) error {
			switch {
			case suspend && !d.Suspended:
				since := now.Truncate(time.Second).UTC()
				d.Suspended, d.SuspendedSince = true, &since
			case !suspend:
				d.Suspended, d.SuspendedSince = false, nil
			}
			return nil
		})
		if err != nil {
			return asAPIError(err)
		}
		if changed {
			p.markDirty()
			p.wakeLocked(rec.ID)
			p.log.Info("licence suspension changed", "pbx", rec.Name, "suspended", suspend, "revision", rec.License.Revision)
		}
		out = SuspendResult{PBX: rec.view(), Changed: changed}
		return nil
	})
	return out, err
}

// updatePBX runs fn under update with the PBX the request's {ref} names
// (settled at now). With live, a deleted PBX is refused instead.
func (p *Portal) updatePBX(r *http.Request, live bool, fn func(rec *pbxRecord, now time.Time) error) error {
	return p.update(func(now time.Time) error {
		rec, err := p.lookup(r.PathValue("ref"), now)
		if err != nil {
			return err
		}
		if live && rec.deleted() {
			return errDeleted(rec)
		}
		return fn(rec, now)
	})
}

// errDeleted refuses a change to a deleted PBX, saying when and why it went.
func errDeleted(r *pbxRecord) error {
	why := ""
	if r.License.DeleteAt != nil && r.DeletedAt != nil && r.DeletedAt.Equal(*r.License.DeleteAt) {
		why = ", at the end of its zero-licence countdown"
	}
	return errConflict("PBX %q was deleted on %s%s", r.Name, r.DeletedAt.UTC().Format(time.RFC3339), why)
}

// asAPIError passes a refusal through and makes anything else a bad request.
func asAPIError(err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return errBadRequest("%v", err)
}

func (p *Portal) rebindPBX(r *http.Request) (any, error) {
	var out RebindResult
	err := p.updatePBX(r, true, func(rec *pbxRecord, now time.Time) error {
		// A re-bind comes with a new key: the old one, which went with the
		// old appliance, binds nothing from now on, and the new appliance
		// is not held back by the old key's expiry. It is signed first, so
		// a failure leaves the PBX as it was.
		key, err := p.issueKeyLocked(rec, now, p.keyTTL)
		if err != nil {
			return err
		}
		if rec.Device != nil {
			old := *rec.Device
			t := now
			old.UnboundAt = &t
			rec.Former = append(rec.Former, old)
			rec.Device = nil
			rec.Cloned, rec.Chain = nil, protocol.PortalChain{Forks: rec.Chain.Forks}
			out.UnboundDevice = old.DeviceID
			p.markDirty()
			p.wakeLocked(rec.ID)
			p.log.Info("PBX released for re-binding", "pbx", rec.Name, "former_device", old.DeviceID)
		}
		out.PBX, out.Key = rec.view(), key
		return nil
	})
	return out, err
}

// resyncPBX lifts the refusal of a cloned appliance once the partner has
// made sure only one copy is left: the chain starts again from the next
// heartbeat of the bound appliance, whatever its link.
func (p *Portal) resyncPBX(r *http.Request) (any, error) {
	var out PBX
	err := p.updatePBX(r, true, func(rec *pbxRecord, now time.Time) error {
		if rec.Cloned != nil || rec.Chain.Head != "" {
			p.log.Info("heartbeat chain resynced: the next heartbeat of the bound appliance starts it again",
				"pbx", rec.Name, "was_cloned", rec.Cloned != nil)
			rec.Cloned, rec.Chain = nil, protocol.PortalChain{Forks: rec.Chain.Forks}
			p.markDirty()
			p.wakeLocked(rec.ID)
		}
		out = rec.view()
		return nil
	})
	return out, err
}

func (p *Portal) deletePBX(r *http.Request) (any, error) {
	var out PBX
	err := p.updatePBX(r, false, func(rec *pbxRecord, now time.Time) error {
		if !rec.deleted() {
			t := now
			rec.DeletedAt = &t
			p.markDirty()
			p.wakeLocked(rec.ID)
			p.log.Info("PBX deleted", "pbx", rec.Name, "pbx_id", rec.ID)
		}
		out = rec.view()
		return nil
	})
	return out, err
}

func (p *Portal) clock(now time.Time) Clock {
	return Clock{Now: now, Offset: Duration(p.st.ClockOffset)}
}

func (p *Portal) getClock(*http.Request) (any, error) {
	var out Clock
	err := p.update(func(now time.Time) error {
		out = p.clock(now)
		return nil
	})
	return out, err
}

func (p *Portal) advanceClock(r *http.Request) (any, error) {
	var in ClockAdvance
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	return p.moveClock(func(now time.Time) time.Duration { return time.Duration(in.By) })
}

func (p *Portal) setClock(r *http.Request) (any, error) {
	var in ClockSet
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Now.IsZero() {
		return nil, errBadRequest(`give the new time as {"now": "2026-11-30T10:00:00Z"}`)
	}
	return p.moveClock(func(now time.Time) time.Duration { return in.Now.Sub(now) })
}

// moveClock shifts the portal's clock by what by returns for the current time.
func (p *Portal) moveClock(by func(now time.Time) time.Duration) (any, error) {
	var out Clock
	err := p.update(func(now time.Time) error {
		d := by(now)
		p.st.ClockOffset += d
		p.markDirty()
		now = p.nowLocked()
		for _, r := range p.st.PBXs {
			p.settle(r, now)
		}
		p.log.Info("portal clock moved", "by", d, "now", now, "offset", p.st.ClockOffset)
		out = p.clock(now)
		return nil
	})
	return out, err
}

func (p *Portal) getFaults(*http.Request) (any, error) {
	var out Faults
	err := p.update(func(time.Time) error {
		out = p.st.Faults
		return nil
	})
	return out, err
}

// patchFaults changes the settings the body names and keeps the others.
func (p *Portal) patchFaults(r *http.Request) (any, error) {
	return p.changeFaults(r, true)
}

// putFaults replaces every setting; those the body leaves out become zero.
func (p *Portal) putFaults(r *http.Request) (any, error) {
	return p.changeFaults(r, false)
}

func (p *Portal) changeFaults(r *http.Request, merge bool) (any, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, errBadRequest("reading the body: %v", err)
	}
	var out Faults
	err = p.update(func(time.Time) error {
		var f Faults
		if merge {
			f = p.st.Faults
		}
		if err := decodeBytes(body, &f); err != nil {
			return err
		}
		if err := f.Validate(); err != nil {
			return errBadRequest("%v", err)
		}
		p.st.Faults = f
		p.markDirty()
		p.log.Info("faults set", "faults", f.String())
		out = f
		return nil
	})
	return out, err
}

func (p *Portal) clearFaults(*http.Request) (any, error) {
	err := p.update(func(time.Time) error {
		p.st.Faults = Faults{}
		p.markDirty()
		p.log.Info("faults cleared")
		return nil
	})
	return Faults{}, err
}

func decodeBytes(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.EOF) {
			return errBadRequest("the body is not JSON: %v", err)
		}
		return errBadRequest("reading the JSON body: %v", err)
	}
	return nil
}
