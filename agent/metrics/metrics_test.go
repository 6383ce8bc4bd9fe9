package metrics

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/buildinfo"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var testBuild = buildinfo.Info{Version: "1.2.3", Revision: "0123abcd", GoVersion: "go1.26.0"}

// testCommandTypes stand for the agent's executor table.
var testCommandTypes = []string{"ssh.open", "ssh.close", "wms.upgrade"}

func at(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

// snapshots are agent statuses in the shapes the gauges must handle.
var snapshots = map[string]apitype.Status{
	"unactivated": {State: "unactivated", Commands: []apitype.CommandStatus{}},
	"active": {
		State: "active",
		PBX:   &apitype.PBXStatus{ID: "pbx-1", Name: "acme.example", Model: "WPBX-VM"},
		License: &apitype.LicenseStatus{Term: "monthly", TermEnd: at("2027-03-31T23:59:59Z"), Revision: 4,
			Profiles: map[string]apitype.ProfileStatus{
				"uc-premium": {Licensed: 10, Used: 12}, "pbx-basic": {Licensed: 3, Used: 1},
				"uc-essential": {}, "uc-business": {}, "uc-wizyconf": {}, "pbx-service": {},
			},
			Overuse: map[string]int{"uc-premium": 2}},
		Heartbeat: apitype.HeartbeatStatus{LastSuccess: at("2027-03-10T10:00:00Z")},
		Deadlines: apitype.Deadlines{OfflineGraceEnd: at("2027-04-09T10:00:00Z")},
		SSH:       apitype.SSHStatus{Open: true, Port: 2222, Until: at("2027-03-10T11:00:00Z")},
		WMS:       apitype.WMSStatus{Version: "7.02.20250609.3", Latest: "7.03.20250901.2", Behind: true},
	},
	"stopping": {
		State: "stopping",
		License: &apitype.LicenseStatus{Term: "lifetime", Revision: 9,
			Profiles: map[string]apitype.ProfileStatus{"uc-premium": {Used: 4}}},
		Heartbeat: apitype.HeartbeatStatus{LastSuccess: at("2027-03-10T10:00:00Z")},
		Deadlines: apitype.Deadlines{StopAt: at("2027-03-15T00:00:00Z"), DeleteAt: at("2027-03-24T00:00:00Z"),
			OfflineGraceEnd: at("2027-04-09T10:00:00Z")},
		// An SSH until left over after closing is not reported.
		SSH: apitype.SSHStatus{Port: 2222, Until: at("2027-03-10T11:00:00Z")},
	},
	"tunnel": {
		State: "active",
		SSH: apitype.SSHStatus{Open: true, Port: 222, Until: at("2027-03-10T11:00:00Z"),
			Tunnel: &apitype.SSHTunnelStatus{Open: true, Connected: true, Since: at("2027-03-10T10:00:00Z"),
				Sessions: 2, SessionsTotal: 5, BytesIn: 4096, BytesOut: 65536}},
	},
	"air-gapped": {
		State: "active",
		PBX:   &apitype.PBXStatus{ID: "pbx-1", Name: "acme.example", Model: "WPBX-VM"},
		License: &apitype.LicenseStatus{Term: "monthly", TermEnd: at("2027-03-31T23:59:59Z"), Revision: 4,
			Profiles: map[string]apitype.ProfileStatus{"uc-premium": {Licensed: 10, Used: 3}}},
		Deadlines: apitype.Deadlines{OfflineGraceEnd: at("2027-04-09T10:00:00Z")},
		Mode:      apitype.ModeAirGapped,
		Offline:   &apitype.OfflineStatus{Horizon: at("2027-04-09T10:00:00Z"), NextDue: at("2027-04-02T10:00:00Z")},
	},
}

func newTest(t *testing.T, s apitype.Status) *Metrics {
	t.Helper()
	return New(Config{Status: func() apitype.Status { return s }, Build: testBuild, CommandTypes: testCommandTypes, Started: testStarted})
}

// testStarted is the process start the tests' registries report.
var testStarted = time.Date(2026, 5, 20, 8, 0, 0, 500_000_000, time.UTC)

// gather returns the registry's families by name.
func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the value of the series of family name with exactly the
// label values given as name=value pairs; ok false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := fams[name]
	if mf == nil {
		return 0, false
	}
	want := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		want[k] = v
	}
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(want) {
			continue
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// contract is DESIGN.md section 4's metrics, with the additions README.md
// documents (pbx_license_users_overuse; kind="lapse_grace"): name, type,
// and each label with the values every series is pre-initialised with
// (nil: a single value that varies, such as a version).
var contract = []struct {
	name   string
	typ    dto.MetricType
	labels map[string][]string
}{
	{"pbx_license_users_licensed", dto.MetricType_GAUGE, map[string][]string{"profile": profileIDs()}},
	{"pbx_license_users_used", dto.MetricType_GAUGE, map[string][]string{"profile": profileIDs()}},
	{"pbx_license_users_overuse", dto.MetricType_GAUGE, map[string][]string{"profile": profileIDs()}},
	{"pbx_license_state", dto.MetricType_GAUGE, map[string][]string{"state": {"unactivated", "active", "offline", "lapsed", "stopping", "stopped", "deleted"}}},
	{"pbx_license_term_end_timestamp_seconds", dto.MetricType_GAUGE, nil},
	{"pbx_license_deadline_timestamp_seconds", dto.MetricType_GAUGE, map[string][]string{"kind": {"stop", "delete", "offline_grace", "lapse_grace"}}},
	{"pbx_agent_heartbeat_last_success_timestamp_seconds", dto.MetricType_GAUGE, nil},
	{"pbx_agent_heartbeats_total", dto.MetricType_COUNTER, map[string][]string{"result": {"success", "unreachable", "refused", "invalid", "gone"}}},
	{"pbx_agent_heartbeat_duration_seconds", dto.MetricType_HISTOGRAM, nil},
	{"pbx_agent_admission_decisions_total", dto.MetricType_COUNTER, map[string][]string{"profile": profileIDs(), "decision": {"allowed", "denied"}}},
	{"pbx_agent_commands_total", dto.MetricType_COUNTER, map[string][]string{"type": {"ssh.open", "ssh.close", "wms.upgrade"}, "result": {"success", "failed", "refused"}}},
	{"pbx_ssh_open", dto.MetricType_GAUGE, nil},
	{"pbx_ssh_open_until_timestamp_seconds", dto.MetricType_GAUGE, nil},
	{"pbx_wms_version_info", dto.MetricType_GAUGE, map[string][]string{"version": nil}},
	{"pbx_wms_latest_info", dto.MetricType_GAUGE, map[string][]string{"version": nil}},
	{"pbx_wms_behind", dto.MetricType_GAUGE, nil},
	{"pbx_agent_build_info", dto.MetricType_GAUGE, map[string][]string{"version": nil, "revision": nil, "goversion": nil}},
	// Additions: counting health, the PBX's identity, the start time.
	{"pbx_agent_users_count_last_success_timestamp_seconds", dto.MetricType_GAUGE, nil},
	{"pbx_agent_users_count_failing", dto.MetricType_GAUGE, nil},
	{"pbx_agent_users_counts_total", dto.MetricType_COUNTER, map[string][]string{"result": {"success", "failed"}}},
	{"pbx_pbx_info", dto.MetricType_GAUGE, map[string][]string{"pbx_id": nil, "name": nil, "model": nil, "term": nil}},
	{"pbx_agent_start_time_seconds", dto.MetricType_GAUGE, nil},
	// Support SSH in tunnel mode.
	{"pbx_agent_ssh_tunnel_open", dto.MetricType_GAUGE, nil},
	{"pbx_agent_ssh_tunnel_connected", dto.MetricType_GAUGE, nil},
	{"pbx_agent_ssh_tunnel_sessions", dto.MetricType_GAUGE, nil},
	{"pbx_agent_ssh_tunnel_sessions_total", dto.MetricType_COUNTER, nil},
	{"pbx_agent_ssh_tunnel_bytes_total", dto.MetricType_COUNTER, map[string][]string{"direction": {"to_sshd", "to_portal"}}},
	{"pbx_agent_ssh_tunnel_streams_refused_total", dto.MetricType_COUNTER, nil},
	// Additions: an air-gapped PBX's file exchange.
	{"pbx_license_air_gapped", dto.MetricType_GAUGE, nil},
	{"pbx_license_offline_file_due_timestamp_seconds", dto.MetricType_GAUGE, nil},
}

// TestContract checks that every series of the contract exists from
// start-up, before any event, with every label value pre-initialised, in
// every shape of status; and that nothing else is prefixed pbx_.
func TestContract(t *testing.T) {
	for name, s := range snapshots {
		t.Run(name, func(t *testing.T) {
			fams := gather(t, newTest(t, s))
			known := map[string]bool{}
			for _, c := range contract {
				known[c.name] = true
				mf := fams[c.name]
				if mf == nil {
					t.Errorf("%s: missing", c.name)
					continue
				}
				if mf.GetType() != c.typ {
					t.Errorf("%s: type %v, want %v", c.name, mf.GetType(), c.typ)
				}
				want := 1
				for _, vals := range c.labels {
					if vals != nil {
						want *= len(vals)
					}
				}
				if got := len(mf.GetMetric()); got != want {
					t.Errorf("%s: %d series, want %d", c.name, got, want)
				}
				for _, m := range mf.GetMetric() {
					var names []string
					for _, lp := range m.GetLabel() {
						names = append(names, lp.GetName())
						vals, ok := c.labels[lp.GetName()]
						if !ok {
							t.Errorf("%s: unexpected label %s", c.name, lp.GetName())
						} else if vals != nil && !slices.Contains(vals, lp.GetValue()) {
							t.Errorf("%s: %s=%q is not a pre-initialised value", c.name, lp.GetName(), lp.GetValue())
						}
					}
					if len(names) != len(c.labels) {
						t.Errorf("%s: labels %v, want %v", c.name, names, c.labels)
					}
				}
			}
			for name := range fams {
				if strings.HasPrefix(name, "pbx_") && !known[name] {
					t.Errorf("%s: not in the contract", name)
				}
			}
			for _, std := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
				"go_goroutines", "go_memstats_heap_alloc_bytes", "go_gc_duration_seconds", "promhttp_metric_handler_errors_total"} {
				if fams[std] == nil {
					t.Errorf("%s: missing; the standard process and Go collectors are registered", std)
				}
			}
			for name := range fams {
				// The full runtime/metrics set names series go_sched_*,
				// go_cpu_classes_*, ...: only the classic set is wanted.
				if strings.HasPrefix(name, "go_cpu_classes_") || strings.HasPrefix(name, "go_godebug_") {
					t.Errorf("%s: the full runtime metrics set is registered; the classic one is wanted", name)
				}
			}
		})
	}
}

func TestStatusGauges(t *testing.T) {
	nan := math.NaN()
	type want struct {
		name   string
		labels []string
		value  float64
	}
	cases := map[string][]want{
		"unactivated": {
			{"pbx_license_state", []string{"state=unactivated"}, 1},
			{"pbx_license_state", []string{"state=active"}, 0},
			{"pbx_license_users_licensed", []string{"profile=uc-premium"}, 0},
			{"pbx_license_term_end_timestamp_seconds", nil, nan},
			{"pbx_license_deadline_timestamp_seconds", []string{"kind=stop"}, nan},
			{"pbx_license_deadline_timestamp_seconds", []string{"kind=offline_grace"}, nan},
			{"pbx_agent_heartbeat_last_success_timestamp_seconds", nil, nan},
			{"pbx_ssh_open", nil, 0},
			{"pbx_ssh_open_until_timestamp_seconds", nil, nan},
			{"pbx_agent_ssh_tunnel_open", nil, 0},
			{"pbx_agent_ssh_tunnel_connected", nil, 0},
			{"pbx_agent_ssh_tunnel_sessions", nil, 0},
			{"pbx_wms_version_info", []string{"version=unknown"}, 1},
			{"pbx_wms_latest_info", []string{"version=unknown"}, 1},
			{"pbx_wms_behind", nil, nan}, // neither version known: not "up to date"
			{"pbx_agent_build_info", []string{"version=1.2.3", "revision=0123abcd", "goversion=go1.26.0"}, 1},
		},
		"active": {
			{"pbx_license_state", []string{"state=active"}, 1},
			{"pbx_license_state", []string{"state=unactivated"}, 0},
			{"pbx_license_users_licensed", []string{"profile=uc-premium"}, 10},
			{"pbx_license_users_licensed", []string{"profile=pbx-basic"}, 3},
			{"pbx_license_users_licensed", []string{"profile=uc-wizyconf"}, 0},
			{"pbx_license_users_used", []string{"profile=uc-premium"}, 12},
			{"pbx_license_users_overuse", []string{"profile=uc-premium"}, 2},
			{"pbx_license_users_overuse", []string{"profile=pbx-basic"}, 0},
			{"pbx_license_term_end_timestamp_seconds", nil, float64(at("2027-03-31T23:59:59Z").Unix())},
			{"pbx_license_deadline_timestamp_seconds", []string{"kind=stop"}, nan},
			{"pbx_license_deadline_timestamp_seconds", []string{"kind=offline_grace"}, float64(at("2027-04-09T10:00:00Z").Unix())},
			{"pbx_agent_heartbeat_last_success_timestamp_seconds", nil, float64(at("2027-03-10T10:00:00Z").Unix())},
			{"pbx_ssh_open", nil, 1},
			{"pbx_ssh_open_until_timestamp_seconds", nil, float64(at("2027-03-10T11:00:00Z").Unix())},
			{"pbx_agent_ssh_tunnel_open", nil, 0}, // port mode
			{"pbx_wms_version_info", []string{"version=7.02.20250609.3"}, 1},
			{"pbx_wms_latest_info", []string{"version=7.03.20250901.2"}, 1},
			{"pbx_wms_behind", nil, 1},
		},
		"stopping": {
			{"pbx_license_state", []string{"state=stopping"}, 1},
			{"pbx_license_users_licensed", []string{"profile=uc-premium"}, 0},
			{"pbx_license_users_used", []string{"profile=uc-premium"}, 4},
			{"pbx_license_term_end_timestamp_seconds", nil, nan}, // lifetime
			{"pbx_license_deadline_timestamp_seconds", []string{"kind=stop"}, float64(at("2027-03-15T00:00:00Z").Unix())},
			{"pbx_license_deadline_timestamp_seconds", []string{"kind=delete"}, float64(at("2027-03-24T00:00:00Z").Unix())},
			{"pbx_license_deadline_timestamp_seconds", []string{"kind=lapse_grace"}, nan},
			{"pbx_ssh_open", nil, 0},
			{"pbx_ssh_open_until_timestamp_seconds", nil, nan},
		},
		"tunnel": {
			{"pbx_ssh_open", nil, 1},
			{"pbx_agent_ssh_tunnel_open", nil, 1},
			{"pbx_agent_ssh_tunnel_connected", nil, 1},
			{"pbx_agent_ssh_tunnel_sessions", nil, 2},
		},
	}
	for name, wants := range cases {
		t.Run(name, func(t *testing.T) {
			fams := gather(t, newTest(t, snapshots[name]))
			for _, w := range wants {
				got, ok := value(fams, w.name, w.labels...)
				switch {
				case !ok:
					t.Errorf("%s%v: no such series", w.name, w.labels)
				case math.IsNaN(w.value) && !math.IsNaN(got), !math.IsNaN(w.value) && got != w.value:
					t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
				}
			}
		})
	}
}

// TestStatusReadAtScrape checks that the gauges follow the snapshot from
// one scrape to the next, with nothing cached.
func TestStatusReadAtScrape(t *testing.T) {
	var mu sync.Mutex
	s := snapshots["unactivated"]
	m := New(Config{Status: func() apitype.Status { mu.Lock(); defer mu.Unlock(); return s }, Build: testBuild})
	if v, _ := value(gather(t, m), "pbx_license_state", "state=active"); v != 0 {
		t.Fatalf("active before activation: %v", v)
	}
	mu.Lock()
	s = snapshots["active"]
	mu.Unlock()
	fams := gather(t, m)
	if v, _ := value(fams, "pbx_license_state", "state=active"); v != 1 {
		t.Errorf("active after activation: %v", v)
	}
	if v, _ := value(fams, "pbx_license_state", "state=unactivated"); v != 0 {
		t.Errorf("unactivated after activation: %v", v)
	}
}

func TestEvents(t *testing.T) {
	var logs bytes.Buffer
	m := New(Config{Status: func() apitype.Status { return snapshots["unactivated"] }, Build: testBuild, CommandTypes: testCommandTypes,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	m.Heartbeat(HeartbeatSuccess, 120*time.Millisecond)
	m.Heartbeat(HeartbeatSuccess, 80*time.Millisecond)
	m.Heartbeat(HeartbeatUnreachable, 30*time.Second)
	m.Heartbeat(HeartbeatUnreachable, 0) // no exchange: counted, not timed
	m.AdmissionDecision("uc-premium", DecisionAllowed)
	m.AdmissionDecision("uc-premium", DecisionDenied)
	m.AdmissionDecision("uc-premium", DecisionDenied)
	m.Command("wms.upgrade", CommandFailed)
	// Values outside the pre-initialised sets are refused: no new series.
	m.Heartbeat("exploded", time.Second)
	m.AdmissionDecision("uc-platinum", DecisionAllowed)
	m.AdmissionDecision("uc-premium", "maybe")
	m.Command("reboot", CommandSuccess)
	m.Command("ssh.open", "half")
	m.TunnelSession()
	m.TunnelSession()
	m.TunnelBytes(100, 2000)
	m.TunnelBytes(-1, 5) // never negative: a counter only rises
	m.TunnelRefused()

	fams := gather(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pbx_agent_heartbeats_total", []string{"result=success"}, 2},
		{"pbx_agent_heartbeats_total", []string{"result=unreachable"}, 2},
		{"pbx_agent_heartbeats_total", []string{"result=refused"}, 0},
		{"pbx_agent_heartbeat_duration_seconds", nil, 3},
		{"pbx_agent_admission_decisions_total", []string{"profile=uc-premium", "decision=allowed"}, 1},
		{"pbx_agent_admission_decisions_total", []string{"profile=uc-premium", "decision=denied"}, 2},
		{"pbx_agent_admission_decisions_total", []string{"profile=pbx-basic", "decision=denied"}, 0},
		{"pbx_agent_commands_total", []string{"type=wms.upgrade", "result=failed"}, 1},
		{"pbx_agent_commands_total", []string{"type=wms.upgrade", "result=success"}, 0},
		{"pbx_agent_ssh_tunnel_sessions_total", nil, 2},
		{"pbx_agent_ssh_tunnel_bytes_total", []string{"direction=to_sshd"}, 100},
		{"pbx_agent_ssh_tunnel_bytes_total", []string{"direction=to_portal"}, 2005},
		{"pbx_agent_ssh_tunnel_streams_refused_total", nil, 1},
	} {
		if got, ok := value(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (exists %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	h := fams["pbx_agent_heartbeat_duration_seconds"].GetMetric()[0].GetHistogram()
	if sum := h.GetSampleSum(); math.Abs(sum-30.2) > 1e-9 {
		t.Errorf("heartbeat duration sum %v, want 30.2", sum)
	}
	if n := len(fams["pbx_agent_heartbeats_total"].GetMetric()); n != len(heartbeatResults) {
		t.Errorf("heartbeats_total has %d series after unknown results, want %d", n, len(heartbeatResults))
	}
	if n := len(fams["pbx_agent_admission_decisions_total"].GetMetric()); n != len(license.Profiles())*len(decisions) {
		t.Errorf("admission_decisions_total has %d series after unknown values", n)
	}
	if n := len(fams["pbx_agent_commands_total"].GetMetric()); n != len(testCommandTypes)*len(commandResults) {
		t.Errorf("commands_total has %d series after unknown values", n)
	}
	if got := strings.Count(logs.String(), "unknown label value"); got != 5 {
		t.Errorf("logged %d unknown label values, want 5:\n%s", got, logs.String())
	}

	var nilMetrics *Metrics // code under test may run without metrics
	nilMetrics.Heartbeat(HeartbeatSuccess, time.Second)
	nilMetrics.AdmissionDecision("uc-premium", DecisionAllowed)
	nilMetrics.Command("ssh.open", CommandSuccess)
}

// TestLint runs client_golang's promlint (what promtool check metrics
// runs) over every shape of status; make check also runs promtool itself
// on a live agent's output.
func TestLint(t *testing.T) {
	for name, s := range snapshots {
		t.Run(name, func(t *testing.T) {
			problems, err := testutil.GatherAndLint(newTest(t, s).Gatherer())
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("%s: %s", p.Metric, p.Text)
			}
		})
	}
}

// TestGolden keeps the pbx_ series of each status shape in
// testdata/<shape>.txt (go test -update rewrites them), so a change to
// the exposition shows in review.
func TestGolden(t *testing.T) {
	var names []string
	for _, c := range contract {
		names = append(names, c.name)
	}
	for name, s := range snapshots {
		t.Run(name, func(t *testing.T) {
			got, err := testutil.GatherAndFormat(newTest(t, s).Gatherer(), expfmt.TypeTextPlain, names...)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".txt")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the exposition differs from %s (go test -update rewrites it):\n%s", path, got)
			}
		})
	}
}

// TestHandler checks the HTTP side: the text format, and the cap on
// concurrent scrapes (503 beyond it, at once).
func TestHandler(t *testing.T) {
	t.Run("text format", func(t *testing.T) {
		srv := httptest.NewServer(newTest(t, snapshots["active"]).Handler())
		defer srv.Close()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, line := range []string{
			`pbx_license_state{state="active"} 1`,
			`pbx_license_users_licensed{profile="uc-premium"} 10`,
			`pbx_license_deadline_timestamp_seconds{kind="stop"} NaN`,
			`pbx_agent_build_info{goversion="go1.26.0",revision="0123abcd",version="1.2.3"} 1`,
		} {
			if !strings.Contains(string(body), "\n"+line+"\n") {
				t.Errorf("no line %q", line)
			}
		}
	})
	t.Run("concurrent scrapes capped", func(t *testing.T) {
		release := make(chan struct{})
		entered := make(chan struct{}, 8)
		m := New(Config{Build: testBuild, MaxScrapes: 2, Status: func() apitype.Status {
			entered <- struct{}{}
			<-release
			return snapshots["active"]
		}})
		srv := httptest.NewServer(m.Handler())
		defer srv.Close()
		codes := make(chan int, 2)
		for range 2 {
			go func() {
				resp, err := http.Get(srv.URL)
				if err != nil {
					codes <- 0
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
		}
		<-entered
		<-entered // both scrapes are gathering
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("a third concurrent scrape: %d, want 503", resp.StatusCode)
		}
		close(release)
		for range 2 {
			if c := <-codes; c != 200 {
				t.Errorf("a capped scrape answered %d", c)
			}
		}
	})
}

// familyNames returns the series names a registry exposes: each family,
// and for histograms their _bucket, _sum and _count series.
func familyNames(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams := gather(t, m)
	out := map[string]*dto.MetricFamily{}
	for name, mf := range fams {
		out[name] = mf
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				out[name+suffix] = mf
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
