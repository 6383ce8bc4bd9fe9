package agent

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// stubLicence is a licence view with a fixed document and state.
type stubLicence struct {
	doc     *license.Document
	state   license.State
	elapsed func() time.Duration // the seats' clock, for Mark
}

var stubTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Now reads the clock, as the licence clock does.
func (l stubLicence) Now() time.Time {
	if l.elapsed != nil {
		l.elapsed()
	}
	return stubTime
}
func (l stubLicence) Mark() license.Mark          { return license.Mark{Time: stubTime, Boot: l.elapsed()} }
func (l stubLicence) Document() *license.Document { return l.doc }
func (l stubLicence) Verdict(time.Time) (*license.Document, license.Verdict) {
	return l.doc, license.Verdict{State: l.state, Summary: "stub"}
}
func (l stubLicence) Decreases() license.Decreases { return nil }

// auditKinds records the kinds of the events it is handed.
type auditKinds struct {
	mu    sync.Mutex
	kinds []string
}

func (a *auditKinds) Record(_ time.Time, kind string, _ map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kinds = append(a.kinds, kind)
}

func (a *auditKinds) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.kinds)
}

type countDecisions map[string]int

func (c countDecisions) AdmissionDecision(_, decision string) { c[decision]++ }
func (c countDecisions) UsersCount(result string)             { c["count "+result]++ }

// The users component runs without an agent: built from a licence view,
// an audit sink, a metrics sink and its settings, it counts, admits,
// records, and takes a reloaded admission section through its method.
func TestSeatsStandAlone(t *testing.T) {
	var elapsed time.Duration
	audit, decisions := &auditKinds{}, countDecisions{}
	doc := &license.Document{Counts: license.Counts{license.UCPremium: 2}}
	clock := func() time.Duration { return elapsed }
	u, err := newSeats(seatsEnv{
		elapsed: clock,
		licence: stubLicence{doc: doc, state: license.Active, elapsed: clock},
		audit:   audit,
		metrics: decisions,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, &fakeUsers{counts: license.Counts{license.UCPremium: 1}},
		UsersConfig{Interval: time.Minute},
		AdmissionConfig{ReservationTTL: 10 * time.Minute, MaxReservationsPerUID: 5}, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	uid := uint32(1000)
	req := apitype.Admission{Profile: license.UCPremium, Count: 1, PeerUID: &uid}
	if ans := u.Admit(ctx, req); ans.Allowed {
		t.Fatalf("admitted before any count: %+v", ans)
	}
	if err := u.count(ctx); err != nil {
		t.Fatal(err)
	}
	if ans := u.Admit(ctx, req); !ans.Allowed {
		t.Fatalf("the last licensed seat was refused: %s", ans.Reason)
	}
	if ans := u.Admit(ctx, req); ans.Allowed {
		t.Fatal("a seat reserved by an admission was given twice")
	}
	if _, reserved, _ := u.snapshot(); reserved[license.UCPremium] != 1 {
		t.Fatalf("reserved %v, want 1 uc-premium", reserved)
	}
	// The second denial falls within deniedAuditEvery of the first: counted, not recorded.
	want := []string{auditAdmissionDenied, auditAdmissionReserved}
	if got := audit.got(); !slices.Equal(got, want) {
		t.Fatalf("audit kinds %v, want %v", got, want)
	}
	if decisions["allowed"] != 1 || decisions["denied"] != 2 {
		t.Fatalf("metrics %v, want 1 allowed and 2 denied", decisions)
	}

	// A reload lowers the TTL: reservations made from then on expire on
	// it, the one held keeps its own.
	u.setAdmission(AdmissionConfig{ReservationTTL: time.Minute, MaxReservationsPerUID: 5})
	elapsed += 10*time.Minute + time.Second
	if ans := u.Admit(ctx, req); !ans.Allowed {
		t.Fatalf("the reservation outlived its TTL: %s", ans.Reason)
	}
	elapsed += time.Minute + time.Second
	if ans := u.Admit(ctx, req); !ans.Allowed {
		t.Fatalf("the reservation outlived the reloaded TTL: %s", ans.Reason)
	}
}

// An admission reads the machine's clock once, for the licence time and
// the seats' own: each reading is a system call on every admission's path.
func TestAdmitReadsTheClockOnce(t *testing.T) {
	var readings int
	clock := func() time.Duration { readings++; return time.Hour }
	doc := &license.Document{Counts: license.Counts{license.UCPremium: 10}}
	u, err := newSeats(seatsEnv{
		elapsed: clock,
		licence: stubLicence{doc: doc, state: license.Active, elapsed: clock},
		audit:   &auditKinds{},
		metrics: countDecisions{},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, &fakeUsers{counts: license.Counts{license.UCPremium: 1}},
		UsersConfig{Interval: time.Minute}, AdmissionConfig{ReservationTTL: time.Minute, MaxReservationsPerUID: 5}, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := u.count(ctx); err != nil {
		t.Fatal(err)
	}
	for _, dry := range []bool{true, false} {
		readings = 0
		if ans := u.Admit(ctx, apitype.Admission{Profile: license.UCPremium, Count: 1, DryRun: dry}); !ans.Allowed {
			t.Fatalf("dry run %v refused: %s", dry, ans.Reason)
		}
		if readings != 1 {
			t.Errorf("dry run %v: the clock was read %d times, want 1", dry, readings)
		}
	}
}
