package admission

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

var t0 = time.Date(2027, 3, 10, 10, 0, 0, 0, time.UTC)

func doc(counts license.Counts, edit ...func(*license.Document)) *license.Document {
	d := &license.Document{Version: 1, Revision: 1, Term: license.Monthly, Counts: counts}
	for _, e := range edit {
		e(d)
	}
	return d
}

func cover(d *license.Document) { d.HigherCoversLower = true }

func soft(factor float64, until time.Time) func(*license.Document) {
	return func(d *license.Document) { d.SoftOverage = &license.SoftOverage{Factor: factor, Until: until} }
}

func active(d *license.Document, used, reserved license.Counts) Input {
	return Input{Now: t0, State: license.Active, Doc: d, Used: used, Reserved: reserved}
}

func TestDecide(t *testing.T) {
	premium10 := doc(license.Counts{license.UCPremium: 10, license.PBXBasic: 2})
	tests := []struct {
		name string
		in   Input
		req  Request
		// want: allowed with remaining, or denied with kind and reason parts.
		allowed   bool
		remaining int
		kind      string
		reason    []string
	}{
		{name: "room left", in: active(premium10, license.Counts{license.UCPremium: 6}, nil),
			req: Request{license.UCPremium, 1}, allowed: true, remaining: 3},
		{name: "reservations count", in: active(premium10, license.Counts{license.UCPremium: 6}, license.Counts{license.UCPremium: 3}),
			req: Request{license.UCPremium, 1}, allowed: true, remaining: 0},
		{name: "the last seat", in: active(premium10, license.Counts{license.UCPremium: 9}, nil),
			req: Request{license.UCPremium, 1}, allowed: true, remaining: 0},
		{name: "several at once", in: active(premium10, license.Counts{license.UCPremium: 5}, nil),
			req: Request{license.UCPremium, 5}, allowed: true, remaining: 0},
		{name: "offline admits", in: func() Input { i := active(premium10, license.Counts{}, nil); i.State = license.Offline; return i }(),
			req: Request{license.PBXBasic, 2}, allowed: true, remaining: 0},
		{name: "full", in: active(premium10, license.Counts{license.UCPremium: 9}, license.Counts{license.UCPremium: 1}),
			req: Request{license.UCPremium, 1}, kind: KindFull,
			reason: []string{"UC-Premium is full", "10 licensed, 9 used, 1 reserved", "buy more UC-Premium licences"}},
		{name: "fewer free than asked", in: active(premium10, license.Counts{license.UCPremium: 7}, nil),
			req: Request{license.UCPremium, 5}, kind: KindFull,
			reason: []string{"asked for 5 UC-Premium users but 3 are free", "10 licensed, 7 used, 0 reserved"}},
		{name: "one free", in: active(premium10, license.Counts{license.UCPremium: 9}, nil),
			req: Request{license.UCPremium, 2}, kind: KindFull, reason: []string{"but 1 is free"}},
		{name: "not licensed at all", in: active(premium10, license.Counts{}, nil),
			req: Request{license.UCWizyconf, 1}, kind: KindFull,
			reason: []string{"no UC-Wizyconf licence: 0 licensed; buy UC-Wizyconf licences on the portal"}},
		{name: "over-use", in: active(premium10, license.Counts{license.UCPremium: 12}, nil),
			req: Request{license.UCPremium, 1}, kind: KindOveruse,
			reason: []string{"UC-Premium is over-used: 12 users for 10 licences, 2 of them without a licence", "no new UC-Premium users"}},
		{name: "over-use of one profile leaves others alone", in: active(premium10, license.Counts{license.UCPremium: 12}, nil),
			req: Request{license.PBXBasic, 2}, allowed: true, remaining: 0},

		{name: "soft overage allows a little more", in: active(doc(license.Counts{license.UCPremium: 10}, soft(1.1, t0.Add(72*time.Hour))),
			license.Counts{license.UCPremium: 10}, nil), req: Request{license.UCPremium, 1}, allowed: true, remaining: 0},
		{name: "soft overage used up", in: active(doc(license.Counts{license.UCPremium: 10}, soft(1.1, t0.Add(72*time.Hour))),
			license.Counts{license.UCPremium: 11}, nil), req: Request{license.UCPremium, 1}, kind: KindOveruse,
			reason: []string{"11 users for 10 licences (up to 11 until 2027-03-13 10:00 UTC by the portal's soft overage), 1 of them"}},
		{name: "soft overage over", in: active(doc(license.Counts{license.UCPremium: 10}, soft(1.1, t0)),
			license.Counts{license.UCPremium: 10}, nil), req: Request{license.UCPremium, 1}, kind: KindFull,
			reason: []string{"UC-Premium is full: 10 licensed, 10 used"}},
		{name: "soft overage rounds down, without float error", in: active(doc(license.Counts{license.UCPremium: 100}, soft(1.15, t0.Add(time.Hour))),
			license.Counts{license.UCPremium: 114}, nil), req: Request{license.UCPremium, 1}, allowed: true, remaining: 0},
		{name: "soft overage too small to matter", in: active(doc(license.Counts{license.UCPremium: 5}, soft(1.1, t0.Add(time.Hour))),
			license.Counts{license.UCPremium: 5}, nil), req: Request{license.UCPremium, 1}, kind: KindFull,
			reason: []string{"UC-Premium is full: 5 licensed, 5 used"}},

		{name: "no cover by default", in: active(doc(license.Counts{license.UCPremium: 10, license.UCEssential: 1}),
			license.Counts{license.UCEssential: 1}, nil), req: Request{license.UCEssential, 1}, kind: KindFull,
			reason: []string{"UC-Essential is full: 1 licensed, 1 used, 0 reserved; buy more"}},
		{name: "a free higher licence covers a lower user", in: active(doc(license.Counts{license.UCPremium: 10, license.UCEssential: 1}, cover),
			license.Counts{license.UCEssential: 1, license.UCPremium: 7}, nil), req: Request{license.UCEssential, 2}, allowed: true, remaining: 1},
		{name: "cover with no licence of the profile itself", in: active(doc(license.Counts{license.UCBusiness: 2}, cover),
			license.Counts{}, nil), req: Request{license.PBXBasic, 1}, allowed: true, remaining: 1},
		{name: "a lower licence never covers a higher user", in: active(doc(license.Counts{license.PBXBasic: 5}, cover),
			license.Counts{}, nil), req: Request{license.UCPremium, 1}, kind: KindFull, reason: []string{"UC-Premium is full: 0 licensed"}},
		{name: "covered lower users take higher licences", in: active(doc(license.Counts{license.UCPremium: 10, license.PBXBasic: 0}, cover),
			license.Counts{license.PBXBasic: 3, license.UCPremium: 7}, nil), req: Request{license.UCPremium, 1}, kind: KindFull,
			reason: []string{"UC-Premium is full: 10 licensed, 7 used, 0 reserved", "its licences also cover users of lower profiles: PBX-BASIC 0 licensed, 3 used"}},
		{name: "cover used up", in: active(doc(license.Counts{license.UCEssential: 1, license.UCPremium: 1}, cover),
			license.Counts{license.UCEssential: 1}, license.Counts{license.UCPremium: 1}), req: Request{license.UCEssential, 1}, kind: KindFull,
			reason: []string{"UC-Essential is full", "no free licence of a higher profile covers it", "UC-Premium 1 licensed, 0 used, 1 reserved"}},
		{name: "stand-alone profiles are never covered", in: active(doc(license.Counts{license.UCPremium: 10}, cover),
			license.Counts{}, nil), req: Request{license.UCWizyconf, 1}, kind: KindFull, reason: []string{"no UC-Wizyconf licence"}},

		{name: "unactivated", in: Input{Now: t0, State: license.Unactivated, Summary: "No PBX key activated yet."},
			req: Request{license.UCPremium, 1}, kind: KindState, reason: []string{"no new users while the licence is unactivated: No PBX key activated yet."}},
		{name: "lapsed", in: func() Input { i := active(premium10, license.Counts{}, nil); i.State = license.Lapsed; return i }(),
			req: Request{license.UCPremium, 1}, kind: KindState, reason: []string{"licence is lapsed"}},
		{name: "stopping", in: func() Input { i := active(premium10, license.Counts{}, nil); i.State = license.Stopping; return i }(),
			req: Request{license.UCPremium, 1}, kind: KindState, reason: []string{"licence is stopping"}},
		{name: "stopped", in: func() Input { i := active(premium10, license.Counts{}, nil); i.State = license.Stopped; return i }(),
			req: Request{license.UCPremium, 1}, kind: KindState, reason: []string{"licence is stopped"}},
		{name: "deleted", in: Input{Now: t0, State: license.Deleted}, req: Request{license.UCPremium, 1}, kind: KindState,
			reason: []string{"licence is deleted"}},
		{name: "not counted yet", in: func() Input {
			i := active(premium10, nil, nil)
			i.CountErr = "users source sqlite /var/lib/wms/users.db: unable to open database file"
			return i
		}(), req: Request{license.UCPremium, 1}, kind: KindCounts, reason: []string{"not counted yet", "unable to open database file", "users.*"}},
		{name: "stale count", in: func() Input {
			i := active(premium10, license.Counts{}, nil)
			i.Stale, i.CountErr = "3 minutes old", "no such table: users"
			return i
		}(), req: Request{license.UCPremium, 1}, kind: KindCounts, reason: []string{"3 minutes old and counting fails (no such table: users)"}},
		{name: "unknown profile", in: active(premium10, license.Counts{}, nil), req: Request{"uc-gold", 1}, kind: KindRequest,
			reason: []string{`unknown profile "uc-gold"`}},
		{name: "zero users", in: active(premium10, license.Counts{}, nil), req: Request{license.UCPremium, 0}, kind: KindRequest,
			reason: []string{"asked for 0 users"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.in, tt.req)
			if d.Allowed != tt.allowed {
				t.Fatalf("allowed = %v (reason %q), want %v", d.Allowed, d.Reason, tt.allowed)
			}
			if tt.allowed {
				if d.Remaining != tt.remaining || d.Reason != "" || d.Kind != "" {
					t.Errorf("remaining = %d, reason %q, kind %q; want %d", d.Remaining, d.Reason, d.Kind, tt.remaining)
				}
				return
			}
			if d.Kind != tt.kind {
				t.Errorf("kind = %q, want %q (reason %q)", d.Kind, tt.kind, d.Reason)
			}
			for _, part := range tt.reason {
				if !strings.Contains(d.Reason, part) {
					t.Errorf("reason %q\n  lacks %q", d.Reason, part)
				}
			}
		})
	}
}

// TestDecideNeverOversubscribes admits one user at a time, reserving each,
// and checks that the seats given never exceed what the licence holds.
func TestDecideNeverOversubscribes(t *testing.T) {
	docs := map[string]*license.Document{
		"plain": doc(license.Counts{license.PBXBasic: 3, license.UCEssential: 2, license.UCPremium: 4}),
		"cover": doc(license.Counts{license.PBXBasic: 3, license.UCEssential: 2, license.UCPremium: 4}, cover),
		"soft":  doc(license.Counts{license.PBXBasic: 3, license.UCEssential: 2, license.UCPremium: 40}, soft(1.1, t0.Add(time.Hour))),
	}
	for name, d := range docs {
		t.Run(name, func(t *testing.T) {
			b := NewBook(time.Minute)
			given := license.Counts{}
			// Ask in a fixed, mixed order until everything is denied.
			order := []license.Profile{license.PBXBasic, license.UCPremium, license.UCEssential, license.UCBusiness}
			for round := 0; round < 100; round++ {
				any := false
				for _, p := range order {
					in := active(d, license.Counts{}, b.Reserved(t0))
					if dec := Decide(in, Request{p, 1}); dec.Allowed {
						b.Reserve(t0, p, 1)
						given[p]++
						any = true
					}
				}
				if !any {
					break
				}
			}
			// The soft overage lets the PBX run over its licences: that is
			// over-use by design, bounded by the total below.
			if ov := Overuse(d, given); ov != nil && d.SoftOverage == nil {
				t.Errorf("gave %v for %v: over-use %v", given, d.Counts, ov)
			}
			var licensed int
			for _, p := range license.Profiles() {
				licensed += capacity(active(d, nil, nil), p.ID)
			}
			if given.Total() != licensed {
				t.Errorf("gave %d seats (%v), the licence holds %d", given.Total(), given, licensed)
			}
		})
	}
}

func TestOveruse(t *testing.T) {
	tests := []struct {
		name string
		doc  *license.Document
		used license.Counts
		want license.Counts
	}{
		{"within", doc(license.Counts{license.UCPremium: 10}), license.Counts{license.UCPremium: 10}, nil},
		{"over", doc(license.Counts{license.UCPremium: 10}), license.Counts{license.UCPremium: 12, license.PBXService: 1},
			license.Counts{license.UCPremium: 2, license.PBXService: 1}},
		{"not counted", doc(license.Counts{license.UCPremium: 10}), nil, nil},
		{"no licence", nil, license.Counts{license.UCPremium: 1}, nil},
		{"covered by a higher profile", doc(license.Counts{license.UCPremium: 10, license.PBXBasic: 1}, cover),
			license.Counts{license.UCPremium: 8, license.PBXBasic: 3}, nil},
		{"partly covered", doc(license.Counts{license.UCPremium: 10, license.PBXBasic: 1}, cover),
			license.Counts{license.UCPremium: 9, license.PBXBasic: 4}, license.Counts{license.PBXBasic: 2}},
		{"cover flows down through tiers", doc(license.Counts{license.UCPremium: 3, license.UCBusiness: 1}, cover),
			license.Counts{license.UCPremium: 1, license.UCBusiness: 2, license.UCEssential: 1}, nil},
		{"higher over-use is not covered by lower", doc(license.Counts{license.UCPremium: 1, license.PBXBasic: 5}, cover),
			license.Counts{license.UCPremium: 2}, license.Counts{license.UCPremium: 1}},
		{"soft overage is still over-use", doc(license.Counts{license.UCPremium: 10}, soft(1.5, t0.Add(time.Hour))),
			license.Counts{license.UCPremium: 11}, license.Counts{license.UCPremium: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Overuse(tt.doc, tt.used); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Overuse = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBook(t *testing.T) {
	const ttl = time.Minute
	p, q := license.UCPremium, license.PBXBasic
	type op struct {
		at       time.Duration  // since t0
		reserve  int            // seats of p to reserve
		reserveQ int            // seats of q
		count    license.Counts // a new count (prev is the one before)
	}
	tests := []struct {
		name     string
		ops      []op
		checkAt  time.Duration
		want     license.Counts
		released int
	}{
		{name: "held", ops: []op{{reserve: 2}}, checkAt: ttl - time.Nanosecond, want: license.Counts{p: 2}},
		{name: "expired", ops: []op{{reserve: 2}}, checkAt: ttl, want: license.Counts{}},
		{name: "expire oldest only", ops: []op{{reserve: 1}, {at: 30 * time.Second, reserve: 2}}, checkAt: ttl, want: license.Counts{p: 2}},
		{name: "a count that shows the users releases them", ops: []op{
			{count: license.Counts{p: 5}}, {at: time.Second, reserve: 2}, {at: 2 * time.Second, count: license.Counts{p: 7}},
		}, checkAt: 3 * time.Second, want: license.Counts{}, released: 2},
		{name: "a count showing some releases the oldest", ops: []op{
			{count: license.Counts{p: 5}}, {at: time.Second, reserve: 2}, {at: 2 * time.Second, reserve: 1},
			{at: 3 * time.Second, count: license.Counts{p: 6}},
		}, checkAt: 4 * time.Second, want: license.Counts{p: 2}, released: 1},
		{name: "a rise of another profile releases nothing", ops: []op{
			{count: license.Counts{p: 5}}, {at: time.Second, reserve: 1}, {at: 2 * time.Second, count: license.Counts{p: 5, q: 3}},
		}, checkAt: 3 * time.Second, want: license.Counts{p: 1}},
		{name: "the first count releases nothing", ops: []op{
			{reserve: 1}, {at: time.Second, count: license.Counts{p: 9}},
		}, checkAt: 2 * time.Second, want: license.Counts{p: 1}},
		{name: "a fall releases nothing", ops: []op{
			{count: license.Counts{p: 5}}, {reserve: 1, reserveQ: 1}, {at: time.Second, count: license.Counts{p: 4, q: 1}},
		}, checkAt: 2 * time.Second, want: license.Counts{p: 1}, released: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBook(ttl)
			var prev license.Counts
			released := 0
			for _, o := range tt.ops {
				now := t0.Add(o.at)
				b.Reserve(now, p, o.reserve)
				b.Reserve(now, q, o.reserveQ)
				if o.count != nil {
					released += b.Counted(now, prev, o.count)
					prev = o.count
				}
			}
			if got := b.Reserved(t0.Add(tt.checkAt)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Reserved = %v, want %v", got, tt.want)
			}
			if released != tt.released {
				t.Errorf("released %d, want %d", released, tt.released)
			}
			if got := b.ReservedOf(t0.Add(tt.checkAt), p); got != tt.want[p] {
				t.Errorf("ReservedOf = %d, want %d", got, tt.want[p])
			}
		})
	}
}

// TestBookHeldBy follows one owner's seats through reservations, a count
// that shows some of its users (oldest reservation first, whoever made it)
// and expiry.
func TestBookHeldBy(t *testing.T) {
	const ttl = time.Minute
	p, q := license.UCPremium, license.PBXBasic
	b := NewBook(ttl)
	b.ReserveFor(t0, 1001, p, 3)
	b.ReserveFor(t0, 1002, p, 1)
	b.ReserveFor(t0.Add(time.Second), 1001, q, 2)
	b.Reserve(t0.Add(time.Second), p, 4) // no owner
	check := func(at time.Duration, want1001, want1002, wantNone int) {
		t.Helper()
		now := t0.Add(at)
		if got := []int{b.HeldBy(now, 1001), b.HeldBy(now, 1002), b.HeldBy(now, NoOwner)}; !reflect.DeepEqual(got, []int{want1001, want1002, wantNone}) {
			t.Errorf("at %v: held by 1001, 1002, nobody = %v, want %v", at, got, []int{want1001, want1002, wantNone})
		}
	}
	check(2*time.Second, 5, 1, 4)
	// Two users of p show up: the oldest reservation (1001's) gives them.
	b.Counted(t0.Add(3*time.Second), license.Counts{p: 10}, license.Counts{p: 12})
	check(3*time.Second, 3, 1, 4)
	// The first reservations expire, then the rest.
	check(ttl, 2, 0, 4)
	check(ttl+time.Second, 0, 0, 0)
	if len(b.byOwner) != 0 {
		t.Errorf("owners left after every seat went: %v", b.byOwner)
	}
}

// TestOveruseReasonNamesItsCause: over-use comes from a decrease or from
// users created past the licences (a WMS that ignored a denial). The
// reason names the decrease only when the appliance saw one, with its
// date and counts; otherwise it says the users were created beyond it.
func TestOveruseReasonNamesItsCause(t *testing.T) {
	doc := &license.Document{Counts: license.Counts{license.UCPremium: 10, license.PBXBasic: 2}}
	lowered := time.Date(2027, 2, 3, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		decreases license.Decreases
		want      string
		not       string
	}{
		{name: "never decreased",
			want: "2 of them without a licence, users created beyond the licence (no decrease of it was seen on this appliance); no new UC-Premium users",
			not:  "after a decrease"},
		{name: "another profile decreased", decreases: license.Decreases{license.PBXBasic: {At: lowered, From: 5, To: 2, Revision: 4}},
			want: "users created beyond the licence", not: "after a decrease"},
		{name: "decreased", decreases: license.Decreases{license.UCPremium: {At: lowered, From: 15, To: 10, Revision: 4}},
			want: "2 of them without a licence, after a decrease on 2027-02-03 (UC-Premium 15 → 10); no new UC-Premium users",
			not:  "created beyond"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Now: t0, State: license.Active, Doc: doc, Decreases: tt.decreases,
				Used: license.Counts{license.UCPremium: 12}, Reserved: license.Counts{}}
			d := Decide(in, Request{license.UCPremium, 1})
			if d.Kind != KindOveruse || !strings.Contains(d.Reason, tt.want) || strings.Contains(d.Reason, tt.not) {
				t.Errorf("over-use denial %q (%s): want %q, without %q", d.Reason, d.Kind, tt.want, tt.not)
			}
		})
	}
}
