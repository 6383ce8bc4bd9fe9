// Package apitype is the contract of pbx-agent's local API: the JSON bodies
// of its endpoints, the errors a backend returns and the error codes clients
// branch on. The daemon's core fills these types, the HTTP server
// (agent/localapi) serves them and the CLI reads them; none of the three
// needs another's code for it.
package apitype

import (
	"errors"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/audit"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Status is the body of GET /v1/status. Optional parts are nil or empty when
// they do not apply, and are then left out.
type Status struct {
	State     string          `json:"state"`
	Next      string          `json:"next"`    // what happens next and when, counted down on the licence clock (license.Verdict.WhatNext): shown after the state's name
	Summary   string          `json:"summary"` // one sentence for admins: where the PBX stands and what happens next
	PBX       *PBXStatus      `json:"pbx,omitempty"`
	License   *LicenseStatus  `json:"license,omitempty"`
	Heartbeat HeartbeatStatus `json:"heartbeat"`
	Deadlines Deadlines       `json:"deadlines"`
	SSH       SSHStatus       `json:"ssh"`
	WMS       WMSStatus       `json:"wms"`
	Appliance ApplianceStatus `json:"appliance"`
	Commands  []CommandStatus `json:"commands"`
	Clock     ClockStatus     `json:"clock"`
	Users     UsersStatus     `json:"users"`
	Config    *ConfigStatus   `json:"config,omitempty"` // absent until the configuration is reloaded
	// Listeners are the local API's listeners as the server sees them; the
	// server fills it in, not the Backend.
	Listeners *ListenersStatus `json:"listeners,omitempty"`
	Trust     *TrustStatus     `json:"trust,omitempty"`

	// The portal's calendar and where a deleted PBX went, on the licence
	// clock (license.CalendarAt, the deleted verdict).
	Calendar *CalendarStatus `json:"calendar,omitempty"` // absent when no rule applies
	Deleted  *DeletedStatus  `json:"deleted,omitempty"`  // only in state deleted

	// Mode is ModeAirGapped while the licence held came by file (offline.go);
	// absent for a PBX in touch with its portal. Offline is its exchange.
	Mode    string         `json:"mode,omitempty"`
	Offline *OfflineStatus `json:"offline,omitempty"`
}

// CalendarStatus is what the portal's calendar rules mean now.
type CalendarStatus struct {
	// RenewsOn is the day the term renews and is invoiced (its last day,
	// 00:00 UTC); ChangesUntil the last moment for licence changes made
	// ahead of it (the term end less 2 days). Absent for a lifetime term.
	RenewsOn     *time.Time `json:"renews_on,omitempty"`
	ChangesUntil *time.Time `json:"changes_until,omitempty"`
	// NoDecreasesToday: today (UTC) is the last day of a month, when the
	// portal refuses any decrease of a count; they are taken again from
	// DecreasesFrom.
	NoDecreasesToday bool       `json:"no_decreases_today,omitempty"`
	DecreasesFrom    *time.Time `json:"decreases_from,omitempty"`
}

// DeletedStatus is when and why the PBX left this appliance.
type DeletedStatus struct {
	At *time.Time `json:"at,omitempty"` // on the licence clock; absent when not recorded
	// Rebound: the portal re-bound the PBX to another appliance (an RMA, a
	// move), which holds its licence now.
	Rebound bool `json:"rebound,omitempty"`
}

// ListenersStatus is where the local API listens.
type ListenersStatus struct {
	Socket *ListenerStatus `json:"socket,omitempty"` // listen.socket: the CLI, the WMS
	HTTP   *ListenerStatus `json:"http,omitempty"`   // listen.http: the status page, scrapes; absent when disabled
}

// ListenerStatus is one listener.
type ListenerStatus struct {
	Address string `json:"address"`
	// Systemd: the listener was bound by systemd (pbx-agent.socket) and
	// handed over at start.
	Systemd bool `json:"systemd,omitempty"`
	// Error says why the listener is not bound (another process holds the
	// port); the daemon runs without it and keeps trying.
	Error string `json:"error,omitempty"`
}

// TrustStatus is where the portal keys the agent trusts come from.
type TrustStatus struct {
	// Roots is "embedded" in a release build, whose root keys are in the
	// binary, and "configured" in a development build, which trusts the
	// keys of portal.keyring: anyone with root on the appliance can
	// replace them.
	Roots string             `json:"roots"`
	Keys  []TrustedKeyStatus `json:"keys"`
	// Ignored are the keyring files and keys not trusted, and why.
	Ignored []string `json:"ignored,omitempty"`
}

// TrustedKeyStatus is one portal key of the keyring.
type TrustedKeyStatus struct {
	KeyID       string     `json:"kid"`
	Role        string     `json:"role"`                   // "root", "announced" or "configured"
	AnnouncedBy string     `json:"announced_by,omitempty"` // the root that announced it
	NotAfter    *time.Time `json:"not_after,omitempty"`    // when its announcement ends
	Revoked     bool       `json:"revoked,omitempty"`      // revoked by a licence, or announced by a revoked root
}

// ConfigStatus is how the last reload of the configuration (SIGHUP,
// systemctl reload pbx-agent) went.
type ConfigStatus struct {
	ReloadedAt time.Time `json:"reloaded_at"`
	// RestartNeeded are the keys whose value in the file differs from the
	// running one and that apply only when the daemon restarts
	// (listeners, folders, the portal, ...).
	RestartNeeded []string `json:"restart_needed,omitempty"`
	// Error says why the last reload kept the running configuration (the
	// file does not parse, or a value is invalid).
	Error string `json:"error,omitempty"`
}

// PBXStatus names the PBX.
type PBXStatus struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Model string `json:"model"`
}

// LicenseStatus is the licence held and its use.
type LicenseStatus struct {
	Term     string                   `json:"term"`
	TermEnd  *time.Time               `json:"term_end,omitempty"`
	Revision int64                    `json:"revision"`
	Profiles map[string]ProfileStatus `json:"profiles"`
	// Overuse is, per profile, the users counted beyond the licences (the
	// licences were lowered, or users were added past them); absent when
	// there are none.
	Overuse map[string]int `json:"overuse,omitempty"`
	// SoftOverage is the portal's time-boxed allowance over the counts,
	// while it lasts.
	SoftOverage *SoftOverageStatus `json:"soft_overage,omitempty"`
	// HigherCoversLower: free licences of a higher profile hold users of
	// a lower one (basic < essential < business < premium).
	HigherCoversLower bool `json:"higher_covers_lower,omitempty"`
}

// ProfileStatus is one profile's counts: Used from the last good count of
// users, Reserved for users admitted that no count shows yet.
type ProfileStatus struct {
	Licensed int `json:"licensed"`
	Used     int `json:"used"`
	Reserved int `json:"reserved"`
}

// SoftOverageStatus lets the PBX run over its counts by Factor until Until.
type SoftOverageStatus struct {
	Factor float64   `json:"factor"`
	Until  time.Time `json:"until"`
}

// UsersStatus is how the counting of users goes.
type UsersStatus struct {
	Source    string     `json:"source"`               // e.g. "sqlite /var/lib/wms/users.db"
	CountedAt *time.Time `json:"counted_at,omitempty"` // the last good count; absent before one
	Error     string     `json:"error,omitempty"`      // the last count's error; the last good count stays in force
	// Failures is how many counts failed in a row, since FailingSince;
	// both absent after a good count.
	Failures     int        `json:"failures,omitempty"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
	// Unknown says counting fails and the users on the PBX are not known:
	// no count has succeeded, or the last good one is too old to trust.
	// No new users are admitted until a count succeeds.
	Unknown bool `json:"unknown,omitempty"`
}

// HeartbeatStatus is how the conversation with the portal goes.
type HeartbeatStatus struct {
	LastSuccess *time.Time `json:"last_success,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	// Failures is how many heartbeats failed in a row; absent after a
	// success. The backoff before next grows with it.
	Failures int        `json:"failures,omitempty"`
	Next     *time.Time `json:"next,omitempty"`
}

// Deadlines are the instants at which the state changes by itself; each is
// absent when it does not apply.
type Deadlines struct {
	// StopAt and DeleteAt are the zero-licence countdown signed by the
	// portal: telephony stops at stop_at, the PBX is deleted at delete_at.
	StopAt   *time.Time `json:"stop_at,omitempty"`
	DeleteAt *time.Time `json:"delete_at,omitempty"`
	// OfflineGraceEnd is when new users stop being admitted if the portal
	// is not reached: the last heartbeat plus the offline grace.
	OfflineGraceEnd *time.Time `json:"offline_grace_end,omitempty"`
	// LapseGraceEnd is when telephony stops if the portal is still not
	// reached (or the suspension not lifted): present while offline (as a
	// forecast), lapsed, or stopped for that reason.
	LapseGraceEnd *time.Time `json:"lapse_grace_end,omitempty"`
}

// SSHStatus is the temporary support access.
type SSHStatus struct {
	Open  bool       `json:"open"`
	Port  int        `json:"port,omitempty"`
	Until *time.Time `json:"until,omitempty"`
	// HostKeys are the fingerprints of the host keys support will see.
	HostKeys []string `json:"host_keys,omitempty"`
	// Error is why the access could not be read back, if it could not.
	Error string `json:"error,omitempty"`
	// Tunnel is the portal's tunnel of an access in tunnel mode, where
	// Port is the loopback sshd's; absent in port mode and when closed.
	Tunnel *SSHTunnelStatus `json:"tunnel,omitempty"`
}

// SSHTunnelStatus is the tunnel to the portal that carries support's
// sessions in tunnel mode.
type SSHTunnelStatus struct {
	Open bool `json:"open"`
	// Connected: the portal accepted the tunnel and it is up now; false
	// while the agent dials again after a refusal or a lost connection.
	Connected bool       `json:"connected"`
	Since     *time.Time `json:"since,omitempty"` // when the access opened
	Command   string     `json:"command,omitempty"`
	// Sessions are open now; SessionsTotal every one since the access
	// opened; Refused the streams refused (over the cap).
	Sessions      int `json:"sessions"`
	SessionsTotal int `json:"sessions_total"`
	Refused       int `json:"refused,omitempty"`
	// BytesIn went from the portal to sshd, BytesOut from sshd to the
	// portal, over every session since the access opened.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// LastError is why the tunnel last dropped or was refused.
	LastError string `json:"last_error,omitempty"`
}

// WMSStatus is the PBX's management software.
type WMSStatus struct {
	Version string `json:"version,omitempty"`
	// VersionUnknown says why Version is empty: not installed, upgrades
	// not set up, dpkg's database unreadable.
	VersionUnknown string `json:"version_unknown,omitempty"`
	Upgrade        string `json:"upgrade,omitempty"`
	// Latest is the latest stable WMS the configured repository offers, as
	// apt's verified package lists hold it (docs/wms-upgrade.md, "Latest
	// stable"); LatestUnknown says why it is empty.
	Latest        string `json:"latest,omitempty"`
	LatestUnknown string `json:"latest_unknown,omitempty"`
	// Behind is true when Version and Latest are both known and the
	// installed version is older.
	Behind bool `json:"behind,omitempty"`
}

// CommandStatus is one pending or recent portal command of the current
// PBX. Its times are on the licence clock, as the journal records them.
type CommandStatus struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	State  string `json:"state"`
	Result string `json:"result,omitempty"`
	// ReceivedAt is when a heartbeat answer brought it.
	ReceivedAt time.Time `json:"received_at"`
	// FinishedAt is when it reached its final state (done, failed,
	// refused); absent while it waits or runs.
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// ClockStatus is the licence clock: the time licences are judged by.
type ClockStatus struct {
	Now time.Time `json:"now"`
	// LocalBehind is how far the local clock lags the licence clock, when
	// it does (a clock set back is ignored, and reported here).
	LocalBehind string `json:"local_behind,omitempty"`
	// MarkError is why the licence clock's mark could not be written
	// (state folder read-only, record removed); absent after a good write.
	MarkError string `json:"mark_error,omitempty"`
}

// AdmissionRequest is the body of POST /v1/admission.
type AdmissionRequest struct {
	Profile string `json:"profile"`         // an id, e.g. "uc-premium" (or its name, "UC-Premium")
	Count   *int   `json:"count,omitempty"` // users to add; absent is 1
	DryRun  bool   `json:"dry_run,omitempty"`
}

// MaxAdmissionCount bounds the count of one admission request.
const MaxAdmissionCount = 100000

// Admission is a checked AdmissionRequest, as the Backend gets it.
type Admission struct {
	Profile license.Profile
	Count   int
	DryRun  bool
	Peer    string // who asks, for the audit log: "uid 1001 pid 4242"
	// PeerUID is the asking peer's uid (SO_PEERCRED), which bounds the
	// seats it may hold; nil for a caller inside the daemon.
	PeerUID *uint32
}

// AdmissionAnswer is the body of POST /v1/admission's 200 (allowed) and
// 409 (denied) answers.
type AdmissionAnswer struct {
	Allowed bool `json:"allowed"`
	// Remaining is, when allowed, how many more users of the profile could
	// be admitted after these.
	Remaining *int `json:"remaining,omitempty"`
	// Reason says, when denied, why, and what an admin can do about it.
	Reason string `json:"reason,omitempty"`
}

// AuditLog is the body of GET /v1/audit.
type AuditLog struct {
	Events []audit.Event `json:"events"`
}

// Errors a Backend returns for activation, besides a *license.Error for an
// invalid key.
var (
	// ErrRefused: the portal refused the activation (for example the PBX
	// is bound to another appliance).
	ErrRefused = errors.New("refused by the portal")
	// ErrRefusedLocally: the appliance refused the activation without
	// asking the portal (it holds another PBX). Answered as CodeRefused.
	ErrRefusedLocally = errors.New("refused by this appliance")
	// ErrInvalidKey: the portal refused the key itself (expired, replaced,
	// its PBX unknown or deleted); it comes with ErrRefused. Answered as
	// CodeInvalidKey, like a key the appliance finds invalid: either way
	// the fix is a new key.
	ErrInvalidKey = errors.New("invalid PBX key")
	// ErrUnreachable: the portal could not be reached or answered badly.
	ErrUnreachable = errors.New("portal unreachable")
	// ErrNotActivated: Refresh has nothing to refresh, the PBX holds no
	// licence (never activated, or deleted).
	ErrNotActivated = errors.New("not activated: activate a PBX key first (pbx-agent activate)")
)

// Error codes of {"error", "code"} bodies that clients branch on.
const (
	CodeInvalidKey        = "invalid_key"        // 400; CLI exit 2
	CodeRefused           = "refused"            // 409; CLI exit 3 (the portal refused, or this appliance holds another PBX)
	CodePortalUnreachable = "portal_unreachable" // 503; CLI exit 4
	CodeForbidden         = "forbidden"          // 403
	CodeBadRequest        = "bad_request"        // 400
	CodeTooLarge          = "too_large"          // 413
	// CodeUnsupportedMediaType: a body sent without Content-Type: application/json.
	CodeUnsupportedMediaType = "unsupported_media_type" // 415
	CodeNotFound             = "not_found"              // 404
	CodeMethod               = "method_not_allowed"     // 405
	CodeNotReady             = "not_ready"              // 503
	CodeInternal             = "internal"               // 500
	CodeNotActivated         = "not_activated"          // 409; refresh before activation
	CodeUnknownProfile       = "unknown_profile"        // 400; admission for a profile that does not exist
)

// ErrorBody is every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}
