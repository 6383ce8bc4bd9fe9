package admission

import (
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestBookHolds(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	b := NewBook(10 * time.Minute)
	b.ReserveFor(t0, 1001, license.UCPremium, 2)
	b.ReserveFor(t0, 1002, license.UCPremium, 1) // same expiry: one group
	b.ReserveFor(t0.Add(time.Minute), 1001, license.PBXBasic, 4)
	b.SetTTL(time.Minute) // a lowered TTL: this one expires first
	b.ReserveFor(t0.Add(2*time.Minute), 1001, license.UCPremium, 1)

	premium := func(p license.Profile, _ int64) bool { return p == license.UCPremium }
	got := b.Holds(t0.Add(2*time.Minute), premium)
	want := []Hold{{1, t0.Add(3 * time.Minute)}, {3, t0.Add(10 * time.Minute)}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("holds = %+v, want %+v (grouped by expiry, soonest first)", got, want)
	}
	of1001 := b.Holds(t0.Add(5*time.Minute), func(_ license.Profile, o int64) bool { return o == 1001 })
	if len(of1001) != 2 || of1001[0].Seats != 2 || of1001[1].Seats != 4 {
		t.Errorf("uid 1001's holds after the short one expired = %+v", of1001)
	}
	if got := b.Holds(t0.Add(20*time.Minute), premium); len(got) != 0 {
		t.Errorf("after every expiry: %+v", got)
	}
}
