package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/users"
)

// fakeUsers is a user-count source the test sets.
type fakeUsers struct {
	mu     sync.Mutex
	counts license.Counts
	err    error
	calls  int
}

func (f *fakeUsers) Count(context.Context) (license.Counts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	c := license.Counts{}
	for p, n := range f.counts {
		c[p] = n
	}
	return c, nil
}

func (f *fakeUsers) String() string { return "fake" }

func (f *fakeUsers) set(c license.Counts, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts, f.err = c, err
}

// admitting activates a PBX with counts on an agent on the rig's clock
// whose users come from src.
func (r *rig) admitting(t *testing.T, counts license.Counts, src users.Source) *Agent {
	t.Helper()
	key := r.createPBX(t, "acme.example", counts)
	a, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Time: r.time, Root: r.root, Users: src})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	return a
}

func ask(p license.Profile, n int) apitype.Admission {
	return apitype.Admission{Profile: p, Count: n, Peer: "test"}
}

func dry(p license.Profile, n int) apitype.Admission {
	return apitype.Admission{Profile: p, Count: n, DryRun: true}
}

// mustAdmit checks an answer is allowed with remaining seats left.
func mustAdmit(t *testing.T, ans apitype.AdmissionAnswer, remaining int) {
	t.Helper()
	if !ans.Allowed || ans.Remaining == nil || *ans.Remaining != remaining {
		t.Fatalf("answer %+v (remaining %v), want allowed with %d remaining", ans, deref(ans.Remaining), remaining)
	}
}

func mustDeny(t *testing.T, ans apitype.AdmissionAnswer, reason ...string) {
	t.Helper()
	if ans.Allowed {
		t.Fatalf("allowed (remaining %v), want denied", deref(ans.Remaining))
	}
	for _, part := range reason {
		if !strings.Contains(ans.Reason, part) {
			t.Errorf("reason %q\n  lacks %q", ans.Reason, part)
		}
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func profileStatus(a *Agent, p license.Profile) apitype.ProfileStatus {
	return a.Status().License.Profiles[string(p)]
}

// TestReservations: a reservation holds its seats until a count shows its
// users, or until its time to live runs out on the machine's clock.
func TestReservations(t *testing.T) {
	r := newRig(t)
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 8}}
	a := r.admitting(t, license.Counts{license.UCPremium: 10}, src)
	ctx := context.Background()
	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}

	mustAdmit(t, a.Admit(ctx, dry(license.UCPremium, 2)), 0) // a dry run holds nothing
	mustAdmit(t, a.Admit(ctx, ask(license.UCPremium, 2)), 0)
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "UC-Premium is full: 10 licensed, 8 used, 2 reserved")
	if ps := profileStatus(a, license.UCPremium); ps != (apitype.ProfileStatus{Licensed: 10, Used: 8, Reserved: 2}) {
		t.Errorf("status %+v", ps)
	}

	t.Run("released when a count shows the users", func(t *testing.T) {
		src.set(license.Counts{license.UCPremium: 9}, nil) // the WMS added one of the two
		a.countUsers(ctx)
		if ps := profileStatus(a, license.UCPremium); ps.Used != 9 || ps.Reserved != 1 {
			t.Errorf("one shown: %+v; want 9 used, 1 reserved", ps)
		}
		mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "9 used, 1 reserved")
		src.set(license.Counts{license.UCPremium: 10}, nil)
		a.countUsers(ctx)
		if ps := profileStatus(a, license.UCPremium); ps.Used != 10 || ps.Reserved != 0 {
			t.Errorf("both shown: %+v; want 10 used, 0 reserved", ps)
		}
		mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "10 used, 0 reserved")
	})

	t.Run("expired after reservation_ttl", func(t *testing.T) {
		src.set(license.Counts{license.UCPremium: 7}, nil) // users removed
		a.countUsers(ctx)
		mustAdmit(t, a.Admit(ctx, ask(license.UCPremium, 2)), 1)
		r.time.run(r.cfg.Admission.ReservationTTL - time.Second)
		a.countUsers(ctx) // a count that shows no new user releases nothing
		if ps := profileStatus(a, license.UCPremium); ps.Reserved != 2 {
			t.Errorf("before the TTL: %+v", ps)
		}
		mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 2)), "asked for 2 UC-Premium users but 1 is free")
		r.time.run(time.Second)
		if ps := profileStatus(a, license.UCPremium); ps.Reserved != 0 {
			t.Errorf("at the TTL: %+v; want the reservation gone", ps)
		}
		mustAdmit(t, a.Admit(ctx, dry(license.UCPremium, 3)), 0)
	})
}

// TestAdmissionConcurrentOverSocket fires many simultaneous admission
// requests through the daemon's unix socket at profiles that are nearly
// full, and checks that the seats given never exceed the free ones.
func TestAdmissionConcurrentOverSocket(t *testing.T) {
	r := newRig(t)
	r.cfg.Listen.Socket = filepath.Join(t.TempDir(), "agent.sock")
	r.cfg.Listen.HTTP = ""
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10, license.PBXBasic: 5})
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 7}}
	// The machine's own clocks: the daemon's loops run meanwhile.
	a, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Root: r.root, Users: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	c := socketClient(r.cfg.Listen.Socket)
	// A connection per request, as many WMS workers would: the server
	// serves 64 at once, and idle keep-alive connections would hold its
	// slots while the other requests wait for them.
	c.Transport.(*http.Transport).DisableKeepAlives = true
	eventually(t, 10*time.Second, "the first count", func() bool {
		var st apitype.Status
		return getJSON(c, "/v1/status", &st) == nil && st.Users.CountedAt != nil
	})

	// 3 UC-Premium seats free for 1 each; 5 PBX-BASIC seats for 2 each.
	const n = 200
	type result struct {
		profile license.Profile
		status  int
		ans     apitype.AdmissionAnswer
		err     error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		p, count := license.UCPremium, 1
		if i%2 == 1 {
			p, count = license.PBXBasic, 2
		}
		wg.Go(func() {
			<-start
			status, ans, err := postAdmission(c, fmt.Sprintf(`{"profile": %q, "count": %d}`, p, count))
			results <- result{p, status, ans, err}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	allowed := map[license.Profile]int{}
	for res := range results {
		switch {
		case res.err != nil:
			t.Fatalf("request: %v", res.err)
		case res.status == http.StatusOK && res.ans.Allowed:
			allowed[res.profile]++
		case res.status == http.StatusConflict && !res.ans.Allowed:
			if !strings.Contains(res.ans.Reason, "is full") && !strings.Contains(res.ans.Reason, "is free") {
				t.Errorf("denial reason %q", res.ans.Reason)
			}
		default:
			t.Errorf("answer %d %+v", res.status, res.ans)
		}
	}
	if allowed[license.UCPremium] != 3 || allowed[license.PBXBasic] != 2 {
		t.Errorf("allowed %v of %d requests; want exactly 3 uc-premium and 2 pbx-basic (of 2 users each)", allowed, n)
	}
	var st apitype.Status
	if err := getJSON(c, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if got := st.License.Profiles; got["uc-premium"].Reserved != 3 || got["pbx-basic"].Reserved != 4 {
		t.Errorf("reserved after the storm: %+v", got)
	}
}

// TestCountingFailures: before a first count nobody is admitted; a failed
// or malformed count leaves the last good one in force; a count left stale
// by failures too long stops admissions.
func TestCountingFailures(t *testing.T) {
	r := newRig(t)
	src := &fakeUsers{err: errors.New("users source sqlite /var/lib/wms/users.db: unable to open database file")}
	a := r.admitting(t, license.Counts{license.UCPremium: 10}, src)
	ctx := context.Background()

	if err := a.countUsers(ctx); err == nil {
		t.Fatal("a failing source counted")
	}
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "not counted yet", "unable to open database file", "users.*")
	if s := a.Status(); s.Users.Error == "" || s.Users.CountedAt != nil || s.Users.Source != "fake" {
		t.Errorf("users status %+v", s.Users)
	}

	src.set(license.Counts{license.UCPremium: 4}, nil)
	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}
	mustAdmit(t, a.Admit(ctx, dry(license.UCPremium, 1)), 5)

	// A malformed answer from a real source: the last good count stays.
	dir := t.TempDir()
	script := filepath.Join(dir, "count")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'uc-premium: lots'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bad, err := users.NewCommand([]string{script}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a.users.source = bad
	if err := a.countUsers(ctx); err == nil || !strings.Contains(err.Error(), "answer: not {") {
		t.Fatalf("malformed answer: %v", err)
	}
	s := a.Status()
	if ps := s.License.Profiles["uc-premium"]; ps.Used != 4 || !strings.Contains(s.Users.Error, "answer: not {") || s.Users.CountedAt == nil {
		t.Errorf("after a malformed answer: %+v, users %+v; want the last good count (4) and the error", ps, s.Users)
	}
	mustAdmit(t, a.Admit(ctx, dry(license.UCPremium, 1)), 5)

	r.time.run(a.users.countMaxAge() + time.Second)
	a.countUsers(ctx)
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "old and counting fails", "answer: not {")

	a.users.source = src
	a.countUsers(ctx)
	if s := a.Status(); s.Users.Error != "" {
		t.Errorf("after a good count: users %+v", s.Users)
	}
	mustAdmit(t, a.Admit(ctx, dry(license.UCPremium, 1)), 5)
}

// TestOveruse: after a decrease below the users counted, the over-use is
// in the status, the heartbeat and the audit log, it blocks new users of
// that profile, and the hook gets it on stdin.
func TestOveruse(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z") // decreases are refused on a month's last day
	dir := t.TempDir()
	hookOut := filepath.Join(dir, "hook.json")
	hook := filepath.Join(dir, "hook")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\ncat > "+hookOut+".tmp && mv "+hookOut+".tmp "+hookOut+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.cfg.Enforcement.OveruseHook = []string{hook}
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 8, license.PBXBasic: 1}}
	a := r.admitting(t, license.Counts{license.UCPremium: 10, license.PBXBasic: 2}, src)
	ctx := context.Background()
	a.countUsers(ctx)
	if s := a.Status(); s.License.Overuse != nil {
		t.Fatalf("over-use before the decrease: %v", s.License.Overuse)
	}

	r.licences(t, license.Counts{license.UCPremium: 5})
	if err := a.heartbeat(ctx); err != nil { // takes the new licence
		t.Fatal(err)
	}
	if s := a.Status(); !reflect.DeepEqual(s.License.Overuse, map[string]int{"uc-premium": 3}) {
		t.Errorf("status overuse %v", s.License.Overuse)
	}
	const afterDecrease = "UC-Premium is over-used: 8 users for 5 licences, 3 of them without a licence, after a decrease on 2027-03-10 (UC-Premium 10 → 5)"
	mustDeny(t, a.Admit(ctx, ask(license.UCPremium, 1)), afterDecrease)
	mustAdmit(t, a.Admit(ctx, dry(license.PBXBasic, 1)), 0) // other profiles go on

	if err := a.heartbeat(ctx); err != nil { // reports it
		t.Fatal(err)
	}
	pbx, err := r.admin.PBX(ctx, "acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pbx.LastUsage, license.Counts{license.UCPremium: 8, license.PBXBasic: 1}) ||
		!reflect.DeepEqual(pbx.LastOveruse, license.Counts{license.UCPremium: 3}) {
		t.Errorf("the portal saw usage %v, over-use %v", pbx.LastUsage, pbx.LastOveruse)
	}

	var in OveruseHookInput
	eventually(t, 10*time.Second, "the over-use hook", func() bool {
		b, err := os.ReadFile(hookOut)
		return err == nil && json.Unmarshal(b, &in) == nil
	})
	if !reflect.DeepEqual(in.Overuse, map[string]int{"uc-premium": 3}) || in.Profiles["uc-premium"] != (apitype.ProfileStatus{Licensed: 5, Used: 8}) {
		t.Errorf("hook input %+v", in)
	}

	// The WMS removes users: the over-use ends, and is recorded so.
	os.Remove(hookOut)
	src.set(license.Counts{license.UCPremium: 5, license.PBXBasic: 1}, nil)
	a.countUsers(ctx)
	if s := a.Status(); s.License.Overuse != nil {
		t.Errorf("over-use after the users went: %v", s.License.Overuse)
	}
	eventually(t, 10*time.Second, "the over-use hook, for the end", func() bool {
		b, err := os.ReadFile(hookOut)
		in = OveruseHookInput{}
		return err == nil && json.Unmarshal(b, &in) == nil && in.Overuse != nil && len(in.Overuse) == 0
	})
	var got []string
	for _, e := range auditOf(t, r.cfg.StateDir, auditOveruse) {
		got = append(got, e.Fields["overuse"].(string))
	}
	if want := []string{"uc-premium=3", "none"}; !reflect.DeepEqual(got, want) {
		t.Errorf("audit over-use events %v, want %v", got, want)
	}
}

// TestOveruseWithoutDecrease: users created beyond a licence that was
// never lowered are not said to follow a decrease; a decrease is named
// (across a restart) until a raise back undoes it.
func TestOveruseWithoutDecrease(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 12}}
	a := r.admitting(t, license.Counts{license.UCPremium: 10}, src)
	ctx := context.Background()
	a.countUsers(ctx)
	const beyond = "12 users for 10 licences, 2 of them without a licence, users created beyond the licence (no decrease of it was seen on this appliance)"
	d := a.Admit(ctx, dry(license.UCPremium, 1))
	mustDeny(t, d, beyond)
	if strings.Contains(d.Reason, "decrease on") {
		t.Errorf("denial %q names a decrease that never happened", d.Reason)
	}

	// Lowered to 8, then raised back to 10: the decrease no longer explains it.
	r.licences(t, license.Counts{license.UCPremium: 8})
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	const after = "4 of them without a licence, after a decrease on 2027-03-10 (UC-Premium 10 → 8)"
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), after)
	restarted, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Time: r.time, Root: r.root, Users: src})
	if err != nil {
		t.Fatal(err)
	}
	restarted.countUsers(ctx)
	mustDeny(t, restarted.Admit(ctx, dry(license.UCPremium, 1)), after) // kept across a restart
	r.licences(t, license.Counts{license.UCPremium: 10})
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), beyond)
}

// TestAdmissionDeniedAudit: denials are recorded, at most once a minute
// per profile with the others counted; dry runs are not.
func TestAdmissionDeniedAudit(t *testing.T) {
	r := newRig(t)
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 1}}
	a := r.admitting(t, license.Counts{license.UCPremium: 1}, src)
	ctx := context.Background()
	a.countUsers(ctx)

	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)))
	for range 3 {
		mustDeny(t, a.Admit(ctx, ask(license.UCPremium, 1)), "UC-Premium is full")
	}
	mustDeny(t, a.Admit(ctx, ask(license.UCWizyconf, 1)), "no UC-Wizyconf licence")
	r.time.run(deniedAuditEvery)
	mustDeny(t, a.Admit(ctx, ask(license.UCPremium, 2)))

	evs := auditOf(t, r.cfg.StateDir, auditAdmissionDenied)
	if len(evs) != 3 {
		t.Fatalf("%d admission.denied events, want 3: %+v", len(evs), evs)
	}
	first, last := evs[0].Fields, evs[2].Fields
	if first["profile"] != "uc-premium" || first["kind"] != "full" || first["peer"] != "test" || first["used"] != 1.0 ||
		!strings.Contains(first["reason"].(string), "UC-Premium is full") || first["repeats"] != nil {
		t.Errorf("first denial: %v", first)
	}
	if evs[1].Fields["profile"] != "uc-wizyconf" {
		t.Errorf("second denial: %v", evs[1].Fields)
	}
	if last["count"] != 2.0 || last["repeats"] != 2.0 {
		t.Errorf("denial a minute later: %v; want count 2 and the 2 denials in between", last)
	}
}

// TestAdmissionByState: only active and offline admit.
func TestAdmissionByState(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	src := &fakeUsers{counts: license.Counts{}}
	ctx := context.Background()
	unactivated, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Time: r.time, Root: r.root, Users: src})
	if err != nil {
		t.Fatal(err)
	}
	unactivated.countUsers(ctx)
	mustDeny(t, unactivated.Admit(ctx, dry(license.UCPremium, 1)), "no new users while the licence is unactivated", "pbx-agent activate")

	r.cfg.StateDir = filepath.Join(t.TempDir(), "state")
	a := r.admitting(t, license.Counts{license.UCPremium: 10}, src)
	a.countUsers(ctx)
	mustAdmit(t, a.Admit(ctx, dry(license.UCPremium, 1)), 9)

	r.licences(t, license.Counts{license.UCPremium: 0})
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "no new users while the licence is stopping", "adds at least one licence back", "Area Manager")
}

// TestTelephonyReassertedWhenStartedByHand: while the licence stops
// telephony, an evaluation that finds it running again stops it again.
func TestTelephonyReassertedWhenStartedByHand(t *testing.T) {
	r := newRig(t)
	r.setPortalClock(t, "2027-03-10T10:00:00Z")
	tel := &checkingTelephony{}
	a := r.activated(t, tel)
	ctx := context.Background()
	r.licences(t, license.Counts{license.UCPremium: 0, license.PBXBasic: 0})
	r.advancePortal(t, 6*day)
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	a.evaluate(ctx) // lifecycleLoop's turn
	if got := tel.took(); !reflect.DeepEqual(got, []string{"start", "stop"}) {
		t.Fatalf("telephony %v", got)
	}
	a.evaluate(ctx)
	if got := tel.took(); got != nil {
		t.Errorf("held down: telephony %v, want nothing", got)
	}
	tel.startedByHand()
	a.evaluate(ctx)
	if got := tel.took(); !reflect.DeepEqual(got, []string{"stop"}) {
		t.Errorf("started by hand: telephony %v, want stopped again", got)
	}
}

// checkingTelephony is a fakeTelephony that knows whether it is held down.
type checkingTelephony struct {
	fakeTelephony
	mu   sync.Mutex
	down bool
}

func (c *checkingTelephony) Stop(ctx context.Context, why string) error {
	c.mu.Lock()
	c.down = true
	c.mu.Unlock()
	return c.fakeTelephony.Stop(ctx, why)
}

func (c *checkingTelephony) Start(ctx context.Context, why string) error {
	c.mu.Lock()
	c.down = false
	c.mu.Unlock()
	return c.fakeTelephony.Start(ctx, why)
}

func (c *checkingTelephony) Stopped(context.Context) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down, nil
}

func (c *checkingTelephony) startedByHand() {
	c.mu.Lock()
	c.down = false
	c.mu.Unlock()
}

// auditOf returns the audit events of one kind.
func auditOf(t *testing.T, dir, kind string) []audit.Event {
	t.Helper()
	evs, err := audit.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, within)
		}
		<-tick.C
	}
}

func socketClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func getJSON(c *http.Client, path string, out any) error {
	resp, err := c.Get("http://local" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func postAdmission(c *http.Client, body string) (int, apitype.AdmissionAnswer, error) {
	var ans apitype.AdmissionAnswer
	resp, err := c.Post("http://local/v1/admission", "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, ans, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&ans)
	return resp.StatusCode, ans, err
}
