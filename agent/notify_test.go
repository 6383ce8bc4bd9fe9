package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// notification is one datagram the daemon sent to NOTIFY_SOCKET.
type notification struct {
	text string
	at   time.Time
}

// systemdSocket listens where systemd would (NOTIFY_SOCKET, with the
// watchdog at watchdog when non-zero) and hands over what the daemon sends.
func systemdSocket(t *testing.T, watchdog time.Duration) <-chan notification {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	}
	ch := make(chan notification, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- notification{string(buf[:n]), time.Now()}
		}
	}()
	return ch
}

// await reads notifications until one contains want, and returns it.
func await(t *testing.T, ch <-chan notification, want string) notification {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("the notify socket closed before %q", want)
			}
			if strings.Contains(m.text, want) {
				return m
			}
		case <-deadline.C:
			t.Fatalf("no %q from the daemon", want)
		}
	}
}

// awaitSilence reads notifications until none containing what has come for
// quiet, and fails if that never happens within 15 s.
func awaitSilence(t *testing.T, ch <-chan notification, what string, quiet time.Duration) {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	window := time.NewTimer(quiet)
	defer window.Stop()
	for {
		select {
		case m := <-ch:
			if strings.Contains(m.text, what) {
				window.Reset(quiet)
			}
		case <-window.C:
			return
		case <-deadline.C:
			t.Fatalf("%s kept coming: never silent for %v", what, quiet)
		}
	}
}

// hangingPortal stands between the agent and the rig's portal; while hang
// is set, heartbeats wait until released (or the agent gives up).
type hangingPortal struct {
	url        string
	hang       atomic.Bool
	release    chan struct{}
	heartbeats atomic.Int64
}

func newHangingPortal(t *testing.T, r *rig) *hangingPortal {
	t.Helper()
	target, _ := url.Parse(r.server.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	h := &hangingPortal{release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == protocol.PathHeartbeat {
			h.heartbeats.Add(1)
			if h.hang.Load() {
				select {
				case <-h.release:
				case <-req.Context().Done():
					return
				}
			}
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// runAgent runs a in the background until the test ends.
func runAgent(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// usersFile writes a users.source command's answer and returns its path.
func usersFile(t *testing.T, json string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(p, []byte(json), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func notifyConfig(t *testing.T, r *rig) Config {
	cfg := r.cfg
	cfg.Listen.Socket = filepath.Join(t.TempDir(), "agent.sock")
	cfg.Listen.HTTP = "127.0.0.1:0"
	cfg.Users.Source = "command"
	cfg.Users.Command.Argv = []string{"/bin/cat", usersFile(t, `{"profiles": {"uc-premium": 3}}`)}
	return cfg
}

// TestRunNotifiesSystemd checks what systemd hears from a daemon that runs
// well: READY=1 with a STATUS= at once, STATUS= again when the summary
// changes, WATCHDOG=1 often enough for WATCHDOG_USEC, STOPPING=1 at the end.
func TestRunNotifiesSystemd(t *testing.T) {
	const watchdog = time.Second
	ch := systemdSocket(t, watchdog)
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	a, err := New(notifyConfig(t, r), slog.New(slog.DiscardHandler), Options{Root: r.root})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	first := await(t, ch, "READY=1")
	if !strings.Contains(first.text, "\nSTATUS=unactivated") {
		t.Errorf("READY=1 came without the status: %q", first.text)
	}
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	// Within a second of the change, without a tick of its own.
	m := await(t, ch, "STATUS=active; 3 of 10 users; last heartbeat ")
	if strings.Contains(m.text, "\n") {
		t.Errorf("STATUS= spans lines: %q", m.text)
	}

	// Five pings, each within the watchdog's time of the last.
	prev := await(t, ch, "WATCHDOG=1")
	for range 5 {
		next := await(t, ch, "WATCHDOG=1")
		if gap := next.at.Sub(prev.at); gap >= watchdog {
			t.Errorf("WATCHDOG=1 came %v after the last, over WATCHDOG_USEC (%v): systemd would restart the daemon", gap, watchdog)
		}
		prev = next
	}
	cancel()
	await(t, ch, "STOPPING=1")
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	// Nothing after STOPPING=1: the status is not sent on every tick.
	for _, m := range drain(ch) {
		if strings.Contains(m.text, "STATUS=") {
			t.Errorf("STATUS= after STOPPING=1: %q", m.text)
		}
	}
}

// drain returns what is queued on ch now.
func drain(ch <-chan notification) []notification {
	var out []notification
	for {
		select {
		case m := <-ch:
			out = append(out, m)
		default:
			return out
		}
	}
}

// TestWatchdogStopsWhenALoopIsStuck blocks each of the two loops the pings
// depend on and checks that WATCHDOG=1 stops until it is unblocked: the main
// loop, stuck on the agent's lock as in a deadlock, and the heartbeat loop,
// stuck in an exchange with a portal that does not answer.
func TestWatchdogStopsWhenALoopIsStuck(t *testing.T) {
	const watchdog = 600 * time.Millisecond
	ch := systemdSocket(t, watchdog)
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	portal := newHangingPortal(t, r)
	cfg := notifyConfig(t, r)
	cfg.Portal.URL = portal.url
	a, err := New(cfg, slog.New(slog.DiscardHandler), Options{Root: r.root})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	runAgent(t, a)
	await(t, ch, "READY=1")
	await(t, ch, "WATCHDOG=1")

	t.Run("main loop", func(t *testing.T) {
		a.lic.mu.Lock() // the main loop blocks on it at its next status check
		awaitSilence(t, ch, "WATCHDOG=1", 3*watchdog)
		a.lic.mu.Unlock()
		await(t, ch, "WATCHDOG=1")
	})
	t.Run("heartbeat loop", func(t *testing.T) {
		portal.hang.Store(true)
		before := portal.heartbeats.Load()
		refreshed := make(chan error, 1)
		go func() { refreshed <- a.Refresh(context.Background()) }()
		eventually(t, 10*time.Second, "a heartbeat reaching the portal", func() bool { return portal.heartbeats.Load() > before })
		awaitSilence(t, ch, "WATCHDOG=1", 3*watchdog)
		portal.hang.Store(false)
		close(portal.release)
		if err := <-refreshed; err != nil {
			t.Errorf("Refresh after the portal answered: %v", err)
		}
		await(t, ch, "WATCHDOG=1")
	})
}

// TestReloadOnSIGHUP sends the daemon SIGHUP with a changed configuration:
// RELOADING=1 with MONOTONIC_USEC, then READY=1; the live keys apply, the
// others are reported as needing a restart; a configuration that no longer
// loads keeps the running one and says why.
func TestReloadOnSIGHUP(t *testing.T) {
	ch := systemdSocket(t, 0)
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	portal := newHangingPortal(t, r)
	cfg := notifyConfig(t, r)
	cfg.Portal.URL = portal.url

	var mu sync.Mutex
	file, fileErr := cfg, error(nil)
	load := func() (Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return file, fileErr
	}
	level := new(slog.LevelVar)
	a, err := New(cfg, slog.New(slog.DiscardHandler), Options{Root: r.root, Reload: load, LogLevel: level})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	runAgent(t, a)
	await(t, ch, "READY=1")
	c := socketClient(cfg.Listen.Socket)
	status := func() apitype.Status {
		var st apitype.Status
		if err := getJSON(c, "/v1/status", &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	eventually(t, 10*time.Second, "the first count", func() bool { return status().License.Profiles["uc-premium"].Used == 3 })
	hangup := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("changed keys", func(t *testing.T) {
		mu.Lock()
		file.Heartbeat.Interval = 200 * time.Millisecond
		file.Users.Command.Argv = []string{"/bin/cat", usersFile(t, `{"profiles": {"uc-premium": 5}}`)}
		file.Admission.ReservationTTL = 100 * time.Millisecond
		file.Log.Level = "debug"
		file.Listen.HTTP = "127.0.0.1:9"
		file.StateDir = t.TempDir()
		mu.Unlock()
		beats := portal.heartbeats.Load()
		hangup()
		m := await(t, ch, "RELOADING=1")
		usec, ok := strings.CutPrefix(strings.TrimPrefix(m.text, "RELOADING=1\n"), "MONOTONIC_USEC=")
		n, err := strconv.ParseInt(usec, 10, 64)
		var now unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
		if !ok || err != nil || now.Nano()/1000-n < 0 || now.Nano()/1000-n > int64(time.Minute/time.Microsecond) {
			t.Errorf("RELOADING=1 without a MONOTONIC_USEC of now: %q", m.text)
		}
		ready := await(t, ch, "READY=1")
		if want := "restart to apply listen.http, state_dir"; !strings.Contains(ready.text, want) {
			t.Errorf("READY=1 after the reload: %q, want STATUS= with %q", ready.text, want)
		}
		st := status()
		if st.Config == nil || strings.Join(st.Config.RestartNeeded, " ") != "listen.http state_dir" || st.Config.Error != "" {
			t.Errorf("status config = %+v, want listen.http and state_dir to need a restart", st.Config)
		}
		if level.Level() != slog.LevelDebug {
			t.Errorf("log level %v after the reload, want debug", level.Level())
		}
		eventually(t, 10*time.Second, "the new users source", func() bool { return status().License.Profiles["uc-premium"].Used == 5 })
		eventually(t, 10*time.Second, "heartbeats every 200ms", func() bool { return portal.heartbeats.Load() >= beats+3 })
		// A reservation now lasts 100ms.
		if ans := a.Admit(context.Background(), apitype.Admission{Profile: license.UCPremium, Count: 1}); !ans.Allowed {
			t.Fatalf("admission: %+v", ans)
		}
		eventually(t, 10*time.Second, "the reservation to expire", func() bool {
			return status().License.Profiles["uc-premium"].Reserved == 0
		})
	})

	t.Run("a file that no longer loads", func(t *testing.T) {
		mu.Lock()
		fileErr = errors.New("reading config /etc/pbx-agent/agent.yaml: yaml: line 3: did not find expected key")
		mu.Unlock()
		hangup()
		await(t, ch, "RELOADING=1")
		ready := await(t, ch, "READY=1")
		if !strings.Contains(ready.text, "config not reloaded: reading config") {
			t.Errorf("READY=1 after a failed reload: %q", ready.text)
		}
		st := status()
		if st.Config == nil || !strings.Contains(st.Config.Error, "did not find expected key") ||
			strings.Join(st.Config.RestartNeeded, " ") != "listen.http state_dir" {
			t.Errorf("status config = %+v, want the error and the keys still needing a restart", st.Config)
		}
		if st.License.Profiles["uc-premium"].Used != 5 {
			t.Errorf("the running configuration changed: %+v", st.License.Profiles)
		}
	})

	t.Run("an invalid value", func(t *testing.T) {
		mu.Lock()
		fileErr = nil
		file.Heartbeat.Interval = time.Nanosecond
		mu.Unlock()
		hangup()
		ready := await(t, ch, "READY=1")
		if !strings.Contains(ready.text, "config not reloaded: config heartbeat.interval") {
			t.Errorf("READY=1 after an invalid reload: %q", ready.text)
		}
	})
}

func TestStatusLine(t *testing.T) {
	t0 := time.Date(2026, 5, 31, 10, 42, 17, 0, time.UTC)
	licence := func(used int, overuse map[string]int) *apitype.LicenseStatus {
		return &apitype.LicenseStatus{Profiles: map[string]apitype.ProfileStatus{
			"uc-premium": {Licensed: 10, Used: used}, "pbx-basic": {Licensed: 3, Used: 1},
		}, Overuse: overuse}
	}
	counted := apitype.UsersStatus{Source: "sqlite", CountedAt: &t0}
	tests := []struct {
		name string
		st   apitype.Status
		want string
	}{
		{"unactivated", apitype.Status{State: "unactivated", Next: "no PBX key activated yet (pbx-agent activate)"},
			"unactivated; no PBX key activated yet (pbx-agent activate)"},
		{"unactivated, not configured", apitype.Status{State: "unactivated", Next: "no PBX key activated yet (pbx-agent activate)",
			Heartbeat: apitype.HeartbeatStatus{LastError: "config portal.url: empty"}},
			"unactivated; no PBX key activated yet (pbx-agent activate); config portal.url: empty"},
		{"active", apitype.Status{State: "active", Next: "licensed by the portal", License: licence(8, nil), Users: counted,
			Heartbeat: apitype.HeartbeatStatus{LastSuccess: &t0}},
			"active; 9 of 13 users; last heartbeat 2026-05-31 10:42 UTC"},
		{"not counted yet", apitype.Status{State: "active", License: licence(0, nil), Heartbeat: apitype.HeartbeatStatus{LastSuccess: &t0}},
			"active; 13 licences, users not counted yet; last heartbeat 2026-05-31 10:42 UTC"},
		{"offline", apitype.Status{State: "offline", Next: "new users refused in 30 days, telephony stops in 44 days", License: licence(8, nil), Users: counted,
			Heartbeat: apitype.HeartbeatStatus{LastSuccess: &t0, LastError: "dial tcp 10.0.0.1:443: connect: connection refused"}},
			"offline; 9 of 13 users; new users refused in 30 days, telephony stops in 44 days; portal not reached since 2026-05-31 10:42 UTC: dial tcp 10.0.0.1:443: connect: connection refused"},
		{"over-use", apitype.Status{State: "active", License: licence(14, map[string]int{"uc-premium": 4}), Users: counted,
			Heartbeat: apitype.HeartbeatStatus{LastSuccess: &t0}},
			"active; 15 of 13 users; over-use: UC-Premium 4; last heartbeat 2026-05-31 10:42 UTC"},
		{"counting fails", apitype.Status{State: "active", License: licence(8, nil),
			Users:     apitype.UsersStatus{CountedAt: &t0, Error: "users source sqlite: database is locked\n(retrying)"},
			Heartbeat: apitype.HeartbeatStatus{LastSuccess: &t0}},
			"active; 9 of 13 users; last heartbeat 2026-05-31 10:42 UTC; counting users fails: users source sqlite: database is locked (retrying)"},
		{"stopping", apitype.Status{State: "stopping", Next: "no new users; telephony stops in 5 days, PBX deleted in 14 days; to keep the PBX, add a licence back on the portal and contact your Area Manager", License: licence(0, nil), Users: counted,
			Deadlines: apitype.Deadlines{StopAt: &t0}, Heartbeat: apitype.HeartbeatStatus{LastSuccess: &t0}},
			"stopping; 1 of 13 users; no new users; telephony stops in 5 days, PBX deleted in 14 days; to keep the PBX, add a licence back on the portal and contact your Area Manager; last heartbeat 2026-05-31 10:42 UTC"},
		{"stopped", apitype.Status{State: "stopped", Next: "telephony stopped; PBX deleted in 8 days; to keep the PBX, add a licence back on the portal and contact your Area Manager", Deadlines: apitype.Deadlines{DeleteAt: &t0}},
			"stopped; telephony stopped; PBX deleted in 8 days; to keep the PBX, add a licence back on the portal and contact your Area Manager"},
		{"deleted", apitype.Status{State: "deleted", Next: "PBX deleted 2 days ago; to recover it, add a licence back on the portal and contact your Area Manager; otherwise a new PBX key is needed (pbx-agent activate)"},
			"deleted; PBX deleted 2 days ago; to recover it, add a licence back on the portal and contact your Area Manager; otherwise a new PBX key is needed (pbx-agent activate)"},
		{"restart needed", apitype.Status{State: "active", Heartbeat: apitype.HeartbeatStatus{LastSuccess: &t0},
			Config: &apitype.ConfigStatus{RestartNeeded: []string{"listen.http", "state_dir"}}},
			"active; last heartbeat 2026-05-31 10:42 UTC; restart to apply listen.http, state_dir"},
		{"reload failed", apitype.Status{State: "active", Config: &apitype.ConfigStatus{Error: "yaml: line 3"}},
			"active; config not reloaded: yaml: line 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statusLine(tt.st); got != tt.want {
				t.Errorf("statusLine =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
	long := statusLine(apitype.Status{State: "offline", Heartbeat: apitype.HeartbeatStatus{LastError: strings.Repeat("é", 400)}})
	if len(long) > maxStatusLine || !strings.HasSuffix(long, "...") || !strings.HasPrefix(long, "offline; éé") {
		t.Errorf("a long status is %d bytes: %q", len(long), long)
	}
}

func TestChangedKeys(t *testing.T) {
	a := DefaultConfig()
	b := DefaultConfig()
	b.Enforcement.StopUnits = nil // empty either way
	b.Listen.HTTP = "127.0.0.1:1"
	b.Users.SQLite.Query = "SELECT 1"
	b.Log.Level = "debug"
	got := changedKeys(a, b)
	if want := "listen.http log.level users.sqlite.query"; strings.Join(got, " ") != want {
		t.Errorf("changedKeys = %v, want %s", got, want)
	}
	for key, live := range map[string]bool{
		"heartbeat.interval": true, "users.sqlite.query": true, "users.source": true, "log.level": true,
		"admission.reservation_ttl": true, "enforcement.overuse_hook": true,
		"listen.http": false, "state_dir": false, "portal.url": false, "enforcement.stop_command": false,
		"enforcement.command_timeout": false, "users": false, "usersx": false,
	} {
		if isLive(key) != live {
			t.Errorf("isLive(%q) = %v, want %v", key, !live, live)
		}
	}
}
