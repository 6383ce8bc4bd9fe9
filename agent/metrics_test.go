package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// scrape returns the agent's metrics as GET /metrics answers them.
func scrape(t *testing.T, a *Agent) string {
	t.Helper()
	w := httptest.NewRecorder()
	a.Metrics().Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 {
		t.Fatalf("GET /metrics: %d %s", w.Code, w.Body)
	}
	return w.Body.String()
}

func hasLine(body, line string) bool { return strings.Contains(body, "\n"+line+"\n") }

// TestHeartbeatMetrics runs heartbeats against the in-process portal and
// checks each outcome's count, and that the gauges follow the agent.
func TestHeartbeatMetrics(t *testing.T) {
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10, license.PBXBasic: 3})
	a := r.newAgent(t)
	ctx := context.Background()

	body := scrape(t, a)
	for _, line := range []string{
		`pbx_license_state{state="unactivated"} 1`,
		`pbx_license_users_licensed{profile="uc-premium"} 0`,
		`pbx_agent_heartbeats_total{result="success"} 0`,
		`pbx_license_deadline_timestamp_seconds{kind="offline_grace"} NaN`,
		`pbx_agent_heartbeat_last_success_timestamp_seconds NaN`,
	} {
		if !hasLine(body, line) {
			t.Errorf("before activation, no line %q", line)
		}
	}
	// Not activated: no exchange, nothing counted.
	if err := a.heartbeat(ctx); !errors.Is(err, ErrNotActivated) {
		t.Fatalf("heartbeat before activation: %v", err)
	}

	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	r.faults(t, 1) // every answer a 500
	if err := a.heartbeat(ctx); err == nil {
		t.Fatal("heartbeat succeeded with every answer a 500")
	}
	r.faults(t, 0)
	if _, err := r.admin.PatchFaults(ctx, map[string]any{"bad_signature_rate": 1}); err != nil {
		t.Fatal(err)
	}
	if err := a.heartbeat(ctx); err == nil {
		t.Fatal("heartbeat succeeded with a bad signature")
	}
	if _, err := r.admin.PatchFaults(ctx, map[string]any{"bad_signature_rate": 0}); err != nil {
		t.Fatal(err)
	}
	r.server.Close() // the portal gone from the network
	if err := a.heartbeat(ctx); err == nil {
		t.Fatal("heartbeat succeeded with the portal down")
	}

	body = scrape(t, a)
	st := a.Status()
	for _, line := range []string{
		`pbx_agent_heartbeats_total{result="success"} 1`,
		`pbx_agent_heartbeats_total{result="refused"} 1`,
		`pbx_agent_heartbeats_total{result="invalid"} 1`,
		`pbx_agent_heartbeats_total{result="unreachable"} 1`,
		`pbx_agent_heartbeats_total{result="gone"} 0`,
		`pbx_agent_heartbeat_duration_seconds_count 4`,
		`pbx_license_state{state="active"} 1`,
		`pbx_license_state{state="unactivated"} 0`,
		`pbx_license_users_licensed{profile="uc-premium"} 10`,
		`pbx_license_users_licensed{profile="pbx-basic"} 3`,
		`pbx_license_users_licensed{profile="uc-wizyconf"} 0`,
		`pbx_license_deadline_timestamp_seconds{kind="stop"} NaN`,
		`pbx_agent_heartbeat_last_success_timestamp_seconds ` + promTime(*st.Heartbeat.LastSuccess),
		`pbx_license_deadline_timestamp_seconds{kind="offline_grace"} ` + promTime(*st.Deadlines.OfflineGraceEnd),
	} {
		if !hasLine(body, line) {
			t.Errorf("no line %q in\n%s", line, grepPBX(body))
		}
	}
}

// TestHeartbeatGoneMetric counts the portal's "gone" answer after a rebind.
func TestHeartbeatGoneMetric(t *testing.T) {
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 1})
	a := r.newAgent(t)
	ctx := context.Background()
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.Rebind(ctx, "acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, a)
	for _, line := range []string{
		`pbx_agent_heartbeats_total{result="gone"} 1`,
		`pbx_license_state{state="deleted"} 1`,
		`pbx_license_users_licensed{profile="uc-premium"} 0`,
	} {
		if !hasLine(body, line) {
			t.Errorf("no line %q in\n%s", line, grepPBX(body))
		}
	}
}

func TestHeartbeatResult(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&refusedError{status: 503}, metrics.HeartbeatRefused},
		{fmt.Errorf("wrapped: %w", &refusedError{status: 409}), metrics.HeartbeatRefused},
		{&unreachableError{errors.New("connection refused")}, metrics.HeartbeatUnreachable},
		{context.DeadlineExceeded, metrics.HeartbeatUnreachable},
		{errors.New("refusing the portal's answer: bad signature"), metrics.HeartbeatInvalid},
	} {
		if got := heartbeatResult(c.err); got != c.want {
			t.Errorf("heartbeatResult(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	for status, want := range map[protocol.Status]string{
		protocol.StatusOK: metrics.HeartbeatSuccess, protocol.StatusGone: metrics.HeartbeatGone, "other": metrics.HeartbeatInvalid,
	} {
		if got := answerResult(status); got != want {
			t.Errorf("answerResult(%s) = %s, want %s", status, got, want)
		}
	}
}

// promTime formats t as a Unix time in the text format.
func promTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.Unix())+float64(t.Nanosecond())/1e9, 'g', -1, 64)
}

func grepPBX(body string) string {
	var out []string
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "pbx_") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func TestMetricsConfig(t *testing.T) {
	for _, c := range []struct {
		name    string
		mc      MetricsConfig
		wantErr string // "" valid
	}{
		{"off", MetricsConfig{}, ""},
		{"plain", MetricsConfig{Listen: ":9732"}, ""},
		{"with a web configuration", MetricsConfig{Listen: "0.0.0.0:9732", WebConfigFile: "/etc/pbx-agent/web-config.yml"}, ""},
		{"not an address", MetricsConfig{Listen: "9732"}, "metrics.listen"},
		{"web configuration without a listener", MetricsConfig{WebConfigFile: "/etc/pbx-agent/web-config.yml"}, "metrics.web_config_file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Metrics = c.mc
			err := cfg.Validate()
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("Validate: %v, want an error naming %s", err, c.wantErr)
			}
		})
	}
}

// TestListenMetricsRefusesABrokenWebConfig keeps the start all or nothing:
// a web configuration that cannot serve stops Run before anything listens.
func TestListenMetricsRefusesABrokenWebConfig(t *testing.T) {
	r := newRig(t)
	a := r.newAgent(t)
	a.cfg.Metrics = MetricsConfig{Listen: "127.0.0.1:0", WebConfigFile: t.TempDir() + "/missing.yml"}
	a.cfg.Listen.Socket = t.TempDir() + "/agent.sock"
	a.cfg.Listen.HTTP = "127.0.0.1:0"
	err := a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "metrics.web_config_file") {
		t.Fatalf("Run: %v, want an error naming metrics.web_config_file", err)
	}
}
