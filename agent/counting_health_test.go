package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/users"
)

// TestCountingHealthWithDatabaseMovedAway moves a real SQLite users
// database away and back: the status, the page, the metrics and
// admissions say counting fails, the page never claims free seats, and
// restoring the database clears all of it.
func TestCountingHealthWithDatabaseMovedAway(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE users (id INTEGER PRIMARY KEY, profile TEXT)",
		"INSERT INTO users (profile) VALUES ('uc-premium'), ('uc-premium')",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	src, err := users.NewSQLite(path, users.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}

	r := newRig(t)
	a := r.admitting(t, license.Counts{license.UCPremium: 3}, src)
	ctx, cancel := context.WithCancel(context.Background())
	api, err := localapi.New(localapi.Config{Backend: a, Metrics: a.Metrics().Handler()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- api.Serve(ctx, ln, localapi.TCP) }()
	t.Cleanup(func() { cancel(); <-served })
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	status := func() apitype.Status {
		t.Helper()
		code, body := get("/v1/status")
		var st apitype.Status
		if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
			t.Fatalf("GET /v1/status: %d %v %s", code, err, body)
		}
		return st
	}
	page := func() string {
		t.Helper()
		code, body := get("/")
		if code != 200 {
			t.Fatalf("GET /: %d", code)
		}
		return body
	}
	metricLines := func(want ...string) {
		t.Helper()
		_, body := get("/metrics")
		for _, line := range want {
			if !hasLine(body, line) {
				t.Errorf("/metrics lacks %q", line)
			}
		}
	}
	contains := func(what, body string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", what, w)
			}
		}
	}

	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}
	good := status().Users
	if good.Error != "" || good.CountedAt == nil || good.Failures != 0 || good.FailingSince != nil || good.Unknown {
		t.Fatalf("after a good count: %+v", good)
	}
	contains("the page", page(), "2 of 3", "1 free")
	metricLines(`pbx_agent_users_count_failing 0`, `pbx_agent_users_counts_total{result="success"} 1`,
		`pbx_agent_users_counts_total{result="failed"} 0`,
		"pbx_agent_users_count_last_success_timestamp_seconds "+strconv.FormatFloat(float64(good.CountedAt.Unix()), 'g', -1, 64))

	if err := os.Rename(path, path+".moved"); err != nil {
		t.Fatal(err)
	}
	r.time.run(time.Minute)
	if err := a.countUsers(ctx); err == nil {
		t.Fatal("the database moved away, and counting succeeded")
	}
	failing := status().Users
	if failing.Error == "" || failing.Failures != 1 || failing.FailingSince == nil || failing.Unknown ||
		failing.CountedAt == nil || !failing.CountedAt.Equal(*good.CountedAt) {
		t.Fatalf("after the database moved away: %+v", failing)
	}
	p := page()
	contains("the page", p, `id="counting"`, "Counting users fails", failing.Error, "Last good count", "2 of 3 at the last good count", "free seats unknown")
	if strings.Contains(p, "1 free") {
		t.Error("the page shows a free seat while counting fails")
	}
	metricLines(`pbx_agent_users_count_failing 1`, `pbx_agent_users_counts_total{result="failed"} 1`,
		"pbx_agent_users_count_last_success_timestamp_seconds "+strconv.FormatFloat(float64(good.CountedAt.Unix()), 'g', -1, 64))
	// Ready all the same: the agent answers, and denies with the reason;
	// failing readiness would hide that answer behind "unreachable".
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz while counting fails: %d, want 200", code)
	}

	// Failing for longer than admissions trust the last count.
	r.time.run(a.users.countMaxAge())
	a.countUsers(ctx)
	if st := status().Users; !st.Unknown || st.Failures != 2 || !st.FailingSince.Equal(*failing.FailingSince) {
		t.Errorf("failing for long: %+v, want unknown, 2 failures since the first", st)
	}
	contains("the page", page(), "not known: no new users are admitted")
	mustDeny(t, a.Admit(ctx, dry(license.UCPremium, 1)), "counting fails")

	if err := os.Rename(path+".moved", path); err != nil {
		t.Fatal(err)
	}
	if err := a.countUsers(ctx); err != nil {
		t.Fatalf("the database restored: %v", err)
	}
	restored := status().Users
	if restored.Error != "" || restored.Failures != 0 || restored.FailingSince != nil || restored.Unknown ||
		!restored.CountedAt.After(*good.CountedAt) {
		t.Fatalf("after the database came back: %+v", restored)
	}
	p = page()
	contains("the page", p, "2 of 3", "1 free")
	if strings.Contains(p, `id="counting"`) {
		t.Error("the page still says counting fails")
	}
	metricLines(`pbx_agent_users_count_failing 0`, `pbx_agent_users_counts_total{result="success"} 2`,
		`pbx_agent_users_counts_total{result="failed"} 2`,
		"pbx_agent_users_count_last_success_timestamp_seconds "+strconv.FormatFloat(float64(restored.CountedAt.Unix()), 'g', -1, 64))
	mustAdmit(t, a.Admit(ctx, dry(license.UCPremium, 1)), 0)
}
