package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Audit event kinds of admission and counting.
const (
	auditAdmissionDenied   = "admission.denied"   // profile, count, reason, kind, peer, uid; repeats
	auditAdmissionReserved = "admission.reserved" // profile, count, uid, peer, held (by the uid), remaining
	auditOveruse           = "overuse"            // overuse (or none), users, licensed
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
// concurrent requests can never take the same seat, and is recorded in the
// audit log with the peer's uid. A peer (other than root and
// admission.unbounded_uids) may hold at most
// admission.max_reservations_per_uid seats at once. A denied request that
// is not a dry run is recorded in the audit log.
func (u *seats) Admit(_ context.Context, req apitype.Admission) apitype.AdmissionAnswer {
	// One reading of the machine's clock gives the licence time and the
	// seats' own: reading it is a system call, and this is every
	// admission's path. Taken before the lock, readings may reach the
	// book a few microseconds out of order, which it allows for.
	mark := u.env.licence.Mark()
	now, mono := mark.Time, monoEpoch.Add(mark.Boot)
	doc, v := u.env.licence.Verdict(now)
	decreases := u.env.licence.Decreases()

	u.mu.Lock()
	in := admission.Input{
		Now: now, State: v.State, Summary: v.Summary, Doc: doc,
		Used: u.last.used, CountErr: u.last.err, Reserved: u.book.Reserved(mono),
		Decreases: decreases,
	}
	if age := mono.Sub(u.last.countedAt); u.last.used != nil && u.last.err != "" && age > u.countMaxAgeLocked() {
		in.Stale = strings.TrimSuffix(license.Relative(u.last.countedAt, mono), " ago") + " old"
	}
	d := admission.Decide(in, admission.Request{Profile: req.Profile, Count: req.Count})
	owner, held := admission.NoOwner, 0
	if req.PeerUID != nil {
		owner = int64(*req.PeerUID)
		held = u.book.HeldBy(mono, owner)
		if limit := u.adm.MaxReservationsPerUID; d.Allowed && u.boundedLocked(*req.PeerUID) && held+req.Count > limit {
			d = boundDenial(d, *req.PeerUID, held, req.Count, limit, u.adm.ReservationTTL)
		}
	}
	if !d.Allowed {
		d.Reason += holdsNote(u.denialHolds(d, req.Profile, owner, mono), now, mono)
	}
	reserved := d.Allowed && !req.DryRun
	if reserved {
		u.book.ReserveFor(mono, owner, req.Profile, req.Count)
		held += req.Count
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
	u.env.metrics.AdmissionDecision(string(req.Profile), decision)
	if d.Allowed {
		remaining := d.Remaining
		if reserved {
			u.auditReservation(now, req, held, remaining)
		}
		return apitype.AdmissionAnswer{Allowed: true, Remaining: &remaining}
	}
	if record {
		fields := map[string]any{
			"profile": string(req.Profile), "count": req.Count, "kind": d.Kind, "reason": d.Reason,
			"state": string(v.State), "licensed": d.Licensed, "used": d.Used, "reserved": d.Reserved,
		}
		if req.Peer != "" {
			fields["peer"] = req.Peer
		}
		if req.PeerUID != nil {
			fields["uid"] = *req.PeerUID
		}
		if repeats > 0 {
			fields["repeats"] = repeats
		}
		u.env.audit.Record(now, auditAdmissionDenied, fields)
		u.env.log.Info("admission denied", "profile", req.Profile, "count", req.Count, "kind", d.Kind, "reason", d.Reason)
	}
	return apitype.AdmissionAnswer{Allowed: false, Reason: d.Reason}
}

// countMaxAge is how old the last good count may grow while counting
// fails before admissions stop trusting it: past a reservation's life and
// a few intervals, a user added under an expired reservation could be
// missing from it.
func (u *seats) countMaxAge() time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.countMaxAgeLocked()
}

func (u *seats) countMaxAgeLocked() time.Duration {
	return u.adm.ReservationTTL + 3*u.interval
}

// noteDenial reports whether a denial of p at now goes to the audit log:
// the first, and then one per deniedAuditEvery; it counts the others.
// Callers hold u.mu.
func (u *seats) noteDenial(p license.Profile, now time.Time) bool {
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

// boundedLocked reports whether admission.max_reservations_per_uid applies
// to a peer: every uid but root's and those of admission.unbounded_uids.
// Callers hold u.mu, under which a reload sets the section.
func (u *seats) boundedLocked(uid uint32) bool {
	return uid != 0 && !slices.Contains(u.adm.UnboundedUIDs, uid)
}

// boundDenial turns an allowed decision into the denial of a peer that
// would hold more than limit seats reserved at once.
func boundDenial(d admission.Decision, uid uint32, held, count, limit int, ttl time.Duration) admission.Decision {
	d.Allowed, d.Remaining, d.Kind = false, 0, admission.KindBound
	d.Reason = fmt.Sprintf("uid %d holds %d reserved %s (admitted, not counted yet) and may hold %d at once (admission.max_reservations_per_uid), so %d more %s refused: "+
		"the seats free up as a count shows the users added, or after admission.reservation_ttl (%s); "+
		"a program that adds users in bulk, such as the WMS, is exempted by listing its uid in admission.unbounded_uids",
		uid, held, plural(held, "seat", "seats"), limit, count, plural(count, "is", "are"), durationWords(ttl))
	return d
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// auditReservation records a reservation: who took how many seats of
// which profile. No lock of the component is held through the audit
// log's fsync, so status reads do not wait for the disk.
func (u *seats) auditReservation(now time.Time, req apitype.Admission, held, remaining int) {
	fields := map[string]any{"profile": string(req.Profile), "count": req.Count, "held": held, "remaining": remaining}
	if req.Peer != "" {
		fields["peer"] = req.Peer
	}
	if req.PeerUID != nil {
		fields["uid"] = *req.PeerUID
	}
	u.env.audit.Record(now, auditAdmissionReserved, fields)
}

// durationWords is d as an admin reads it: "10 minutes", "2 days".
func durationWords(d time.Duration) string {
	var t time.Time
	return strings.TrimPrefix(license.Relative(t.Add(d), t), "in ")
}
