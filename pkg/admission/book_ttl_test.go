package admission

import (
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestBookLoweredTTL: after SetTTL lowers the time to live (a reload), a
// new reservation expires on the new TTL while an older, longer one still
// holds. A book that stops at the first unexpired reservation keeps the
// new seats until the old one expires, and denies users it should admit.
func TestBookLoweredTTL(t *testing.T) {
	p := license.UCPremium
	b := NewBook(10 * time.Minute)
	b.ReserveFor(t0, 1001, p, 1) // expires at 10 min
	b.SetTTL(30 * time.Second)
	b.ReserveFor(t0.Add(time.Second), 1002, p, 2) // expires at 31 s
	b.ReserveFor(t0.Add(2*time.Second), 1003, p, 4)

	at := func(d time.Duration) time.Time { return t0.Add(d) }
	if got := b.ReservedOf(at(30*time.Second), p); got != 7 {
		t.Fatalf("at 30 s: %d seats held, want 7", got)
	}
	if got := b.ReservedOf(at(31*time.Second), p); got != 5 {
		t.Errorf("at 31 s: %d seats held, want 5: the reservation made on the lowered TTL did not expire", got)
	}
	if got := b.HeldBy(at(32*time.Second), 1003); got != 0 {
		t.Errorf("at 32 s: owner 1003 holds %d seats, want 0", got)
	}
	if got := b.HeldBy(at(32*time.Second), 1001); got != 1 {
		t.Errorf("at 32 s: owner 1001 holds %d seats, want 1: the older reservation keeps its own expiry", got)
	}
	// A TTL raised again: the newest reservation outlives an older short one.
	b.SetTTL(time.Hour)
	b.Reserve(at(40*time.Second), p, 8)
	b.SetTTL(time.Second)
	b.Reserve(at(41*time.Second), p, 16)
	if got := b.ReservedOf(at(42*time.Second), p); got != 9 {
		t.Errorf("at 42 s: %d seats held, want 9 (1 + 8)", got)
	}
	if got := b.ReservedOf(at(10*time.Minute), p); got != 8 {
		t.Errorf("at 10 min: %d seats held, want 8", got)
	}
	if got := b.ReservedOf(at(40*time.Second+time.Hour), p); got != 0 {
		t.Errorf("after every expiry: %d seats held, want 0", got)
	}
	if len(b.held) != 0 || len(b.byOwner) != 0 {
		t.Errorf("left after every expiry: held %v, owners %v", b.held, b.byOwner)
	}
}
