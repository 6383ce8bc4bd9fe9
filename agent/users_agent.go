package agent

import (
	"context"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// The agent's side of the users component (users.go, admission.go): it
// builds it, hands it the licence, the audit log and the metrics through
// the small interfaces it asks for, and forwards the calls of the rest of
// the daemon to it.

// initUsers builds the users component: opts.Users counts, or the source
// the configuration names.
func (a *Agent) initUsers(opts Options, src license.TimeSource) error {
	u, err := newSeats(seatsEnv{
		clk:     a.clk,
		elapsed: src.Elapsed,
		licence: agentLicence{a.lic},
		audit:   agentAudit{a},
		metrics: a.metrics,
		log:     a.log,
	}, opts.Users, a.cfg.Users, a.cfg.Admission, a.cfg.Enforcement.OveruseHook, a.cfg.Enforcement.CommandTimeout)
	if err != nil {
		return err
	}
	a.users = u
	return nil
}

// agentLicence is the licence as the users component sees it.
type agentLicence struct{ l *licence }

func (l agentLicence) Now() time.Time { return l.l.now() }

func (l agentLicence) Mark() license.Mark { return l.l.clock.Mark() }

func (l agentLicence) Document() *license.Document { return l.l.document() }

func (l agentLicence) Verdict(now time.Time) (*license.Document, license.Verdict) {
	return l.l.docVerdict(now)
}

func (l agentLicence) Decreases() license.Decreases { return l.l.decreases() }

// agentAudit is the audit log as the users component sees it.
type agentAudit struct{ a *Agent }

func (s agentAudit) Record(now time.Time, kind string, fields map[string]any) {
	s.a.lc.auditEvent(now, kind, fields)
}

// Admit answers an admission request of the local API (admission.go).
func (a *Agent) Admit(ctx context.Context, req apitype.Admission) apitype.AdmissionAnswer {
	return a.users.Admit(ctx, req)
}

// countUsers counts the PBX's users once (users.go).
func (a *Agent) countUsers(ctx context.Context) error { return a.users.count(ctx) }

// usersSnapshot is the users part of the status (users.go).
func (a *Agent) usersSnapshot() (used, reserved license.Counts, st apitype.UsersStatus) {
	return a.users.snapshot()
}

// checkOveruse reports a change of over-use, as a new licence may make one
// (users.go).
func (a *Agent) checkOveruse() { a.users.checkOveruse() }
