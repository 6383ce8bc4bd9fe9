package license

import (
	"fmt"
	"time"
)

// State is what the PBX may do, at one moment.
type State string

// The agent states, in the order a licence may pass through them.
const (
	Unactivated State = "unactivated" // no valid key yet: nothing licensed
	Active      State = "active"      // licensed and in touch with the portal
	Offline     State = "offline"     // portal not reached, within the offline grace
	Lapsed      State = "lapsed"      // offline grace exhausted: nothing new admitted
	Stopping    State = "stopping"    // every count zero, before stop_at
	Stopped     State = "stopped"     // telephony stopped
	Deleted     State = "deleted"     // the PBX is gone from this appliance
)

// States lists every state, for metrics that pre-initialise each one.
func States() []State {
	return []State{Unactivated, Active, Offline, Lapsed, Stopping, Stopped, Deleted}
}

// Facts are the inputs of the lifecycle.
type Facts struct {
	Now         time.Time // the licence clock
	Doc         *Document // the licence held; nil before activation or after deletion
	LastSuccess time.Time // the last heartbeat the portal answered; zero counts from Doc.IssuedAt
	Gone        string    // non-empty once the portal said the PBX is gone: why
	GoneAt      time.Time // when the PBX left this appliance, on the licence clock
	Rebound     bool      // gone because the portal re-bound the PBX to another appliance
	// RefusedSince is when the portal, in a signed answer, refused this
	// appliance as one of two copies of the same state; zero when it has
	// not. The PBX lapses from then, as for a suspension.
	RefusedSince time.Time
	// Restored: the state holds an older licence or heartbeat chain than
	// this appliance has held (a state file restored from a backup). The
	// PBX lapses until the portal's next answer sets it right.
	Restored bool
	// ByFile: an air-gapped PBX, licensed by a file the portal signed.
	// LastSuccess is then the file's signed time and Doc's tolerance and
	// grace run to the file's horizon; only the wording differs.
	ByFile bool
}

// Verdict is the state with the deadlines that apply, a short phrase and
// one sentence for admins saying what happens next. A deadline is the zero
// time when it does not apply.
type Verdict struct {
	State State
	// WhatNext is what happens next and when, in a few words with
	// countdowns from the licence clock's Now ("no new users; telephony
	// stops in 13 days"): the one phrase that the status page, `pbx-agent
	// status` and systemd's STATUS= show after the state's name.
	WhatNext string
	Summary  string // for admins: where the PBX stands, what happens next and when
	Reason   string // why this state, in a few words: for the audit log

	// OfflineGraceEnd is when a PBX that does not reach the portal stops
	// admitting new users: the last heartbeat plus the offline grace. Set
	// whenever a licence is held.
	OfflineGraceEnd time.Time
	// LapseGraceEnd is when a lapsed PBX is stopped: the end of the offline
	// grace (or the suspension) plus the lapse grace. Set while the portal
	// is not reached (a forecast while offline) or the licence is suspended.
	LapseGraceEnd time.Time
	// StopAt and DeleteAt are the signed zero-licence countdown.
	StopAt   time.Time
	DeleteAt time.Time

	// DeletedAt is when the PBX left this appliance (deleted, or re-bound
	// to another appliance when Rebound); zero unless Deleted.
	DeletedAt time.Time
	Rebound   bool

	// Next is the earliest deadline after Now at which the verdict may
	// change by itself, for a timer; zero when none is known.
	Next time.Time
}

// Evaluate computes the state from the facts. It is a pure function: the
// same facts give the same verdict, whatever the time of the call.
//
// When several causes apply, the most severe state wins: deleted, then
// stopped (the countdown's stop_at or an exhausted lapse grace), stopping,
// lapsed, offline, active. The zero-licence countdown is the portal's and
// runs on the licence clock whether or not the portal is reached.
func Evaluate(f Facts) Verdict {
	switch {
	case f.Gone != "":
		return gone(f)
	case f.Doc == nil:
		return Verdict{State: Unactivated, Reason: "no licence held", WhatNext: "no PBX key activated yet (pbx-agent activate)",
			Summary: "No PBX key activated yet: paste the PBX key from the portal into `pbx-agent activate`."}
	}
	d, now := f.Doc, f.Now
	in := func(t time.Time) string { return Relative(t, now) }
	last := f.LastSuccess
	if last.IsZero() {
		last = d.IssuedAt
	}
	v := Verdict{OfflineGraceEnd: last.Add(d.OfflineGracePeriod()).UTC()}
	reachedUntil := last.Add(d.HeartbeatTolerancePeriod())
	reached := !now.After(reachedUntil)

	// The lapse runs from the end of the offline grace while the portal is
	// not reached, or from the suspension, whichever comes first.
	var lapseFrom time.Time
	suspended := false
	if !reached {
		lapseFrom = v.OfflineGraceEnd
	}
	if d.Suspended {
		if s := d.SuspendedAt(); lapseFrom.IsZero() || s.Before(lapseFrom) {
			lapseFrom, suspended = s, true
		}
	}
	refused := false
	if r := f.RefusedSince; !r.IsZero() && (lapseFrom.IsZero() || r.Before(lapseFrom)) {
		lapseFrom, suspended, refused = r.UTC(), false, true
	}
	lapsing := !lapseFrom.IsZero()
	if lapsing {
		v.LapseGraceEnd = lapseFrom.Add(d.LapseGracePeriod()).UTC()
	}
	countdown := d.ZeroSince != nil
	if countdown {
		v.StopAt, v.DeleteAt = d.StopAt.UTC(), d.DeleteAt.UTC()
	}

	switch {
	case countdown && !now.Before(v.DeleteAt):
		v.State, v.Reason = Deleted, "delete_at passed: the zero-licence countdown is over"
		v.DeletedAt = v.DeleteAt
		v.WhatNext = "PBX deleted " + in(v.DeleteAt) + "; " + deletedStep
		v.Summary = fmt.Sprintf("The PBX was deleted on the portal at %s, at the end of the countdown that began when every licence went to zero on %s: telephony stays stopped; %s",
			stamp(v.DeleteAt), stamp(*d.ZeroSince), deletedAdvice)
	case countdown && !now.Before(v.StopAt):
		v.State, v.Reason = Stopped, "stop_at passed: every licence at zero"
		v.WhatNext = "telephony stopped; PBX deleted " + in(v.DeleteAt) + "; " + keepStep
		v.Summary = fmt.Sprintf("Every licence has been at zero since %s: telephony is stopped, and the PBX is deleted for good at %s (%s); %s",
			stamp(*d.ZeroSince), stamp(v.DeleteAt), Relative(v.DeleteAt, now), keepAdvice)
	case lapsing && !now.Before(v.LapseGraceEnd) && suspended:
		v.State, v.Reason = Stopped, "lapse grace exhausted: the licence is suspended"
		v.WhatNext = "telephony stopped until the portal lifts the suspension"
		v.Summary = fmt.Sprintf("Telephony is stopped: the portal suspended this licence on %s and the lapse grace ended %s; it starts again when the portal lifts the suspension.",
			stamp(lapseFrom), stamp(v.LapseGraceEnd))
	case lapsing && !now.Before(v.LapseGraceEnd) && refused:
		v.State, v.Reason = Stopped, "lapse grace exhausted: the portal refuses this appliance as a copy"
		v.WhatNext = "telephony stopped until the PBX is re-bound or resynced on the portal"
		v.Summary = fmt.Sprintf("Telephony is stopped: since %s the portal refuses this appliance because two copies of its state were heartbeating, and the lapse grace ended %s; the partner must re-bind the PBX or resync it on the portal once one copy is left.",
			stamp(lapseFrom), stamp(v.LapseGraceEnd))
	case lapsing && !now.Before(v.LapseGraceEnd):
		v.State, v.Reason = Stopped, "lapse grace exhausted: the portal not reached"
		v.WhatNext = "telephony stopped until the portal is reached"
		v.Summary = fmt.Sprintf("Telephony is stopped: the portal has not been reached since %s and the lapse grace ended %s; it starts again as soon as the portal is reached.",
			stamp(last), stamp(v.LapseGraceEnd))
	case countdown:
		v.State, v.Reason = Stopping, "every licence at zero"
		v.WhatNext = "no new users; telephony stops " + in(v.StopAt) + ", PBX deleted " + in(v.DeleteAt) + "; " + keepStep
		v.Summary = fmt.Sprintf("Every licence is at zero since %s: no new users are admitted, telephony stops at %s (%s) and the PBX is deleted for good at %s (%s); %s",
			stamp(*d.ZeroSince), stamp(v.StopAt), Relative(v.StopAt, now), stamp(v.DeleteAt), Relative(v.DeleteAt, now), keepAdvice)
	case f.Restored:
		v.State, v.Reason = Lapsed, "the state file is older than what this appliance held"
		v.WhatNext = "no new users until the portal confirms the licence"
		if lapsing {
			v.WhatNext = "no new users; telephony stops " + in(v.LapseGraceEnd)
		}
		v.Summary = "The state file holds an older licence or heartbeat record than this appliance has held: it was restored from a backup. Existing users keep working, but no new users are admitted until the portal is reached and confirms the licence."
	case lapsing && !now.Before(lapseFrom) && refused:
		v.State, v.Reason = Lapsed, "the portal refuses this appliance as a copy"
		v.WhatNext = "no new users; telephony stops " + in(v.LapseGraceEnd)
		v.Summary = fmt.Sprintf("Since %s the portal refuses this appliance because two copies of its state (a cloned VM or a copied state folder) were heartbeating: existing users keep working but no new users are admitted, and telephony stops at %s (%s) unless the partner re-binds the PBX, or resyncs it on the portal once only one copy is left.",
			stamp(lapseFrom), stamp(v.LapseGraceEnd), Relative(v.LapseGraceEnd, now))
	case lapsing && !now.Before(lapseFrom) && suspended:
		v.State, v.Reason = Lapsed, "the portal suspended the licence"
		v.WhatNext = "no new users; telephony stops " + in(v.LapseGraceEnd)
		v.Summary = fmt.Sprintf("The portal suspended this licence on %s: existing users keep working but no new users are admitted, and telephony stops at %s (%s) unless the portal lifts the suspension first.",
			stamp(lapseFrom), stamp(v.LapseGraceEnd), Relative(v.LapseGraceEnd, now))
	case lapsing && !now.Before(lapseFrom) && f.ByFile:
		v.State, v.Reason = Lapsed, "the licence file's horizon passed"
		v.WhatNext = "no new users; telephony stops " + in(v.LapseGraceEnd)
		v.Summary = fmt.Sprintf("The licence file the portal signed on %s ran out at %s: existing users keep working but no new users are admitted, and telephony stops at %s (%s) unless a new licence file is installed first.",
			stamp(last), stamp(v.OfflineGraceEnd), stamp(v.LapseGraceEnd), Relative(v.LapseGraceEnd, now))
	case lapsing && !now.Before(lapseFrom):
		v.State, v.Reason = Lapsed, "offline grace exhausted"
		v.WhatNext = "no new users; telephony stops " + in(v.LapseGraceEnd)
		v.Summary = fmt.Sprintf("The portal has not been reached since %s and the offline grace ended %s: existing users keep working but no new users are admitted, and telephony stops at %s (%s) unless the portal is reached first.",
			stamp(last), stamp(v.OfflineGraceEnd), stamp(v.LapseGraceEnd), Relative(v.LapseGraceEnd, now))
	case !reached:
		v.State, v.Reason = Offline, "the portal not reached within the heartbeat tolerance"
		v.WhatNext = "new users refused " + in(v.OfflineGraceEnd) + ", telephony stops " + in(v.LapseGraceEnd)
		v.Summary = fmt.Sprintf("The portal has not been reached since %s: the PBX runs normally until %s (%s), then admits no new users, and telephony stops at %s (%s) unless the portal is reached first.",
			stamp(last), stamp(v.OfflineGraceEnd), Relative(v.OfflineGraceEnd, now), stamp(v.LapseGraceEnd), Relative(v.LapseGraceEnd, now))
	case f.ByFile:
		v.State, v.Reason = Active, "licensed by a file from the portal"
		v.WhatNext = "licensed by a file from the portal until " + stamp(v.OfflineGraceEnd)
		v.Summary = fmt.Sprintf("Licensed by a file the portal signed on %s, good until %s (%s): install the next licence file before then.",
			stamp(last), stamp(v.OfflineGraceEnd), Relative(v.OfflineGraceEnd, now))
	default:
		v.State, v.Reason = Active, "licensed, the portal reached"
		v.WhatNext = "licensed by the portal"
		v.Summary = fmt.Sprintf("Licensed by the portal, last reached %s.", stamp(last))
	}

	for _, t := range []time.Time{reachedUntil, v.OfflineGraceEnd, lapseFrom, v.LapseGraceEnd, v.StopAt, v.DeleteAt} {
		if t.After(now) && (v.Next.IsZero() || t.Before(v.Next)) {
			v.Next = t.UTC()
		}
	}
	return v
}

// StopsTelephony reports whether the PBX's telephony is to be stopped in
// state s: stopped, and deleted, where the PBX stays stopped.
func (s State) StopsTelephony() bool { return s == Stopped || s == Deleted }

// The partner's steps in the zero-licence countdown and after a deletion:
// the portal guide asks for both a licence added back and the Area Manager
// told, as soon as possible.
const (
	keepStep      = "to keep the PBX, add a licence back on the portal and contact your Area Manager"
	keepAdvice    = "to keep the PBX, the partner adds at least one licence back on the portal and contacts their Area Manager as soon as possible to say so."
	deletedStep   = "to recover it, add a licence back on the portal and contact your Area Manager; otherwise a new PBX key is needed (pbx-agent activate)"
	deletedAdvice = "to recover it, the partner adds a licence back on the portal and contacts their Area Manager at once; otherwise this appliance needs a new PBX key (pbx-agent activate)."
)

// gone is the verdict of a PBX that left this appliance: deleted on the
// portal, or re-bound to another appliance (an RMA, a move), which holds
// the licence now.
func gone(f Facts) Verdict {
	v := Verdict{State: Deleted, Reason: "the portal says the PBX is gone: " + f.Gone, Rebound: f.Rebound}
	when, since, ago := "", "", ""
	if !f.GoneAt.IsZero() {
		v.DeletedAt = f.GoneAt.UTC()
		when, since, ago = " on "+stamp(f.GoneAt), ", since "+stamp(f.GoneAt), " "+Relative(f.GoneAt, f.Now)
	}
	if f.Rebound {
		v.WhatNext = "the PBX was re-bound to another appliance" + ago + "; telephony stays stopped here; a new PBX key is needed to run one (pbx-agent activate)"
		v.Summary = fmt.Sprintf("The portal says the PBX was re-bound to another appliance%s (an RMA or a move), which holds its licence now: telephony here stays stopped, and this appliance needs a new PBX key to run a PBX (pbx-agent activate); if the re-bind was a mistake, the partner contacts their Area Manager.", when)
		return v
	}
	v.WhatNext = "PBX deleted" + ago + "; " + deletedStep
	v.Summary = fmt.Sprintf("This appliance no longer holds the PBX (%s)%s: telephony stays stopped; %s", f.Gone, since, deletedAdvice)
	return v
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// Relative says how far t is from now for people: "in 3 days",
// "5 hours ago", "now".
func Relative(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d > -time.Second && d < time.Second:
		return "now"
	case d < 0:
		return Duration(d) + " ago"
	}
	return "in " + Duration(d)
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
