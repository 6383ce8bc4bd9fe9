package integration

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// systemd is a NOTIFY_SOCKET that a test reads, as systemd would.
type systemd struct {
	t    *testing.T
	msgs chan notification
}

type notification struct {
	text string
	at   time.Time
}

// listenNotify makes a notify socket and points the agents the test starts
// at it, with the watchdog at watchdog.
func listenNotify(t *testing.T, watchdog time.Duration) *systemd {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	s := &systemd{t: t, msgs: make(chan notification, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.msgs)
				return
			}
			s.msgs <- notification{string(buf[:n]), time.Now()}
		}
	}()
	return s
}

// await returns the next notification that contains want.
func (s *systemd) await(want string) notification {
	s.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				s.t.Fatalf("the notify socket closed before %q", want)
			}
			if strings.Contains(m.text, want) {
				return m
			}
		case <-deadline.C:
			s.t.Fatalf("no %q from the daemon", want)
		}
	}
}

// silent waits until nothing containing what has come for quiet.
func (s *systemd) silent(what string, quiet time.Duration) {
	s.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	window := time.NewTimer(quiet)
	defer window.Stop()
	for {
		select {
		case m := <-s.msgs:
			if strings.Contains(m.text, what) {
				window.Reset(quiet)
			}
		case <-window.C:
			return
		case <-deadline.C:
			s.t.Fatalf("%s kept coming: never silent for %v", what, quiet)
		}
	}
}

// TestSystemdNotifyAndReload runs the daemon as systemd would, with
// NOTIFY_SOCKET and WATCHDOG_USEC, and checks what it says: READY=1 and
// STATUS=, WATCHDOG=1 within the watchdog's time, none while the process
// is stopped (SIGSTOP), a reload on SIGHUP between RELOADING=1 and READY=1
// naming the keys that need a restart, a broken file that changes nothing,
// and STOPPING=1 on SIGTERM.
func TestSystemdNotifyAndReload(t *testing.T) {
	const watchdog = 1500 * time.Millisecond
	sd := listenNotify(t, watchdog)
	p := startPortal(t, t.TempDir(), freeAddr(t), "--interval", "1s")
	key := p.admin("pbx", "create", "--name", "notify.example", "--users", "uc-premium=10")
	a := newAppliance(t, "notify", p, "500ms")
	a.start()
	if m := sd.await("READY=1"); !strings.Contains(m.text, "STATUS=unactivated") {
		t.Errorf("READY=1 without the status: %q", m.text)
	}
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: %s", r.stderr)
	}
	sd.await("STATUS=active; 10 licences")

	prev := sd.await("WATCHDOG=1")
	for range 4 {
		next := sd.await("WATCHDOG=1")
		if gap := next.at.Sub(prev.at); gap >= watchdog {
			t.Errorf("WATCHDOG=1 %v after the last: over WATCHDOG_USEC %v", gap, watchdog)
		}
		prev = next
	}

	t.Run("stopped process", func(t *testing.T) {
		proc := a.proc.cmd.Process
		if err := proc.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		sd.silent("WATCHDOG=1", 2*watchdog)
		if err := proc.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		sd.await("WATCHDOG=1")
	})

	t.Run("reload", func(t *testing.T) {
		cfg, err := os.ReadFile(a.config)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(cfg), "interval: 500ms", "interval: 300ms", 1)
		edited = strings.Replace(edited, "  http: "+a.http, "  http: 127.0.0.1:9", 1)
		if edited == string(cfg) {
			t.Fatal("the test's edit matched nothing")
		}
		if err := os.WriteFile(a.config, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		a.proc.cmd.Process.Signal(syscall.SIGHUP)
		m := sd.await("RELOADING=1")
		if !strings.Contains(m.text, "\nMONOTONIC_USEC=") {
			t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m.text)
		}
		if m := sd.await("READY=1"); !strings.Contains(m.text, "restart to apply listen.http") {
			t.Errorf("READY=1 after the reload: %q", m.text)
		}
		st := a.status()
		if st.Config == nil || strings.Join(st.Config.RestartNeeded, ",") != "listen.http" || st.Config.Error != "" {
			t.Errorf("status config %+v, want listen.http needing a restart", st.Config)
		}
		if !strings.Contains(a.proc.logs(), "applied=heartbeat.interval") {
			t.Error("the log does not say heartbeat.interval was applied")
		}

		if err := os.WriteFile(a.config, []byte(edited+"heartbeat: [\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		a.proc.cmd.Process.Signal(syscall.SIGHUP)
		if m := sd.await("READY=1"); !strings.Contains(m.text, "config not reloaded: reading config "+a.config) {
			t.Errorf("READY=1 after a broken file: %q", m.text)
		}
		// The CLI reads the broken file too: ask the HTTP listener, which
		// is still the one the daemon started with.
		st, herr := a.httpStatus()
		if herr != nil {
			t.Fatal(herr)
		}
		if st.State != "active" || st.Config == nil || !strings.Contains(st.Config.Error, "reading config") {
			t.Errorf("after a broken file: state %s, config %+v", st.State, st.Config)
		}
		if err := os.WriteFile(a.config, []byte(edited), 0o600); err != nil { // not reloaded
			t.Fatal(err)
		}
		if r := a.cli("", "status"); !strings.Contains(r.stdout, "Config not reloaded") || !strings.Contains(r.stdout, "Restart to apply    listen.http") {
			t.Errorf("human status after the reloads:\n%s", r.stdout)
		}
	})

	a.proc.stop(t)
	sd.await("STOPPING=1")
}
