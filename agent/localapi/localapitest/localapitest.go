// Package localapitest provides a fake of the daemon behind the local API,
// for the tests of the API's server and of its clients. Only tests use it.
package localapitest

import (
	"context"
	"slices"
	"sync"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
)

// Backend is a localapi.Backend that answers what the test sets and records
// what the API asked of it. The server calls it from its own goroutines
// while the test sets and reads it, so every access takes a lock. The zero
// value answers an empty status, no errors, an empty audit log and a
// denied admission.
type Backend struct {
	mu sync.Mutex

	// What it answers.
	status      apitype.Status
	activateErr error
	refreshErr  error
	events      []audit.Event
	auditErr    error
	admission   apitype.AdmissionAnswer

	// What it was asked.
	keys        []string
	refreshes   int
	auditLimits []int
	admissions  []apitype.Admission
	sshCloses   int

	offline offlineFake // offline.go
}

var _ localapi.Backend = (*Backend)(nil)

// SetStatus sets what Status answers.
func (b *Backend) SetStatus(st apitype.Status) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status = st
}

// SetActivateErr sets what Activate returns.
func (b *Backend) SetActivateErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.activateErr = err
}

// SetRefreshErr sets what Refresh returns.
func (b *Backend) SetRefreshErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refreshErr = err
}

// SetAudit sets the audit log, oldest first, and the error Audit returns.
func (b *Backend) SetAudit(events []audit.Event, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events, b.auditErr = events, err
}

// SetAdmission sets what Admit answers.
func (b *Backend) SetAdmission(a apitype.AdmissionAnswer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.admission = a
}

// Status answers the status set.
func (b *Backend) Status() apitype.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status
}

// Activate records key.
func (b *Backend) Activate(_ context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.keys = append(b.keys, key)
	return b.activateErr
}

// Refresh counts the refresh.
func (b *Backend) Refresh(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refreshes++
	return b.refreshErr
}

// Audit records limit and answers the last limit events set, as the daemon
// does.
func (b *Backend) Audit(_ context.Context, limit int) ([]audit.Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.auditLimits = append(b.auditLimits, limit)
	evs := b.events
	if limit > 0 && len(evs) > limit {
		evs = evs[len(evs)-limit:]
	}
	return evs, b.auditErr
}

// Admit records req.
func (b *Backend) Admit(_ context.Context, req apitype.Admission) apitype.AdmissionAnswer {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.admissions = append(b.admissions, req)
	return b.admission
}

// CloseSSH counts the close and, as the daemon does, leaves a status that
// says closed and keeps the configured port.
func (b *Backend) CloseSSH(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sshCloses++
	b.status.SSH = apitype.SSHStatus{Port: b.status.SSH.Port}
	return nil
}

// Activations returns the key of each Activate call, in order.
func (b *Backend) Activations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.keys)
}

// Refreshes returns how many times Refresh was called.
func (b *Backend) Refreshes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refreshes
}

// AuditLimits returns the limit of each Audit call, in order.
func (b *Backend) AuditLimits() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.auditLimits)
}

// Admissions returns the request of each Admit call, in order.
func (b *Backend) Admissions() []apitype.Admission {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.admissions)
}

// SSHCloses returns how many times CloseSSH was called.
func (b *Backend) SSHCloses() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sshCloses
}

// ClearCalls forgets what the API asked so far, keeping the answers set:
// for a test whose cases share one server.
func (b *Backend) ClearCalls() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.keys, b.refreshes, b.auditLimits, b.admissions, b.sshCloses = nil, 0, nil, nil, 0
}
