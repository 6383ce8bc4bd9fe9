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
	LastSuccess time.Time // the last heartbeat the portal answered
	Gone        string    // non-empty once the portal said the PBX is gone: why
}

// Verdict is the state with the deadlines that apply and one sentence for
// admins saying where the PBX stands and what happens next.
type Verdict struct {
	State           State
	Summary         string
	OfflineGraceEnd time.Time // zero when it does not apply
}

// Evaluate computes the state from the facts. It is a pure function: the
// same facts give the same verdict, whatever the time of the call.
func Evaluate(f Facts) Verdict {
	switch {
	case f.Gone != "":
		return Verdict{State: Deleted, Summary: fmt.Sprintf(
			"This appliance no longer holds the PBX (%s); the PBX stays stopped until a new PBX key is activated.", f.Gone)}
	case f.Doc == nil:
		return Verdict{State: Unactivated, Summary: "No PBX key activated yet: paste the PBX key from the portal into `pbx-agent activate`."}
	}
	graceEnd := f.LastSuccess.Add(f.Doc.OfflineGracePeriod())
	since := f.Now.Sub(f.LastSuccess)
	switch {
	case since <= f.Doc.HeartbeatTolerancePeriod():
		return Verdict{State: Active, OfflineGraceEnd: graceEnd,
			Summary: fmt.Sprintf("Licensed by the portal, last reached %s.", stamp(f.LastSuccess))}
	case f.Now.Before(graceEnd):
		return Verdict{State: Offline, OfflineGraceEnd: graceEnd, Summary: fmt.Sprintf(
			"The portal has not been reached since %s; the PBX runs normally until %s (%s), then admits no new users.",
			stamp(f.LastSuccess), stamp(graceEnd), Relative(graceEnd, f.Now))}
	default:
		return Verdict{State: Lapsed, OfflineGraceEnd: graceEnd, Summary: fmt.Sprintf(
			"The portal has not been reached since %s and the offline grace is over: existing users keep working, no new users are admitted until the portal is reached.",
			stamp(f.LastSuccess))}
	}
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// Relative says how far t is from now for people: "in 3 days",
// "5 hours ago", "now".
func Relative(t, now time.Time) string {
	d := t.Sub(now)
	past := d < 0
	if past {
		d = -d
	}
	var s string
	switch {
	case d >= 48*time.Hour:
		s = plural(int(d.Round(24*time.Hour)/(24*time.Hour)), "day")
	case d >= 2*time.Hour:
		s = plural(int(d.Round(time.Hour)/time.Hour), "hour")
	case d >= 90*time.Second:
		s = plural(int(d.Round(time.Minute)/time.Minute), "minute")
	case d >= time.Second:
		s = plural(int(d.Round(time.Second)/time.Second), "second")
	default:
		return "now"
	}
	if past {
		return s + " ago"
	}
	return "in " + s
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
