package license

import (
	"fmt"
	"math"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

// DocumentVersion is the licence document format this build reads and writes.
const DocumentVersion = 1

// Defaults for the periods the portal may leave unset.
const (
	DefaultOfflineGrace       = 30 * 24 * time.Hour
	DefaultLapseGrace         = 14 * 24 * time.Hour
	DefaultHeartbeatTolerance = 10 * time.Minute
)

// Seconds is a duration carried on the wire as whole seconds.
type Seconds int64

// Duration converts s to a time.Duration, saturating at the longest and
// shortest durations rather than wrapping: 9223372037 s is not negative.
func (s Seconds) Duration() time.Duration {
	const limit = Seconds(math.MaxInt64 / int64(time.Second))
	switch {
	case s > limit:
		return math.MaxInt64
	case s < -limit:
		return math.MinInt64
	}
	return time.Duration(s) * time.Second
}

// SoftOverage lets a PBX exceed its counts by a factor until a deadline, as
// the portal may grant after a decrease.
type SoftOverage struct {
	Factor float64   `json:"factor"` // e.g. 1.1 for 10 % more
	Until  time.Time `json:"until"`
}

// Document is the signed licence the portal issues to a bound PBX: what it
// may run, until when, and the countdown once every count is zero. Revisions
// only go forward; the agent refuses an older one.
type Document struct {
	Version  int       `json:"v"`
	PBX      PBX       `json:"pbx"`
	Revision int64     `json:"revision"`
	IssuedAt time.Time `json:"iat"`

	Term    Term      `json:"term"`
	TermEnd time.Time `json:"term_end,omitzero"` // absent for a lifetime term
	Counts  Counts    `json:"profiles"`

	// HigherCoversLower lets a free licence of a higher tier hold a user of
	// a lower one (basic < essential < business < premium).
	HigherCoversLower bool         `json:"higher_covers_lower,omitempty"`
	SoftOverage       *SoftOverage `json:"soft_overage,omitempty"`

	OfflineGrace       Seconds `json:"offline_grace_seconds,omitempty"`
	HeartbeatTolerance Seconds `json:"heartbeat_tolerance_seconds,omitempty"`
	LapseGrace         Seconds `json:"lapse_grace_seconds,omitempty"`

	// Suspended: the portal suspended the licence, and the PBX lapses from
	// SuspendedSince (when the portal leaves it out, from IssuedAt).
	Suspended      bool       `json:"suspended,omitempty"`
	SuspendedSince *time.Time `json:"suspended_since,omitempty"`

	// The countdown the portal runs once every count is zero. It is
	// authoritative: the agent never computes these dates itself.
	ZeroSince *time.Time `json:"zero_since,omitempty"`
	StopAt    *time.Time `json:"stop_at,omitempty"`
	DeleteAt  *time.Time `json:"delete_at,omitempty"`

	// RevokedKeyIDs are portal keys no longer to be trusted.
	RevokedKeyIDs []string `json:"revoked_kids,omitempty"`

	// SignerKeyID is the portal key that signed it; set by ParseDocument, not signed.
	SignerKeyID string `json:"-"`
}

// OfflineGracePeriod is how long the PBX runs without reaching the portal.
func (d *Document) OfflineGracePeriod() time.Duration {
	return orDefault(d.OfflineGrace, DefaultOfflineGrace)
}

// LapseGracePeriod is how long a lapsed PBX runs before it is stopped.
func (d *Document) LapseGracePeriod() time.Duration {
	return orDefault(d.LapseGrace, DefaultLapseGrace)
}

// SuspendedAt is when the suspension began: SuspendedSince, or else the
// issue time of the revision held. Meaningful only when Suspended.
func (d *Document) SuspendedAt() time.Time {
	if d.SuspendedSince != nil {
		return d.SuspendedSince.UTC()
	}
	return d.IssuedAt.UTC()
}

// HeartbeatTolerancePeriod is how long after a heartbeat the PBX still counts as active.
func (d *Document) HeartbeatTolerancePeriod() time.Duration {
	return orDefault(d.HeartbeatTolerance, DefaultHeartbeatTolerance)
}

func orDefault(s Seconds, def time.Duration) time.Duration {
	if s <= 0 {
		return def
	}
	return s.Duration()
}

// DocumentCheck is what a licence document is checked against besides its signature.
type DocumentCheck struct {
	PBXID string // the PBX this agent holds; empty skips the check
}

// ParseDocument verifies a signed licence document and checks its content.
// Refusals are *Error values wrapping ErrTruncated, ErrCorrupted,
// ErrAlgorithm, ErrWrongType, ErrUnknownSigner, ErrBadSignature or ErrInvalid.
func ParseDocument(compact string, kr *Keyring, check DocumentCheck) (*Document, error) {
	v, err := kr.Verify(compact, TypeLicense, "licence")
	if err != nil {
		return nil, err
	}
	d, err := decodeDocument(v.Payload)
	if err != nil {
		return nil, err
	}
	if check.PBXID != "" && d.PBX.ID != check.PBXID {
		return nil, &Error{Doc: "licence", Kind: ErrInvalid,
			Detail: fmt.Sprintf("it is for PBX %q, but this PBX is %q", d.PBX.ID, check.PBXID)}
	}
	d.SignerKeyID = v.KeyID
	return d, nil
}

func decodeDocument(payload []byte) (*Document, error) {
	var d Document
	if err := strictjson.Unmarshal(payload, &d); err != nil {
		return nil, &Error{Doc: "licence", Kind: ErrInvalid, Detail: "its signed content is not a licence document: " + err.Error()}
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Validate checks the rules of the format that a signature cannot: the
// portal signs what it means, and this catches what it did not mean.
func (d *Document) Validate() error {
	invalid := func(format string, args ...any) error {
		return &Error{Doc: "licence", Kind: ErrInvalid, Detail: fmt.Sprintf(format, args...)}
	}
	switch {
	case d.Version > DocumentVersion:
		return &Error{Doc: "licence", Kind: ErrInvalid,
			Detail: fmt.Sprintf("format version %d is newer than this agent reads (%d)", d.Version, DocumentVersion),
			Fix:    "upgrade pbx-agent"}
	case d.Version < 1:
		return invalid("it has no format version")
	case d.PBX.ID == "":
		return invalid("it names no PBX")
	case !d.PBX.Model.Valid():
		return invalid("unknown model %q", d.PBX.Model)
	case d.Revision < 1:
		return invalid("revision %d: revisions start at 1", d.Revision)
	case d.IssuedAt.IsZero():
		return invalid("it has no issue time")
	case !d.Term.Valid():
		return invalid("unknown term %q", d.Term)
	case d.Term != Lifetime && d.TermEnd.IsZero():
		return invalid("a %s term needs a term end", d.Term)
	case d.OfflineGrace < 0 || d.LapseGrace < 0 || d.HeartbeatTolerance < 0:
		return invalid("a grace period is negative")
	}
	if err := d.Counts.Validate(); err != nil {
		return invalid("%v", err)
	}
	times := []namedTime{{"iat", &d.IssuedAt}, {"suspended_since", d.SuspendedSince},
		{"zero_since", d.ZeroSince}, {"stop_at", d.StopAt}, {"delete_at", d.DeleteAt}}
	if !d.TermEnd.IsZero() {
		times = append(times, namedTime{"term_end", &d.TermEnd})
	}
	if so := d.SoftOverage; so != nil && !so.Until.IsZero() {
		times = append(times, namedTime{"soft_overage.until", &so.Until})
	}
	if err := checkTimes(times...); err != nil {
		return invalid("%v", err)
	}
	if so := d.SoftOverage; so != nil && (so.Factor < 1 || so.Factor > 2 || so.Until.IsZero()) {
		return invalid("soft overage factor %g until %v: the factor must be within 1 to 2 and have an end", so.Factor, so.Until)
	}
	if d.SuspendedSince != nil && !d.Suspended {
		return invalid("suspended_since without suspended")
	}
	zero := d.ZeroSince != nil
	if zero != (d.StopAt != nil) || zero != (d.DeleteAt != nil) {
		return invalid("zero_since, stop_at and delete_at come together or not at all")
	}
	if zero && (d.StopAt.Before(*d.ZeroSince) || d.DeleteAt.Before(*d.StopAt)) {
		return invalid("the countdown runs backwards: zero_since %v, stop_at %v, delete_at %v", *d.ZeroSince, *d.StopAt, *d.DeleteAt)
	}
	for _, kid := range d.RevokedKeyIDs {
		if !ValidKeyID(kid) {
			return invalid("revoked key id %q is not a valid key id", kid)
		}
	}
	return nil
}
