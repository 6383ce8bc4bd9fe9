package agent

import (
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// stateSchema is the version of persisted. Bump it with a migration in
// openStore when the format changes.
const stateSchema = 1

// File names in the state folder.
const (
	stateFileName = "state.json"
	deviceKeyFile = "device-key.pem" // the device's Ed25519 private key, 0600
)

// persisted is what survives a restart. What decides anything is kept as
// the portal signed it and verified again at every load: the licence (so
// editing the file cannot raise a count) and the last answer that counted
// as a success (so it cannot extend the offline grace). The unsigned
// fields can only make the agent stricter, or are checked by the portal
// (the chain).
type persisted struct {
	License     string       `json:"license,omitempty"` // compact JWS
	PBX         *license.PBX `json:"pbx,omitempty"`     // kept after deletion, for status
	ActivatedAt time.Time    `json:"activated_at,omitzero"`
	// Answer is the portal's last signed answer that stated the licence
	// held as the PBX's current one: the last success is its signed time.
	// Empty after an upgrade from a state without it: the licence's issue
	// time stands in until the next answer.
	Answer string `json:"answer,omitempty"`
	// AnswerTo is the compact heartbeat that Answer answers when Answer is
	// a "same" answer: the answer echoes its digest and states what it
	// says, so the two verify together.
	AnswerTo string `json:"answer_to,omitempty"`
	// Chain is this appliance's end of the heartbeat chain: the digest of
	// the last answer accepted and how many were. Saved before the next
	// request is sent, as every accepted answer is saved.
	Chain protocol.Link `json:"chain,omitzero"`
	// Refused is the portal's signed refusal of this appliance as one of
	// two copies; the PBX lapses from its time until an answer matches.
	Refused   string          `json:"refused,omitempty"`
	Interval  license.Seconds `json:"interval_seconds,omitempty"` // as the portal last set it
	HighWater time.Time       `json:"clock_high_water,omitzero"`  // the licence clock's persisted mark
	// ClockMark says the clock's mark record (clock.mark) existed when
	// this state was saved: a record missing at start was removed.
	ClockMark bool `json:"clock_mark,omitempty"`
	// Fingerprint is the machine's fingerprint at activation: a state
	// folder copied to another machine is refused (see New).
	Fingerprint string    `json:"fingerprint,omitempty"`
	Gone        string    `json:"gone,omitempty"` // why the PBX left this appliance
	GoneAt      time.Time `json:"gone_at,omitzero"`
	// State is the lifecycle state last evaluated and recorded in the audit
	// log, so a restart records only real changes. Optional: a schema 1
	// file without it records its first state as a change from "none".
	State string `json:"state,omitempty"`
	// Decreases is the last decrease of each profile between the licence
	// revisions taken, until raised back: it only words the over-use
	// reason (a decrease, or users created beyond the licence), so an
	// edit of it grants nothing. Reset at each activation.
	Decreases license.Decreases `json:"decreases,omitempty"`
	// Offline is the file exchange of an air-gapped PBX (offline.go).
	Offline offlineState `json:"offline,omitzero"`
	// Gen counts the saves of the state, to the state file or to the
	// heartbeat record (beat.go): the newer of the two holds the chain
	// link and the answer.
	Gen uint64 `json:"gen,omitempty"`
}
