// Package admission is the arithmetic of admission: may N more users of a
// profile be added, given the licence, the lifecycle state, the users
// counted and the seats reserved for users being added. It is pure: the
// caller passes every fact in, the licence time included, and gets a
// decision with a reason an admin can act on. The daemon holds the
// reservations (a Book) and serialises decisions with them.
package admission

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Input is everything a decision depends on.
type Input struct {
	Now     time.Time     // the licence clock: ends the soft overage
	State   license.State // the lifecycle state now
	Summary string        // the state's sentence for admins (license.Verdict.Summary)
	Doc     *license.Document

	// Used is the last good count of users per profile; nil when no count
	// has succeeded yet, and then CountErr says why. Stale says the last
	// good count is too old to trust (the source has been failing), in
	// words, e.g. "3 minutes old".
	Used     license.Counts
	CountErr string
	Stale    string

	Reserved license.Counts // seats held for users being added

	// Decreases is the last decrease of each profile seen on this
	// appliance and not undone since: it tells an over-use after a
	// decrease from users created beyond the licence.
	Decreases license.Decreases
}

// Request asks for Count more users of Profile.
type Request struct {
	Profile license.Profile
	Count   int
}

// Denial kinds, for logs and the audit log.
const (
	KindRequest = "request" // the request itself is invalid
	KindState   = "state"   // the lifecycle state admits nobody
	KindCounts  = "counts"  // the users are not counted (yet, or any more)
	KindFull    = "full"    // not enough free licences
	KindOveruse = "overuse" // more users than licences already
	KindBound   = "bound"   // the asking peer holds as many reserved seats as it may (the daemon's per-peer bound)
)

// Decision is the answer.
type Decision struct {
	Allowed bool
	// Remaining is how many more users of the profile could be admitted
	// after this request's: when allowed, at least 0.
	Remaining int
	Reason    string // why not, for admins; empty when allowed
	Kind      string // the kind of denial; empty when allowed

	// The profile's figures the decision used: licensed, the ceiling the
	// soft overage allows (Capacity, equal to Licensed without one), users
	// counted and seats reserved.
	Licensed, Capacity, Used, Reserved int
}

// admits reports whether state s lets new users in.
func admits(s license.State) bool { return s == license.Active || s == license.Offline }

// Decide answers req. A request may be admitted in states active and
// offline only, with a known, fresh user count, and only when the
// profile's free licences (after the seats reserved) hold req.Count more
// users: its own licences, raised by an active soft overage, and, when
// the licence lets higher profiles cover lower ones, free licences of
// higher profiles.
func Decide(in Input, req Request) Decision {
	info, ok := req.Profile.Info()
	switch {
	case !ok:
		return deny(Decision{}, KindRequest, fmt.Sprintf("unknown profile %q", req.Profile))
	case req.Count < 1:
		return deny(Decision{}, KindRequest, fmt.Sprintf("asked for %d users: ask for 1 or more", req.Count))
	}
	d := Decision{}
	if in.Doc != nil {
		d.Licensed = in.Doc.Counts[req.Profile]
		d.Capacity = capacity(in, req.Profile)
	}
	d.Used, d.Reserved = in.Used[req.Profile], in.Reserved[req.Profile]

	switch {
	case in.Doc == nil || !admits(in.State):
		reason := fmt.Sprintf("no new users while the licence is %s", in.State)
		if in.Summary != "" {
			reason += ": " + in.Summary
		}
		return deny(d, KindState, reason)
	case in.Used == nil:
		why := in.CountErr
		if why == "" {
			why = "no count has finished yet"
		}
		return deny(d, KindCounts, "the users on this PBX are not counted yet, so no new users are admitted: "+why+
			"; check users.* in the pbx-agent configuration")
	case in.Stale != "":
		why := ""
		if in.CountErr != "" {
			why = " (" + in.CountErr + ")"
		}
		return deny(d, KindCounts, fmt.Sprintf("the last count of users is %s and counting fails%s, so no new users are admitted; check users.* in the pbx-agent configuration",
			in.Stale, why))
	}

	free, from := freeSeats(in, req.Profile, info)
	if free >= req.Count {
		d.Allowed, d.Remaining = true, free-req.Count
		return d
	}
	if ov := Overuse(in.Doc, in.Used)[req.Profile]; ov > 0 {
		return deny(d, KindOveruse, fmt.Sprintf(
			"%s is over-used: %d %s for %d %s%s, %d of them without a licence, %s; no new %s users until users are removed or licences added on the portal",
			info.Name, d.Used, plural(d.Used, "user", "users"), d.Licensed, plural(d.Licensed, "licence", "licences"),
			softNote(in, req.Profile), ov, overuseCause(in, info), info.Name))
	}
	var sb strings.Builder
	switch {
	case d.Capacity == 0 && !coverable(in, info):
		fmt.Fprintf(&sb, "no %s licence: 0 licensed", info.Name)
		if d.Used > 0 || d.Reserved > 0 {
			fmt.Fprintf(&sb, ", %d used, %d reserved", d.Used, d.Reserved)
		}
		fmt.Fprintf(&sb, "; buy %s licences on the portal", info.Name)
		return deny(d, KindFull, sb.String())
	case free <= 0:
		fmt.Fprintf(&sb, "%s is full: ", info.Name)
	default:
		fmt.Fprintf(&sb, "asked for %d %s users but %d %s free: ", req.Count, info.Name, free, plural(free, "is", "are"))
	}
	sb.WriteString(figures(in, req.Profile))
	if coverable(in, info) {
		var higher, lower []string
		for _, q := range license.Profiles() {
			switch {
			case q.Tier > info.Tier:
				higher = append(higher, q.Name+" "+figures(in, q.ID))
			case q.Tier >= from && q.Tier < info.Tier && q.Tier > 0:
				lower = append(lower, q.Name+" "+figures(in, q.ID))
			}
		}
		if len(higher) > 0 {
			sb.WriteString("; no free licence of a higher profile covers it: " + strings.Join(higher, "; "))
		}
		if len(lower) > 0 {
			sb.WriteString("; its licences also cover users of lower profiles: " + strings.Join(lower, "; "))
		}
	}
	fmt.Fprintf(&sb, "; buy more %s licences on the portal, or remove a %s user", info.Name, info.Name)
	return deny(d, KindFull, sb.String())
}

// overuseCause says where an over-use of a profile comes from: a
// decrease of its licences this appliance saw, or users created beyond
// the licence (no decrease was seen since the activation).
func overuseCause(in Input, info license.ProfileInfo) string {
	if dec, ok := in.Decreases[info.ID]; ok {
		return fmt.Sprintf("after a decrease on %s (%s %d → %d)", dec.At.UTC().Format(time.DateOnly), info.Name, dec.From, dec.To)
	}
	return "users created beyond the licence (no decrease of it was seen on this appliance)"
}

func deny(d Decision, kind, reason string) Decision {
	d.Allowed, d.Remaining, d.Kind, d.Reason = false, 0, kind, reason
	return d
}

// figures describes one profile's seats: "10 licensed, 9 used, 1
// reserved" (reserved: admitted, not counted yet), with the soft
// overage's ceiling when one applies.
func figures(in Input, p license.Profile) string {
	return fmt.Sprintf("%d licensed%s, %d used, %d reserved",
		in.Doc.Counts[p], softNote(in, p), in.Used[p], in.Reserved[p])
}

// softNote says what an active soft overage allows for p, or nothing.
func softNote(in Input, p license.Profile) string {
	if !softActive(in) {
		return ""
	}
	l, c := in.Doc.Counts[p], capacity(in, p)
	if c == l {
		return ""
	}
	return fmt.Sprintf(" (up to %d until %s by the portal's soft overage)", c, in.Doc.SoftOverage.Until.UTC().Format("2006-01-02 15:04 UTC"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// softActive reports whether the licence's soft overage applies now.
func softActive(in Input) bool {
	so := in.Doc.SoftOverage
	return so != nil && so.Factor > 1 && in.Now.Before(so.Until)
}

// capacity is how many users of p the licence holds now: its count, times
// the soft overage's factor while that lasts, rounded down.
func capacity(in Input, p license.Profile) int {
	n := in.Doc.Counts[p]
	if !softActive(in) {
		return n
	}
	// The epsilon keeps 100 × 1.15 from rounding down to 114.
	return int(math.Floor(float64(n)*in.Doc.SoftOverage.Factor + 1e-9))
}

// coverable reports whether users of a profile of this tier may be held
// by licences of higher profiles.
func coverable(in Input, info license.ProfileInfo) bool {
	return in.Doc.HigherCoversLower && info.Tier > 0
}

// freeSeats is how many more users of p fit, and the lowest tier whose
// sum binds it (p's own tier, or 0 for a profile that is not covered).
// Users of a tier may take any licence of their tier or above, so the
// users of tiers t and up must fit in the licences of tiers t and up, for
// every t; a new user of p's tier counts in the sums of every t up to that
// tier, and the tightest one binds.
func freeSeats(in Input, p license.Profile, info license.ProfileInfo) (free, from int) {
	demand := func(q license.Profile) int { return in.Used[q] + in.Reserved[q] }
	if !coverable(in, info) {
		return capacity(in, p) - demand(p), info.Tier
	}
	free = math.MaxInt
	for t := 1; t <= info.Tier; t++ {
		supply, need := 0, 0
		for _, q := range license.Profiles() {
			if q.Tier >= t {
				supply += capacity(in, q.ID)
				need += demand(q.ID)
			}
		}
		if f := supply - need; f < free {
			free, from = f, t
		}
	}
	return free, from
}

// Overuse returns, per profile, how many users counted have no licence:
// users beyond the licensed count, after free licences of higher profiles
// cover lower ones when the licence allows it. The soft overage does not
// reduce it: it lets a PBX run over its licences for a while, which is
// still over-use. Profiles without over-use are absent; nil when none.
func Overuse(doc *license.Document, used license.Counts) license.Counts {
	if doc == nil || used == nil {
		return nil
	}
	var out license.Counts
	add := func(p license.Profile, n int) {
		if n > 0 {
			if out == nil {
				out = license.Counts{}
			}
			out[p] = n
		}
	}
	spare := 0 // free licences of higher tiers, when they cover lower ones
	profiles := license.Profiles()
	// Highest tier first, so spare licences flow down; the profiles that
	// stand alone (tier 0) take none.
	slices.SortStableFunc(profiles, func(a, b license.ProfileInfo) int { return b.Tier - a.Tier })
	for _, info := range profiles {
		have := doc.Counts[info.ID]
		if doc.HigherCoversLower && info.Tier > 0 {
			have += spare
			spare = max(0, have-used[info.ID])
		}
		add(info.ID, used[info.ID]-have)
	}
	return out
}
