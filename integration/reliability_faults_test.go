package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
)

// TestPortalFaultStorm runs the agent against a portal that fails half its
// requests and damages or replays many of the rest, while it issues new
// revisions: the revision the agent holds only goes forward and is always
// one the portal issued, intact; the status keeps answering; and once the
// faults stop the agent is active with the newest revision. The storm lasts
// PBX_STORM_SECONDS (8; 60 under soak). TestBadPortalAnswersChangeNothing
// (faults_test.go) checks each fault alone.
func TestPortalFaultStorm(t *testing.T) {
	storm := time.Duration(sized(t, "PBX_STORM_SECONDS", 8, 60)) * time.Second
	p := startPortal(t, t.TempDir(), freeAddr(t), "--heartbeat-tolerance", "3s")
	key := p.admin("pbx", "create", "--name", "storm.example", "--users", "uc-business=1")
	a := newAppliance(t, "stormy", p, "200ms")
	a.startQuick()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	p.setFaults(portalsim.Faults{
		ErrorRate: 0.5, RateLimitRate: 0.1, RetryAfter: portalsim.Duration(time.Second),
		TruncateRate: 0.15, BadSignatureRate: 0.15, ReplayOldRate: 0.3,
	})

	ctx, cancel := context.WithTimeout(context.Background(), storm)
	defer cancel()
	raiser := p.raiseLicences(ctx, "storm.example", 300*time.Millisecond)

	var held int64
	var lat []time.Duration
	states := map[string]int{}
	for ctx.Err() == nil {
		began := time.Now()
		s, err := a.httpStatus()
		lat = append(lat, time.Since(began))
		if err != nil {
			t.Fatalf("status during the storm: %v", err)
		}
		states[s.State]++
		if s.License == nil {
			t.Fatalf("no licence during the storm: %s %s", s.State, s.Heartbeat.LastError)
		}
		rev := s.License.Revision
		top := raiser.Issued()
		switch lic := s.License.Profiles["uc-business"].Licensed; {
		case rev < held:
			t.Fatalf("revision went back from %d to %d", held, rev)
		case rev > top:
			t.Fatalf("holding revision %d, but the portal issued only %d", rev, top)
		case int64(lic) != rev:
			t.Fatalf("revision %d with %d licences: revision n has n", rev, lic)
		}
		held = rev
	}
	issued := raiser.Wait()
	pc := percentiles(lat, 50, 99, 100)
	t.Logf("storm of %v: %d status reads, p50 %v p99 %v max %v; states seen %v; the agent went from revision 1 to %d of %d issued",
		storm, len(lat), pc[0], pc[1], pc[2], states, held, issued)

	p.admin("fault", "clear")
	eventually(t, 15*time.Second, "active with the newest revision", func() (bool, string) {
		s, err := a.httpStatus()
		if err != nil {
			return false, err.Error()
		}
		return s.State == "active" && s.License.Revision == issued && s.Heartbeat.LastError == "",
			s.State + " " + s.Heartbeat.LastError
	})

	var accepted, refused int
	for _, e := range a.auditLog().Events {
		switch e.Kind {
		case "licence.accepted":
			accepted++
		case "licence.refused": // a replayed revision older than the one held
			refused++
		}
	}
	results := map[string]float64{}
	for _, r := range []string{"success", "unreachable", "refused", "invalid"} {
		results[r], _ = a.labelled("pbx_agent_heartbeats_total", `result="`+r+`"`)
	}
	// A few heartbeats a second at most (the backoff): a short storm may
	// by chance bring no damaged answer, but never no refusal at all.
	if results["refused"] == 0 {
		t.Errorf("heartbeats by result %v: the storm's refusals were not seen", results)
	}
	t.Logf("heartbeats by result %v; audit log: %d revisions accepted, %d replayed licences refused", results, accepted, refused)
}

// TestBackoffAgainstTheRealPortal: with every heartbeat failing, the agent
// retries within the ceilings of protocol.DefaultBackoff (2 s, 4 s, 8 s ...),
// and a 429 holds it back for at least the Retry-After. The interval is
// an hour, so the schedule is the backoff's alone.
func TestBackoffAgainstTheRealPortal(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "backoff.example", "--users", "uc-business=1")
	a := newAppliance(t, "backing-off", p, "1h")
	a.startQuick()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}

	// The schedule before the failures, so the first one is seen to change it.
	s, err := a.httpStatus()
	if err != nil || s.Heartbeat.Next == nil {
		t.Fatalf("status before the failures: %v, next %v", err, s.Heartbeat.Next)
	}
	last := *s.Heartbeat.Next
	p.setFaults(portalsim.Faults{ErrorRate: 1})
	a.cli("", "refresh") // fails: the first failure
	// Each failure's wait is read with the failure count that chose it:
	// a retry may fail again between two polls, and its wait must be held
	// to its own ceiling, not its predecessor's.
	failures := sized(t, "PBX_BACKOFF_FAILURES", 4, 7)
	var waits []string
	seen := 0
	for seen < failures {
		var next time.Time
		var n int
		eventually(t, time.Duration(4<<seen)*time.Second, "the next retry scheduled", func() (bool, string) {
			s, err := a.httpStatus()
			if err != nil || s.Heartbeat.Next == nil {
				return false, "no next heartbeat"
			}
			next, n = *s.Heartbeat.Next, s.Heartbeat.Failures
			return n > seen && !next.Equal(last), fmt.Sprintf("%d failures, next %v", n, next)
		})
		wait := time.Until(next)
		ceiling := time.Duration(1<<(n-1)) * 2 * time.Second
		if wait > ceiling {
			t.Errorf("failure %d: next retry in %v, above the backoff ceiling %v", n, wait.Round(time.Millisecond), ceiling)
		}
		waits = append(waits, fmt.Sprintf("%d: %v", n, wait.Round(time.Millisecond)))
		last, seen = next, n
	}
	t.Logf("waits seen after failure n: %v (ceilings 2s, 4s, 8s, ...)", waits)

	p.setFaults(portalsim.Faults{RateLimitRate: 1, RetryAfter: portalsim.Duration(5 * time.Second)})
	began := time.Now()
	if r := a.cli("", "refresh"); r.code == 0 {
		t.Fatal("refresh succeeded through a 429")
	}
	// Read by the failure count, not by a change of next: next is given to
	// the second, and the 429's retry may fall in the same second as the
	// last failure's.
	eventually(t, 5*time.Second, "the retry after the 429 scheduled", func() (bool, string) {
		s, err = a.httpStatus()
		return err == nil && s.Heartbeat.Next != nil && s.Heartbeat.Failures > seen, fmt.Sprint(err)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The status gives the next heartbeat to the second, truncated: the
	// retry may show up to a second early.
	if wait := s.Heartbeat.Next.Sub(began); wait < 4*time.Second {
		t.Errorf("after a 429 with Retry-After: 5 the next retry is in %v", wait)
	}

	p.admin("fault", "clear")
	a.cli("", "refresh")
	a.waitState("active", 10*time.Second)
	if s, err := a.httpStatus(); err != nil || s.Heartbeat.Failures != 0 {
		t.Errorf("after a success the status still counts failures: %+v, %v", s.Heartbeat, err)
	}
}

// TestSlowPortal: answers slowed close to the point where clients give up
// still arrive and are taken, and the local API answers at once meanwhile.
// Under soak, an answer slower than the agent's 30 s portal timeout is
// abandoned as a failure and the agent recovers.
func TestSlowPortal(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "slow.example", "--users", "uc-business=1")
	a := newAppliance(t, "patient", p, "1h")
	a.startQuick()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	delays := []time.Duration{3 * time.Second}
	if soak() {
		delays = append(delays, 25*time.Second, 35*time.Second)
	}
	for i, d := range delays {
		p.admin("pbx", "licenses", "slow.example", "uc-business="+string(rune('2'+i)))
		p.setFaults(portalsim.Faults{Latency: portalsim.Duration(d)})
		done := make(chan result, 1)
		began := time.Now()
		go func() { done <- a.cli("", "refresh") }()
		var lat []time.Duration
		var r result
	wait:
		for {
			select {
			case r = <-done:
				break wait
			default:
			}
			t0 := time.Now()
			if _, err := a.httpStatus(); err != nil {
				t.Fatalf("status during a slow exchange: %v", err)
			}
			lat = append(lat, time.Since(t0))
		}
		took := time.Since(began)
		pc := percentiles(lat, 50, 99, 100)
		t.Logf("portal latency %v: refresh exit %d after %v; %d status reads meanwhile, p50 %v p99 %v max %v",
			d, r.code, took.Round(time.Millisecond), len(lat), pc[0], pc[1], pc[2])
		if pc[2] >= d {
			t.Errorf("a status read took %v: it waited on the %v exchange", pc[2], d)
		}
		s, _ := a.httpStatus()
		if d < 30*time.Second && (r.code != 0 || s.License.Revision != int64(2+i)) {
			t.Errorf("latency %v: refresh exit %d (%s), revision %d", d, r.code, r.stderr, s.License.Revision)
		}
		if d > 30*time.Second && (r.code == 0 || !strings.Contains(s.Heartbeat.LastError, "deadline")) {
			t.Errorf("latency %v beyond the timeout: refresh exit %d, last error %q", d, r.code, s.Heartbeat.LastError)
		}
	}
	p.admin("fault", "clear")
	if r := a.cli("", "refresh"); r.code != 0 {
		t.Fatalf("refresh with the portal fast again: %s", r.stderr)
	}
}
