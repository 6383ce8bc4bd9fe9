package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/slotfile"
)

// wireMITM stands on the network between agents and the portal, without
// any key: it sees every heartbeat, and for each may answer itself
// instead of forwarding.
type wireMITM struct {
	mu   sync.Mutex
	seen []string // the typ of each heartbeat request
	// answer, if set, is asked first for each heartbeat: a non-nil result
	// is written instead of the portal's answer. answers are the portal's
	// answers so far, newest last.
	answer  func(n int, typ string, answers []string) *mitmReply
	answers []string
}

type mitmReply struct {
	status int
	body   string
}

func startMITM(t *testing.T, portal http.Handler, m *wireMITM) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != protocol.PathHeartbeat {
			portal.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		_, typ, _ := license.PeekHeader(string(body))
		m.mu.Lock()
		m.seen = append(m.seen, typ)
		n := len(m.seen)
		var forged *mitmReply
		if m.answer != nil {
			forged = m.answer(n, typ, slices.Clone(m.answers))
		}
		m.mu.Unlock()
		if forged != nil {
			w.WriteHeader(forged.status)
			io.WriteString(w, forged.body)
			return
		}
		rec := httptest.NewRecorder()
		portal.ServeHTTP(rec, r)
		m.mu.Lock()
		m.answers = append(m.answers, rec.Body.String())
		m.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (m *wireMITM) types() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.seen)
}

func repeat(s string, n int) []string { return slices.Repeat([]string{s}, n) }

// TestHeartbeatFormatFollowsThePortal: the agent sends compact heartbeats
// to a portal whose signed answers say it reads them, and full ones to a
// portal from before them, which works as ever.
func TestHeartbeatFormatFollowsThePortal(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fullOnly bool
		want     string
	}{
		{"a portal that reads compact heartbeats", false, protocol.TypeCompactHeartbeat},
		{"a portal from before them", true, protocol.TypeHeartbeat},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRigWith(t, portalsim.Config{FullHeartbeatsOnly: tt.fullOnly})
			m := &wireMITM{}
			r.cfg.Portal.URL = startMITM(t, r.portal.Handler(), m).URL
			key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
			a := r.newAgent(t)
			ctx := context.Background()
			if err := a.Activate(ctx, key); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := a.heartbeat(ctx); err != nil {
					t.Fatalf("heartbeat %d: %v", i+1, err)
				}
			}
			if got := m.types(); !slices.Equal(got, repeat(tt.want, 3)) {
				t.Errorf("heartbeats sent as %v, want %v", got, repeat(tt.want, 3))
			}
			if s := a.Status(); s.State != "active" || s.Heartbeat.LastError != "" || s.Heartbeat.LastSuccess == nil {
				t.Errorf("after three heartbeats: state %s, last error %q", s.State, s.Heartbeat.LastError)
			}
		})
	}
}

// TestCompactHeartbeatReportsOnlyChanges: the first heartbeat after a
// start reports the state and version; the next, unchanged, carries the
// fixed part alone.
func TestCompactHeartbeatReportsOnlyChanges(t *testing.T) {
	r := newRig(t)
	var mu sync.Mutex
	var reports []protocol.Report
	portal := r.portal.Handler()
	r.cfg.Portal.URL = startMITM(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		parts := strings.Split(string(body), ".")
		if payload, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			if h, err := protocol.ParseCompactHeartbeat(payload); err == nil {
				mu.Lock()
				reports = append(reports, h.Report)
				mu.Unlock()
			}
		}
		portal.ServeHTTP(w, req)
	}), &wireMITM{}).URL
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)
	ctx := context.Background()
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b := r.newAgent(t) // a restart: the portal's acknowledgement is not known
	if err := b.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 3 {
		t.Fatalf("%d compact heartbeats, want 3", len(reports))
	}
	for i, want := range []bool{true, false, true} {
		got := reports[i].State != "" && reports[i].AgentVersion != ""
		if got != want || (!want && !reflect.DeepEqual(reports[i], protocol.Report{})) {
			t.Errorf("heartbeat %d reports %+v; want the state and version: %v", i+1, reports[i], want)
		}
	}
}

// TestCompactHeartbeatAttacks: what the network can do to a compact
// heartbeat without a key. Each attack leaves the agent no better off
// than a dropped heartbeat: an answer not its own is refused, and a
// forged refusal only costs the bytes of a full heartbeat, checked as
// ever.
func TestCompactHeartbeatAttacks(t *testing.T) {
	t.Run("a forged refusal downgrades to a full heartbeat, checked as ever", func(t *testing.T) {
		r := newRig(t)
		m := &wireMITM{answer: func(n int, _ string, _ []string) *mitmReply {
			if n == 1 {
				return &mitmReply{http.StatusBadRequest, `{"error":"wrong endpoint for this request","code":"bad_request"}`}
			}
			return nil
		}}
		r.cfg.Portal.URL = startMITM(t, r.portal.Handler(), m).URL
		a := activatedAgent(t, r)
		for i := range 2 {
			if err := a.heartbeat(context.Background()); err != nil {
				t.Fatalf("heartbeat %d: %v", i+1, err)
			}
		}
		want := []string{protocol.TypeCompactHeartbeat, protocol.TypeHeartbeat, protocol.TypeCompactHeartbeat}
		if got := m.types(); !slices.Equal(got, want) {
			t.Errorf("heartbeats sent as %v, want %v: refused, full at once, compact once a signed answer lists it", got, want)
		}
	})

	for _, tt := range []struct {
		name string
		// replay picks, from the portal's answers so far, the one to send
		// to the third heartbeat instead of the portal's.
		replay func(answers []string) string
		want   string
	}{
		{"a same answer replayed to the next heartbeat", func(answers []string) string { return answers[len(answers)-1] },
			"answers another request"},
		{"a full answer replayed to a compact heartbeat", func(answers []string) string { return answers[0] },
			"answers another request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			m := &wireMITM{answer: func(n int, _ string, answers []string) *mitmReply {
				if n == 3 {
					return &mitmReply{http.StatusOK, tt.replay(answers)}
				}
				return nil
			}}
			r.cfg.Portal.URL = startMITM(t, r.portal.Handler(), m).URL
			a := activatedAgent(t, r)
			ctx := context.Background()
			// The first heartbeat full (the portal's full answer to
			// replay), the second compact (a same answer).
			a.lic.exchangeMu.Lock()
			a.lic.wire.compact = false
			a.lic.exchangeMu.Unlock()
			for i := range 2 {
				if err := a.heartbeat(ctx); err != nil {
					t.Fatalf("heartbeat %d: %v", i+1, err)
				}
			}
			before := a.Status()
			err := a.heartbeat(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("heartbeat answered by a replay: %v, want an error naming %q", err, tt.want)
			}
			after := a.Status()
			if !after.Heartbeat.LastSuccess.Equal(*before.Heartbeat.LastSuccess) {
				t.Errorf("a replayed answer moved the last success from %v to %v", before.Heartbeat.LastSuccess, after.Heartbeat.LastSuccess)
			}
			a.lic.mu.Lock()
			seq := a.lic.st.Chain.Seq
			a.lic.mu.Unlock()
			if seq != 3 { // activation and two heartbeats
				t.Errorf("a replayed answer moved the chain to sequence %d, want 3", seq)
			}
		})
	}

	t.Run("a same answer made for another appliance", func(t *testing.T) {
		r := newRig(t)
		var mu sync.Mutex
		var stolen string // the last same answer to the other appliance
		m := &wireMITM{}
		m.answer = func(int, string, []string) *mitmReply {
			mu.Lock()
			defer mu.Unlock()
			if stolen != "" {
				return &mitmReply{http.StatusOK, stolen}
			}
			return nil
		}
		r.cfg.Portal.URL = startMITM(t, r.portal.Handler(), m).URL
		a := activatedAgent(t, r)
		keyB := r.createPBX(t, "other.example", license.Counts{license.UCPremium: 10})
		b := r.otherAppliance(t)
		ctx := context.Background()
		if err := b.Activate(ctx, keyB); err != nil {
			t.Fatal(err)
		}
		if err := b.heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		b.lic.mu.Lock()
		ans := b.lic.st.Answer
		b.lic.mu.Unlock()
		if _, typ, _ := license.PeekHeader(ans); typ != protocol.TypeSame {
			t.Fatalf("the other appliance kept a %s answer, want a same answer", typ)
		}
		mu.Lock()
		stolen = ans
		mu.Unlock()
		if err := a.heartbeat(ctx); err == nil || !strings.Contains(err.Error(), "another request") {
			t.Errorf("a heartbeat answered with another appliance's same answer: %v", err)
		}
	})
}

// activatedAgent activates a new agent on the rig for PBX acme.example.
func activatedAgent(t *testing.T, r *rig) *Agent {
	t.Helper()
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSameAnswerKeptAcrossRestart: the last success after a same answer
// is kept signed, with the request it echoes; a restart verifies the two
// together, and a kept request edited (to claim another licence or link)
// no longer verifies, so the last success falls back to the licence's
// issue time.
func TestSameAnswerKeptAcrossRestart(t *testing.T) {
	r := newRig(t)
	a := activatedAgent(t, r)
	r.advancePortal(t, 2*time.Hour) // two hours: the last success is not the licence's issue time
	if err := a.heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.lic.mu.Lock()
	kept, to := a.lic.st.Answer, a.lic.st.AnswerTo
	a.lic.mu.Unlock()
	if _, typ, _ := license.PeekHeader(kept); typ != protocol.TypeSame || to == "" {
		t.Fatalf("kept a %s answer with request %q, want a same answer and its request", typ, to)
	}
	want := a.Status().Heartbeat.LastSuccess

	b := r.newAgent(t)
	if got := b.Status().Heartbeat.LastSuccess; got == nil || !got.Equal(*want) {
		t.Errorf("after a restart the last success is %v, want %v", got, want)
	}

	// The owner swaps the kept request for another one signed with the
	// device key: the portal's echo no longer matches.
	editBeat(t, r.cfg.StateDir, func(b *beat) { b.AnswerTo = strings.Replace(to, to[40:44], "AAAA", 1) })
	c := r.newAgent(t)
	if got := c.Status().Heartbeat.LastSuccess; got != nil && got.Equal(*want) {
		t.Errorf("an edited kept request still vouches for the last success %v", got)
	}
}

// editBeat rewrites the heartbeat record as the owner could.
func editBeat(t *testing.T, dir string, edit func(*beat)) {
	t.Helper()
	f, err := slotfile.Open(filepath.Join(dir, beatFileName), beatMagic, beatSlotSize)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := f.Read()
	if err != nil {
		t.Fatal(err)
	}
	var b beat
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	edit(&b)
	if data, err = json.Marshal(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Write(data); err != nil {
		t.Fatal(err)
	}
}

// TestWireChanges: a compact heartbeat reports what differs from what the
// portal last acknowledged, tells "none" ({}) from "unchanged" (absent),
// and always carries the results not yet acknowledged.
func TestWireChanges(t *testing.T) {
	ten := license.Counts{license.UCPremium: 10}
	acked := heartbeatReport{state: "active", version: "1.0", counted: true, usage: ten}
	results := []protocol.CommandResult{{ID: "cmd-1", State: "done"}}
	for _, tt := range []struct {
		name  string
		acked *heartbeatReport
		now   heartbeatReport
		fetch bool
		want  string // the report as JSON
	}{
		{"nothing acknowledged since the start", nil, acked, false,
			`{"s":"active","u":{"uc-premium":10},"o":{},"v":"1.0"}`},
		{"unchanged", &acked, acked, false, `{}`},
		{"not counted yet", nil, heartbeatReport{state: "active", version: "1.0"}, false, `{"s":"active","v":"1.0"}`},
		{"a new count", &acked, heartbeatReport{state: "active", version: "1.0", counted: true, usage: license.Counts{license.UCPremium: 11},
			overuse: license.Counts{license.UCPremium: 1}}, false, `{"u":{"uc-premium":11},"o":{"uc-premium":1}}`},
		{"no users any more", &acked, heartbeatReport{state: "active", version: "1.0", counted: true}, false, `{"u":{}}`},
		{"a new state and version", &acked, heartbeatReport{state: "lapsed", version: "1.1", counted: true, usage: ten}, false,
			`{"s":"lapsed","v":"1.1"}`},
		{"results and fetch", &acked, heartbeatReport{state: "active", version: "1.0", counted: true, usage: ten, results: results}, true,
			`{"f":true,"x":[{"id":"cmd-1","state":"done","at":"0001-01-01T00:00:00Z"}]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := wireState{compact: true, acked: tt.acked}
			got, err := json.Marshal(w.changes(tt.now, tt.fetch))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("report %s, want %s", got, tt.want)
			}
		})
	}
}
