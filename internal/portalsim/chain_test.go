package portalsim

import (
	"context"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// A state restored from the past (its link is an old one) forks the chain
// once: the portal answers, re-anchors and records the fork for the
// partner. A lost answer (the link before the head) is no fork.
func TestChainForkIsReanchoredAndRecorded(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	snapshot := a.link // a backup taken now
	for range 3 {
		if ans, _ := a.heartbeat(1); ans.Chain != "" {
			t.Fatalf("in-order heartbeat: chain note %q", ans.Chain)
		}
	}

	// The answer to this one is lost: the agent sends its link again.
	before := a.link
	a.heartbeat(1)
	a.link = before
	if ans, _ := a.heartbeat(1); ans.Status != protocol.StatusOK || ans.Chain != "" {
		t.Errorf("after a lost answer: %q, chain %q; want ok, no fork", ans.Status, ans.Chain)
	}

	a.link = snapshot // the state folder restored from the backup
	ans, _ := a.heartbeat(1)
	if ans.Status != protocol.StatusOK || ans.Chain != protocol.ChainReanchored {
		t.Fatalf("restored state: %q, chain %q; want ok, re-anchored", ans.Status, ans.Chain)
	}
	got := f.show("acme.example")
	if got.ChainForks != 1 || got.LastFork == nil || got.LastFork.ApplianceSeq != snapshot.Seq || got.Cloned != nil {
		t.Errorf("portal's record: forks %d, last %+v, cloned %v; want 1 fork at appliance seq %d, not cloned",
			got.ChainForks, got.LastFork, got.Cloned, snapshot.Seq)
	}
	if ans, _ := a.heartbeat(1); ans.Status != protocol.StatusOK || ans.Chain != "" {
		t.Errorf("after the re-anchor: %q, chain %q; want ok, in order", ans.Status, ans.Chain)
	}
}

// Two copies of one appliance that both keep heartbeating are refused,
// with a signed answer, until the partner resyncs the PBX.
func TestChainClonesAreRefusedUntilResync(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	a.heartbeat(1)
	clone := *a // the state folder copied, device key and all

	seen := map[protocol.Status]int{}
	for i := range 6 {
		who := a
		if i%2 == 1 {
			who = &clone
		}
		ans, _ := who.heartbeat(1)
		seen[ans.Status]++
	}
	if seen[protocol.StatusRefused] == 0 {
		t.Fatalf("two copies heartbeating in turn: answers %v; want refusals", seen)
	}
	got := f.show("acme.example")
	if got.Cloned == nil {
		t.Fatalf("the portal does not show the PBX as cloned: %+v", got)
	}
	ans, _ := a.heartbeat(1)
	if ans.Status != protocol.StatusRefused || ans.Reason != protocol.RefusedCloned {
		t.Errorf("after the clone was seen: %q %q; want refused, cloned", ans.Status, ans.Reason)
	}

	if _, err := f.admin.Resync(context.Background(), "acme.example"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if ans, _ := a.heartbeat(1); ans.Status != protocol.StatusOK {
			t.Fatalf("after resync, the one copy left: %q; want ok", ans.Status)
		}
	}
	if got := f.show("acme.example"); got.Cloned != nil {
		t.Errorf("still cloned after resync: %v", got.Cloned)
	}
}

// An activation request that does not carry this PBX's current key leaves
// no nonce behind: a flood of them neither grows nor rewrites the state.
func TestUnauthenticatedActivationsLeaveNoTrace(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, acmeCounts)
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)
	nonces := func() int {
		f.portal.mu.Lock()
		defer f.portal.mu.Unlock()
		return len(f.portal.st.Nonces)
	}
	before := nonces()
	for range 50 {
		b := newTestAgent(f, license.ModelVM)
		req := b.activateReq("not-a-key", f.portal.Now())
		if r := b.post(protocol.PathActivate, b.sign(protocol.TypeActivate, req)); r.status == 200 {
			t.Fatalf("a garbage key was activated: %s", r.body)
		}
		other := newTestAgent(f, license.ModelVM) // a valid key, bound elsewhere
		req = other.activateReq(key, f.portal.Now())
		if r := other.post(protocol.PathActivate, other.sign(protocol.TypeActivate, req)); r.status != 409 {
			t.Fatalf("another appliance with the bound key: %d %s; want 409", r.status, r.body)
		}
	}
	if after := nonces(); after != before {
		t.Errorf("100 unauthenticated activations stored %d nonces; want none", after-before)
	}
}
