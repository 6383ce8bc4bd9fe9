package agent

import (
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// stateSchema is the version of persisted. Bump it with a migration in
// openStore when the format changes.
const stateSchema = 1

// File names in the state folder.
const (
	stateFileName = "state.json"
	deviceKeyFile = "device-key.pem" // the device's Ed25519 private key, 0600
)

// persisted is what survives a restart. The licence is kept as the portal
// signed it and verified again at every load, so editing the file cannot
// raise a count.
type persisted struct {
	License     string          `json:"license,omitempty"` // compact JWS
	PBX         *license.PBX    `json:"pbx,omitempty"`     // kept after deletion, for status
	ActivatedAt time.Time       `json:"activated_at,omitzero"`
	LastSuccess time.Time       `json:"last_success,omitzero"`
	Interval    license.Seconds `json:"interval_seconds,omitempty"` // as the portal last set it
	HighWater   time.Time       `json:"clock_high_water,omitzero"`  // the licence clock's persisted mark
	// Fingerprint is the machine's fingerprint at activation: a state
	// folder copied to another machine is refused (see New).
	Fingerprint string    `json:"fingerprint,omitempty"`
	Gone        string    `json:"gone,omitempty"` // why the PBX left this appliance
	GoneAt      time.Time `json:"gone_at,omitzero"`
	// State is the lifecycle state last evaluated and recorded in the audit
	// log, so a restart records only real changes. Optional: a schema 1
	// file without it records its first state as a change from "none".
	State string `json:"state,omitempty"`
}
