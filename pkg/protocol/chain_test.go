package protocol

import "testing"

// The portal's end of the chain, walked through the cases an appliance
// brings: in order, a lost answer, a crash before saving, a restored state
// and two copies.
func TestPortalChainJudge(t *testing.T) {
	var c PortalChain
	agent := Link{}
	answer := func(n string) string { return "answer-" + n }
	send := func(l Link, a string) Link {
		c.Advance(l, a, false)
		return l.Next(a)
	}
	c.Restart(answer("act"))
	agent = agent.Next(answer("act"))
	if v := c.Judge(agent.Digest); v != LinkAccepted {
		t.Fatalf("first heartbeat: %v", v)
	}
	agent = send(agent, answer("1"))
	snapshot := agent
	agent = send(agent, answer("2"))

	// Lost answer: the portal advanced, the appliance did not.
	c.Advance(agent, answer("3-lost"), false)
	if v := c.Judge(agent.Digest); v != LinkAccepted {
		t.Fatalf("link before the head after a lost answer: %v; want accepted", v)
	}
	agent = send(agent, answer("3"))

	if v := c.Judge(snapshot.Digest); v != LinkForked {
		t.Fatalf("a link from a backup: %v; want forked", v)
	}
	original := agent
	c.Advance(snapshot, answer("r1"), true)
	restored := snapshot.Next(answer("r1"))
	if c.Forks != 1 {
		t.Errorf("forks = %d; want 1", c.Forks)
	}
	if v := c.Judge(restored.Digest); v != LinkAccepted {
		t.Fatalf("the re-anchored branch: %v; want accepted", v)
	}
	// The original kept running too: a clone.
	if v := c.Judge(original.Digest); v != LinkCloned {
		t.Errorf("the abandoned branch advancing again: %v; want cloned", v)
	}
	if v := (&PortalChain{}).Judge("anything"); v != LinkAccepted {
		t.Errorf("a chain not started accepts any link; got %v", v)
	}
}

func TestAnswerMatchesAndEcho(t *testing.T) {
	held := HeldLicence(3, "licence-3")
	ok := &Answer{Status: StatusOK, Revision: 3, Digest: Digest("licence-3"), Standing: StandingActive, Link: "L", Seq: 7}
	for _, tt := range []struct {
		name string
		edit func(*Answer)
		want bool
	}{
		{"the licence held", func(*Answer) {}, true},
		{"another revision", func(a *Answer) { a.Revision = 4 }, false},
		{"same revision, another document", func(a *Answer) { a.Digest = Digest("licence-3b") }, false},
		{"no standing stated", func(a *Answer) { a.Standing = "" }, false},
		{"not ok", func(a *Answer) { a.Status = StatusRefused }, false},
	} {
		a := *ok
		tt.edit(&a)
		if got := a.Matches(held); got != tt.want {
			t.Errorf("%s: Matches = %v; want %v", tt.name, got, tt.want)
		}
	}
	if err := ok.CheckEcho(Link{Digest: "L", Seq: 7}); err != nil {
		t.Errorf("echo of the link sent: %v", err)
	}
	if err := ok.CheckEcho(Link{Digest: "L", Seq: 8}); err == nil {
		t.Error("an answer echoing another sequence was accepted")
	}
	if err := ok.CheckEcho(Link{Digest: "M", Seq: 7}); err == nil {
		t.Error("an answer echoing another link was accepted")
	}
}
