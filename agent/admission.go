package agent

import (
	"context"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Audit event kinds of admission and counting.
const (
	auditAdmissionDenied = "admission.denied" // profile, count, reason, kind, peer; repeats
	auditOveruse         = "overuse"          // overuse (or none), users, licensed
)

// deniedAuditEvery spaces the audit records of denials for one profile: a
// WMS that retries in a loop must not push the licence's history out of
// the size-capped log. The denials in between are counted in the next
// record's "repeats".
const deniedAuditEvery = time.Minute

// denialLog is the audit log's memory of one profile's denials.
type denialLog struct {
	last    time.Time // monotonic
	repeats int       // denials since, not recorded
}

// Admit answers an admission from memory: the licence, the state, the
// last count and the reservations. An allowed request that is not a dry
// run reserves its seats, under the same lock as the decision, so that
// concurrent requests can never take the same seat. A denied request that
// is not a dry run is recorded in the audit log.
func (a *Agent) Admit(_ context.Context, req localapi.Admission) localapi.AdmissionAnswer {
	now := a.clock.Now()
	a.mu.Lock()
	v := a.verdictLocked(now)
	doc := a.doc
	a.mu.Unlock()

	u := &a.users
	u.mu.Lock()
	mono := u.mono()
	in := admission.Input{
		Now: now, State: v.State, Summary: v.Summary, Doc: doc,
		Used: u.used, CountErr: u.err, Reserved: u.book.Reserved(mono),
	}
	if age := mono.Sub(u.countedAt); u.used != nil && u.err != "" && age > a.countMaxAge() {
		in.Stale = strings.TrimSuffix(license.Relative(u.countedAt, mono), " ago") + " old"
	}
	d := admission.Decide(in, admission.Request{Profile: req.Profile, Count: req.Count})
	if d.Allowed && !req.DryRun {
		u.book.Reserve(mono, req.Profile, req.Count)
	}
	record := !d.Allowed && !req.DryRun && u.noteDenial(req.Profile, mono)
	repeats := 0
	if record {
		repeats = u.denials[req.Profile].repeats
		u.denials[req.Profile].repeats = 0
	}
	u.mu.Unlock()

	decision := metrics.DecisionDenied
	if d.Allowed {
		decision = metrics.DecisionAllowed
	}
	a.metrics.AdmissionDecision(string(req.Profile), decision)
	if d.Allowed {
		remaining := d.Remaining
		return localapi.AdmissionAnswer{Allowed: true, Remaining: &remaining}
	}
	if record {
		fields := map[string]any{
			"profile": string(req.Profile), "count": req.Count, "kind": d.Kind, "reason": d.Reason,
			"state": string(v.State), "licensed": d.Licensed, "used": d.Used, "reserved": d.Reserved,
		}
		if req.Peer != "" {
			fields["peer"] = req.Peer
		}
		if repeats > 0 {
			fields["repeats"] = repeats
		}
		a.mu.Lock()
		a.auditLocked(now, auditAdmissionDenied, fields)
		a.mu.Unlock()
		a.log.Info("admission denied", "profile", req.Profile, "count", req.Count, "kind", d.Kind, "reason", d.Reason)
	}
	return localapi.AdmissionAnswer{Allowed: false, Reason: d.Reason}
}

// countMaxAge is how old the last good count may grow while counting
// fails before admissions stop trusting it: past a reservation's life and
// a few intervals, a user added under an expired reservation could be
// missing from it.
func (a *Agent) countMaxAge() time.Duration {
	return a.cfg.Admission.ReservationTTL + 3*a.users.interval
}

// noteDenial reports whether a denial of p at now goes to the audit log:
// the first, and then one per deniedAuditEvery; it counts the others.
// Callers hold u.mu.
func (u *usersState) noteDenial(p license.Profile, now time.Time) bool {
	dl := u.denials[p]
	if dl == nil {
		dl = &denialLog{}
		u.denials[p] = dl
	} else if now.Sub(dl.last) < deniedAuditEvery {
		dl.repeats++
		return false
	}
	dl.last = now
	return true
}
