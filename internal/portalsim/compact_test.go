package portalsim

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// compactReq is a compact heartbeat holding revision, at portal time.
func (a *testAgent) compactReq(revision int64, report protocol.Report) protocol.CompactHeartbeat {
	return protocol.CompactHeartbeat{
		Request: protocol.Request{Time: a.f.portal.Now().Truncate(time.Second), Nonce: newNonce()},
		Held:    protocol.Held{Revision: revision, Digest: digestOrEmpty(a.held[revision])},
		Link:    a.link,
		Report:  report,
	}
}

func (a *testAgent) signCompact(h protocol.CompactHeartbeat) string {
	a.f.t.Helper()
	payload, err := h.MarshalBinary()
	if err != nil {
		a.f.t.Fatal(err)
	}
	s, err := a.signer.SignRaw(protocol.TypeCompactHeartbeat, payload)
	if err != nil {
		a.f.t.Fatal(err)
	}
	return s
}

// postBare posts body as the agent posts a compact heartbeat: no header
// but Host and Content-Length.
func (a *testAgent) postBare(body string) response {
	a.f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.f.srv.URL+protocol.PathHeartbeat, strings.NewReader(body))
	if err != nil {
		a.f.t.Fatal(err)
	}
	req.Header["User-Agent"] = []string{""}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.f.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// compact sends a compact heartbeat and verifies the answer as the agent
// does: a "same" answer against the request, anything else as a full one.
func (a *testAgent) compact(h protocol.CompactHeartbeat) (*protocol.Answer, response) {
	a.f.t.Helper()
	body := a.signCompact(h)
	r := a.postBare(body)
	if r.status != http.StatusOK {
		a.f.t.Fatalf("compact heartbeat answered %d: %s", r.status, r.body)
	}
	var ans *protocol.Answer
	var err error
	if _, typ, _ := license.PeekHeader(r.body); typ == protocol.TypeSame {
		ans, err = protocol.VerifySame(r.body, a.f.keyring(), body, a.pbxID)
	} else {
		ans, err = protocol.VerifyAnswer(r.body, a.f.keyring(), h.Nonce, a.pbxID)
	}
	if err != nil {
		a.f.t.Fatalf("answer to a compact heartbeat does not verify: %v", err)
	}
	if err := ans.CheckEcho(h.Link); err != nil {
		a.f.t.Fatal(err)
	}
	if ans.Status == protocol.StatusOK {
		a.link = a.link.Next(ans.Compact)
	}
	a.keep(ans)
	return ans, r
}

func TestCompactHeartbeat(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 5})
	a := newTestAgent(f, license.ModelVM)
	act := a.activate(key)
	if !slices.Contains(act.Formats, protocol.TypeCompactHeartbeat) {
		t.Fatalf("the activation answer lists formats %v, not the compact heartbeat", act.Formats)
	}

	// The first compact heartbeat reports everything; nothing else to say.
	usage := license.Counts{license.UCPremium: 3}
	ans, r := a.compact(a.compactReq(1, protocol.Report{State: "active", Usage: &usage, AgentVersion: "2.0.0"}))
	if !ans.Same {
		t.Fatalf("an unchanged compact heartbeat got a full answer: %+v", ans)
	}
	for _, h := range []string{"Content-Type", "Date", "Cache-Control"} {
		if _, ok := r.header[h]; ok {
			t.Errorf("the same answer carries %s: %q", h, r.header.Get(h))
		}
	}
	pbx := f.show("acme.example")
	if pbx.LastUsage[license.UCPremium] != 3 || pbx.AgentVersion != "2.0.0" || pbx.LastState != "active" {
		t.Errorf("the portal recorded usage %v, version %q, state %q", pbx.LastUsage, pbx.AgentVersion, pbx.LastState)
	}

	// Unchanged: nothing reported, what the portal has stays; the chain
	// goes on from the same answer.
	f.clock.Add(time.Minute)
	if ans, _ := a.compact(a.compactReq(1, protocol.Report{})); !ans.Same {
		t.Fatalf("a second unchanged compact heartbeat got a full answer: %+v", ans)
	}
	pbx = f.show("acme.example")
	if pbx.LastUsage[license.UCPremium] != 3 || pbx.AgentVersion != "2.0.0" || pbx.ChainForks != 0 {
		t.Errorf("after an unchanged heartbeat: usage %v, version %q, forks %d", pbx.LastUsage, pbx.AgentVersion, pbx.ChainForks)
	}
	// No users any more: {} says so; absent would say "unchanged".
	none := license.Counts{}
	a.compact(a.compactReq(1, protocol.Report{Usage: &none}))
	if pbx = f.show("acme.example"); len(pbx.LastUsage) != 0 {
		t.Errorf("usage {} left %v recorded", pbx.LastUsage)
	}

	// A licence change: a full answer, with the licence, bound to the
	// nonce and continuing the chain.
	if _, err := f.change("acme.example", license.Counts{license.UCPremium: 8}); err != nil {
		t.Fatal(err)
	}
	req := a.compactReq(1, protocol.Report{})
	ans, r = a.compact(req)
	if ans.Same || ans.License == "" || ans.Revision != 2 || ans.Nonce != req.Nonce || r.header.Get("Content-Type") != "" {
		t.Errorf("after a change: same %v, licence %v, revision %d, nonce %q, content type %q; want a full answer with revision 2, bare",
			ans.Same, ans.License != "", ans.Revision, ans.Nonce, r.header.Get("Content-Type"))
	}
	// Holding it now: same again. Asking for it (fetch): full again.
	if ans, _ := a.compact(a.compactReq(2, protocol.Report{})); !ans.Same {
		t.Errorf("holding the current licence: a full answer %+v", ans)
	}
	if ans, _ := a.compact(a.compactReq(2, protocol.Report{Fetch: true})); ans.Same || ans.License == "" {
		t.Errorf("fetch answered without the licence: %+v", ans)
	}
	// A suspension is never "same".
	if _, err := f.admin.Suspend(t.Context(), "acme.example"); err != nil {
		t.Fatal(err)
	}
	if ans, _ := a.compact(a.compactReq(2, protocol.Report{})); ans.Same || ans.Standing != protocol.StandingSuspended {
		t.Errorf("a suspended PBX answered %+v", ans)
	}
}

func TestCompactHeartbeatRefusals(t *testing.T) {
	f := newFixture(t)
	_, key := f.createPBX("acme.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 5})
	a := newTestAgent(f, license.ModelVM)
	a.activate(key)

	// A captured compact heartbeat sent again is a replay.
	body := a.signCompact(a.compactReq(1, protocol.Report{}))
	if r := a.postBare(body); r.status != http.StatusOK {
		t.Fatalf("first send: %d %s", r.status, r.body)
	}
	if r := a.postBare(body); r.status != http.StatusConflict || r.refusal(t).Code != protocol.CodeReplay {
		t.Errorf("the same compact heartbeat again: %d %s, want 409 replay", r.status, r.body)
	}

	// A compact heartbeat out of the freshness window: a full stale
	// answer, bound to its nonce, carrying the portal's time.
	old := a.compactReq(1, protocol.Report{})
	old.Time = old.Time.Add(-time.Hour)
	r := a.postBare(a.signCompact(old))
	ans, err := protocol.VerifyAnswer(r.body, f.keyring(), old.Nonce, a.pbxID)
	if err != nil || ans.Status != protocol.StatusStale {
		t.Errorf("a stale compact heartbeat: %v, %+v", err, ans)
	}

	// An appliance the portal does not know.
	stranger := newTestAgent(f, license.ModelVM)
	sr := stranger.compactReq(1, protocol.Report{})
	sr.Held.Digest = newNonce()
	if r := stranger.postBare(stranger.signCompact(sr)); r.status != http.StatusUnauthorized {
		t.Errorf("an unknown device: %d %s, want 401", r.status, r.body)
	}

	// A media type other than the protocol's is refused; none is read as it.
	r = a.post(protocol.PathHeartbeat, a.signCompact(a.compactReq(1, protocol.Report{})))
	if r.status != http.StatusOK {
		t.Errorf("a compact heartbeat sent as %s: %d %s", protocol.ContentType, r.status, r.body)
	}
	resp, err := http.Post(f.srv.URL+protocol.PathHeartbeat, "text/plain", strings.NewReader(a.signCompact(a.compactReq(1, protocol.Report{}))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("a body sent as text/plain: %d, want 415", resp.StatusCode)
	}
}

// TestCompactHeartbeatDeviceOfTwoPBXs: a compact heartbeat names no PBX,
// so a device key bound to two cannot send one; the refusal (400) turns
// the agent to full heartbeats, which still work.
func TestCompactHeartbeatDeviceOfTwoPBXs(t *testing.T) {
	f := newFixture(t)
	_, key1 := f.createPBX("one.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 5})
	_, key2 := f.createPBX("two.example", license.ModelVM, license.Monthly, license.Counts{license.UCPremium: 5})
	a := newTestAgent(f, license.ModelVM)
	a.activate(key1)
	first := a.pbxID
	a.pbxID, a.held, a.link = "", nil, protocol.Link{}
	a.activate(key2)
	if a.pbxID == first {
		t.Fatal("both activations bound one PBX")
	}
	r := a.postBare(a.signCompact(a.compactReq(1, protocol.Report{})))
	if r.status != http.StatusBadRequest || !strings.Contains(r.refusal(t).Message, "more than one PBX") {
		t.Errorf("a compact heartbeat from a device of two PBXs: %d %s, want 400 naming the cause", r.status, r.body)
	}
	if ans, _ := a.heartbeat(1); ans.Status != protocol.StatusOK {
		t.Errorf("a full heartbeat from it: %+v", ans)
	}
}
