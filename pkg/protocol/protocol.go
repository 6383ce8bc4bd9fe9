// Package protocol is the wire between pbx-agent and its portal: paths,
// request and answer documents, how each side signs and checks them, and the
// retry policy. The agent and the reference portal share it, so they cannot
// drift apart. docs/protocol.md describes it with examples.
//
// Every request is a compact JWS signed by the appliance's device key; every
// answer is a compact JWS signed by a portal key of the agent's keyring. An
// answer echoes the nonce of the request it answers, so an old answer
// replayed to the agent is refused, and carries the portal's time, which
// drives the agent's licence clock.
package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Paths of the portal API, versioned.
const (
	PathActivate  = "/api/v1/activate"
	PathHeartbeat = "/api/v1/heartbeat"
)

// ContentType is the media type of every signed body, both ways.
const ContentType = "application/jose"

// Document types of the protected "typ" header.
const (
	TypeActivate  = "pbx-activate+jws"  // appliance → portal
	TypeHeartbeat = "pbx-heartbeat+jws" // appliance → portal
	TypeAnswer    = "pbx-answer+jws"    // portal → appliance
)

// FreshnessWindow is how far a request's time may be from the portal's
// before the portal answers "stale" instead of acting on it. Nonces are
// remembered for twice as long, so a captured request can never be replayed.
const FreshnessWindow = 5 * time.Minute

// MaxBodySize bounds every request and answer body; real ones are a few KiB.
const MaxBodySize = 1 << 20

// Request is what every signed request carries to defeat replay.
type Request struct {
	Time  time.Time `json:"ts"`    // the agent's licence clock at signing
	Nonce string    `json:"nonce"` // fresh for every attempt, a retry included
}

// ActivateRequest binds a PBX to this appliance. It is signed by the device
// key it carries, which proves the appliance holds the private half.
type ActivateRequest struct {
	Request
	Key          string        `json:"key"`         // the PBX key, normalised
	DeviceKey    []byte        `json:"device_key"`  // Ed25519 public key
	Fingerprint  string        `json:"fingerprint"` // HMAC of hardware ids; raw ids never leave the box
	Model        license.Model `json:"model"`
	Serial       string        `json:"serial,omitempty"`    // only when set by identity.serial
	Overrides    []string      `json:"overrides,omitempty"` // identity keys set by configuration
	AgentVersion string        `json:"agent_version"`
}

// HeartbeatRequest reports usage and asks for what changed. The header's key
// id names the device key that signed it.
//
// Revision and Digest say which licence the appliance holds. The portal
// may use them only to save bytes (it leaves out a licence the appliance
// already holds); what is true comes back in the signed answer, which
// states the current revision and digest itself. Fetch asks for the
// current licence whatever the request claims: the agent sends it when an
// answer disagrees with what it holds.
type HeartbeatRequest struct {
	Request
	PBXID    string `json:"pbx_id"`
	Revision int64  `json:"revision"`        // the licence revision held
	Digest   string `json:"digest"`          // Digest of the licence held
	Fetch    bool   `json:"fetch,omitempty"` // send the current licence
	// Link and Seq are the appliance's end of the heartbeat chain: the
	// Digest of the last answer it accepted and how many it has accepted
	// (chain.go).
	Link         string         `json:"link"`
	Seq          uint64         `json:"seq"`
	State        string         `json:"state"`
	Usage        license.Counts `json:"usage,omitempty"`   // users per profile, once counted
	Overuse      license.Counts `json:"overuse,omitempty"` // users beyond the licences, per profile
	AgentVersion string         `json:"agent_version"`
	// Results are the outcomes of commands not yet acknowledged by the
	// portal; at most MaxResults, oldest first.
	Results []CommandResult `json:"results,omitempty"`
}

// Bounds on the commands and results one exchange carries.
const (
	MaxCommands = 32
	MaxResults  = 64
)

// Status is the outcome an answer reports.
type Status string

const (
	// StatusOK: the request was taken; the answer may carry a new licence.
	StatusOK Status = "ok"
	// StatusStale: the request's time was outside FreshnessWindow; nothing
	// was done. The agent adopts the portal's time and retries at once.
	StatusStale Status = "stale"
	// StatusGone: this appliance no longer holds the PBX (deleted, or
	// re-bound to another appliance). The agent wipes its licence.
	StatusGone Status = "gone"
	// StatusRefused: the portal refuses this appliance's heartbeats for the
	// Reason given (RefusedCloned). Signed, so the agent acts on it: the
	// PBX lapses until the partner resolves it on the portal.
	StatusRefused Status = "refused"
)

// RefusedCloned: two copies of the appliance's state both kept advancing
// the heartbeat chain. The partner re-binds the PBX, or resyncs it once
// the copy is gone.
const RefusedCloned = "cloned"

// Standing of the PBX on the portal, as an ok answer states it.
const (
	StandingActive    = "active"
	StandingSuspended = "suspended"
)

// Chain notes an answer may carry.
const (
	// ChainReanchored: the appliance's link was neither of the two the
	// portal accepts (its state was rolled back, restored or reverted);
	// the portal recorded the fork and continued the chain from it.
	ChainReanchored = "reanchored"
)

// Reasons a PBX is gone.
const (
	GoneDeleted = "deleted"
	GoneRebound = "rebound"
)

// Answer is the portal's signed reply to a request.
type Answer struct {
	Status   Status          `json:"status"`
	Time     time.Time       `json:"time"`  // the portal's clock at signing
	Nonce    string          `json:"nonce"` // the nonce of the request answered
	PBXID    string          `json:"pbx_id"`
	Interval license.Seconds `json:"interval_seconds,omitempty"` // heartbeat interval to use
	// Revision, Digest and Standing state the PBX's current licence on the
	// portal, in every ok answer to an activation or a heartbeat: the
	// agent counts an answer as a success only when they match the
	// licence it holds.
	Revision int64  `json:"revision,omitempty"`
	Digest   string `json:"digest,omitempty"`
	Standing string `json:"standing,omitempty"`
	License  string `json:"license,omitempty"` // the current signed licence, when the appliance may not hold it
	Reason   string `json:"reason,omitempty"`  // why gone or refused
	// Link and Seq echo the chain position of the request answered; Chain
	// notes what the portal did with it (ChainReanchored).
	Link  string `json:"link,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
	Chain string `json:"chain,omitempty"`
	// Commands are signed commands for the PBX (TypeCommand), delivered
	// again until their result is acknowledged.
	Commands []string `json:"commands,omitempty"`
	// Acked are the ids of results the portal has recorded: the agent stops
	// reporting them.
	Acked []string `json:"acked,omitempty"`
	// Pending, in an answer to a wait, says the portal has something for
	// the PBX: a command or a newer licence. The agent heartbeats at once.
	Pending bool `json:"pending,omitempty"`
	// Formats are the request types the portal accepts beyond the full
	// ones, in an ok answer: TypeCompactHeartbeat when it reads compact
	// heartbeats (compact.go). An agent sends them only to a portal that
	// said so in a signed answer.
	Formats []string `json:"formats,omitempty"`

	// Same says the answer was a "same" answer (TypeSame), read as the
	// full answer it stands for; set by verification, not signed.
	Same bool `json:"-"`
	// Compact is the signed answer as received; set by verification, not
	// signed. Its Digest is the next link of the heartbeat chain.
	Compact string `json:"-"`
}

// Error is the JSON body of a refusal (a non-2xx status). Refusals are not
// signed: they change nothing on the appliance.
type Error struct {
	Message string `json:"error"`
	Code    string `json:"code"`
}

func (e *Error) Error() string { return e.Message + " (" + e.Code + ")" }

// Refusal codes.
const (
	CodeBadRequest     = "bad_request"
	CodeBadSignature   = "bad_signature"
	CodeInvalidKey     = "invalid_key"
	CodeBoundElsewhere = "bound_elsewhere"
	CodeUnknownDevice  = "unknown_device"
	CodeReplay         = "replay"
	CodeRateLimited    = "rate_limited"
	CodeUnavailable    = "unavailable"
)

// DeviceKeyID names a device public key: a digest, so it is stable, short
// and a valid key id.
func DeviceKeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "dev-" + base64.RawURLEncoding.EncodeToString(sum[:16])
}

// NewDeviceKey makes an appliance's device key, named by DeviceKeyID.
func NewDeviceKey() (*license.Signer, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the device key: %w", err)
	}
	return license.NewSigner(DeviceKeyID(pub), priv)
}
