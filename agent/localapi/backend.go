// Package localapi serves the agent's local API: the unix socket for the
// CLI and WMS (read, admission, and writes for privileged peers) and the
// read-only TCP listener (status page, JSON, metrics, health). The JSON
// contract it serves is package apitype's.
package localapi

import (
	"context"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
)

// Backend is what the API needs of the daemon.
type Backend interface {
	// Status returns a snapshot; it must not block on the portal.
	Status() apitype.Status
	// Activate validates key and activates it with the portal. Its errors
	// are classified by ActivationErrorCode.
	Activate(ctx context.Context, key string) error
	// Refresh runs a heartbeat now and returns its outcome.
	Refresh(ctx context.Context) error
	// Audit returns the audit log, oldest first; with limit > 0, only the
	// last limit events.
	Audit(ctx context.Context, limit int) ([]audit.Event, error)
	// Admit answers an admission request from memory, reserving the seats
	// of an allowed one unless it is a dry run. It must not block.
	Admit(ctx context.Context, req apitype.Admission) apitype.AdmissionAnswer
	// CloseSSH closes temporary support SSH access, ending its sessions.
	CloseSSH(ctx context.Context) error
}
