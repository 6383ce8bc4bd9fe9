package portalsim

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// stateSchema versions the persisted store; migrations go in state.Options.
const stateSchema = 1

// stored is the persisted store: everything the portal knows.
type stored struct {
	SignerKeyID string               `json:"signer_kid"`
	ClockOffset time.Duration        `json:"clock_offset_ns"`
	PBXs        []*pbxRecord         `json:"pbxs"`
	Nonces      map[string]time.Time `json:"nonces,omitempty"` // device kid + " " + nonce → forget after
	Faults      Faults               `json:"faults"`
}

// pbxRecord is one PBX as the portal keeps it.
type pbxRecord struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	CreatedAt    time.Time `json:"created_at"`
	KeyID        string    `json:"key_id"` // jti of the current PBX key
	KeyExpiresAt time.Time `json:"key_expires_at"`
	// KeyDigest is offline.KeyDigest of the current key, which checks the
	// proof of a short activation request (a QR code); FormerKeyIDs are the
	// keys it replaced, named in a refusal.
	KeyDigest    []byte   `json:"key_digest,omitempty"`
	FormerKeyIDs []string `json:"former_key_ids,omitempty"`

	// License is the current licence, unsigned; it is signed as it stands
	// (its iat is when the revision was made), so every copy of one
	// revision is the same document with the same digest. Previous is the
	// revision before it, kept for the replay_old fault.
	License  license.Document  `json:"license"`
	Previous *license.Document `json:"previous,omitempty"`

	// Chain is the portal's end of the heartbeat chain with the bound
	// appliance; LastFork the last fork it re-anchored; Cloned when two
	// copies of the appliance were seen, until the partner resolves it.
	Chain    protocol.PortalChain `json:"chain,omitzero"`
	LastFork *ForkRecord          `json:"last_fork,omitempty"`
	Cloned   *time.Time           `json:"cloned,omitempty"`

	Device *binding  `json:"device,omitempty"` // the appliance holding the PBX
	Former []binding `json:"former,omitempty"` // appliances it was re-bound away from

	LastHeartbeat *time.Time     `json:"last_heartbeat,omitempty"`
	LastUsage     license.Counts `json:"last_usage,omitempty"`
	LastOveruse   license.Counts `json:"last_overuse,omitempty"`
	LastState     string         `json:"last_state,omitempty"`
	AgentVersion  string         `json:"agent_version,omitempty"`
	// StatedInterval is the heartbeat interval the last full ok answer
	// stated to the bound appliance: a "same" answer leaves it as it is.
	StatedInterval license.Seconds `json:"stated_interval,omitempty"`

	DeletedAt *time.Time `json:"deleted_at,omitempty"`

	Commands []*commandRecord `json:"commands,omitempty"` // queued and recent (commands.go)

	Offline offlineLedger `json:"offline,omitzero"` // licence files issued by hand (offline.go)
}

// binding is an appliance's device key bound to a PBX.
type binding struct {
	DeviceID     string        `json:"device_id"` // protocol.DeviceKeyID(PublicKey)
	PublicKey    []byte        `json:"public_key"`
	Fingerprint  string        `json:"fingerprint,omitempty"`
	Model        license.Model `json:"model"`
	Serial       string        `json:"serial,omitempty"`
	Overrides    []string      `json:"overrides,omitempty"`
	AgentVersion string        `json:"agent_version,omitempty"`
	BoundAt      time.Time     `json:"bound_at"`
	UnboundAt    *time.Time    `json:"unbound_at,omitempty"`
}

func (r *pbxRecord) deleted() bool { return r.DeletedAt != nil }

// formerDevice reports whether kid was re-bound away from this PBX.
func (r *pbxRecord) formerDevice(kid string) bool {
	return slices.ContainsFunc(r.Former, func(b binding) bool { return b.DeviceID == kid })
}

// validate checks what a hand-edited or damaged state could break.
func (s *stored) validate() error {
	ids := map[string]bool{}
	for i, r := range s.PBXs {
		if r == nil || r.ID == "" || r.Name == "" {
			return fmt.Errorf("PBX #%d has no id or name", i+1)
		}
		if ids[r.ID] {
			return fmt.Errorf("PBX id %q appears twice", r.ID)
		}
		ids[r.ID] = true
		if err := r.License.Validate(); err != nil {
			return fmt.Errorf("PBX %q: %w", r.Name, err)
		}
		bs := r.Former
		if r.Device != nil {
			bs = append([]binding{*r.Device}, bs...)
		}
		for _, b := range bs {
			if len(b.PublicKey) != ed25519.PublicKeySize || protocol.DeviceKeyID(b.PublicKey) != b.DeviceID {
				return fmt.Errorf("PBX %q: device %q has no valid public key", r.Name, b.DeviceID)
			}
		}
	}
	return nil
}

// reindex rebuilds the lookup maps from p.st.
func (p *Portal) reindex() {
	p.byID = make(map[string]*pbxRecord, len(p.st.PBXs))
	p.devices = make(map[string]ed25519.PublicKey)
	for _, r := range p.st.PBXs {
		p.byID[r.ID] = r
		if r.Device != nil {
			p.devices[r.Device.DeviceID] = r.Device.PublicKey
		}
		for _, b := range r.Former {
			p.devices[b.DeviceID] = b.PublicKey
		}
	}
}

// lookup finds a PBX by id, or else by name: the live PBX of that name, or
// the last deleted one. The PBXs it considers are settled at now first.
func (p *Portal) lookup(ref string, now time.Time) (*pbxRecord, error) {
	if r, ok := p.byID[ref]; ok {
		p.settle(r, now)
		return r, nil
	}
	var found *pbxRecord
	for _, r := range p.st.PBXs {
		if r.Name != ref {
			continue
		}
		p.settle(r, now)
		if !r.deleted() {
			return r, nil
		}
		found = r
	}
	if found == nil {
		return nil, errNotFound("the portal has no PBX named %q", ref)
	}
	return found, nil
}

// useNonce records a request's nonce, refusing one seen before. Nonces are
// kept for twice the freshness window: an older request is stale anyway.
func (p *Portal) useNonce(kid, nonce string, now time.Time) error {
	if now.Sub(p.lastPrune) > protocol.FreshnessWindow/5 || now.Before(p.lastPrune) {
		for k, until := range p.st.Nonces {
			if !now.Before(until) {
				delete(p.st.Nonces, k)
			}
		}
		p.lastPrune = now
	}
	k := kid + " " + nonce
	if until, seen := p.st.Nonces[k]; seen && now.Before(until) {
		return &apiError{status: 409, code: protocol.CodeReplay,
			msg: "this request was seen before: sign every attempt afresh with a new nonce"}
	}
	if p.st.Nonces == nil {
		p.st.Nonces = map[string]time.Time{}
	}
	p.st.Nonces[k] = now.Add(2 * protocol.FreshnessWindow)
	p.markDirty()
	return nil
}

// view is the admin API's picture of a record.
func (r *pbxRecord) view() PBX {
	v := PBX{
		ID:            r.ID,
		Name:          r.Name,
		Model:         r.License.PBX.Model,
		Term:          r.License.Term,
		Profiles:      r.License.Counts,
		Revision:      r.License.Revision,
		CreatedAt:     r.CreatedAt,
		KeyID:         r.KeyID,
		KeyExpiresAt:  r.KeyExpiresAt,
		LastHeartbeat: r.LastHeartbeat,
		LastUsage:     r.LastUsage,
		LastOveruse:   r.LastOveruse,
		LastState:     r.LastState,
		AgentVersion:  r.AgentVersion,

		LastOfflineReport: r.Offline.LastReport,
		LastPeak:          r.Offline.LastPeak,
		Deleted:           r.deleted(),
		DeletedAt:         r.DeletedAt,
		Suspended:         r.License.Suspended,
		ZeroSince:         r.License.ZeroSince,
		StopAt:            r.License.StopAt,
		DeleteAt:          r.License.DeleteAt,
		ChainForks:        r.Chain.Forks,
		LastFork:          r.LastFork,
		Cloned:            r.Cloned,

		HigherCoversLower:  r.License.HigherCoversLower,
		SoftOverage:        r.License.SoftOverage,
		OfflineGrace:       r.License.OfflineGrace,
		HeartbeatTolerance: r.License.HeartbeatTolerance,
		LapseGrace:         r.License.LapseGrace,
	}
	if !r.License.TermEnd.IsZero() {
		te := r.License.TermEnd
		v.TermEnd = &te
	}
	if r.Device != nil {
		d := r.Device.view()
		v.Device = &d
	}
	for _, b := range r.Former {
		v.FormerDevices = append(v.FormerDevices, b.view())
	}
	return v
}

func (b binding) view() Device {
	return Device{
		ID:           b.DeviceID,
		Fingerprint:  b.Fingerprint,
		Model:        b.Model,
		Serial:       b.Serial,
		Overrides:    b.Overrides,
		AgentVersion: b.AgentVersion,
		BoundAt:      b.BoundAt,
		UnboundAt:    b.UnboundAt,
	}
}

// Duration is a time.Duration written in JSON as Go text: "90s", "144h0m0s".
type Duration time.Duration

// MarshalJSON writes d as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads text such as "2s" or "1h30m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
