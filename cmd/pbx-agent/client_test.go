package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/agent/localapi/localapitest"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func ptr[T any](v T) *T { return &v }

func activeStatus() apitype.Status {
	t0 := time.Date(2026, 5, 20, 10, 0, 0, 0, time.UTC)
	return apitype.Status{
		State:   "active",
		Next:    "licensed by the portal",
		Summary: "Licensed and in touch with the portal.",
		PBX:     &apitype.PBXStatus{ID: "pbx-42", Name: "acme.example", Model: "WPBX-VM"},
		License: &apitype.LicenseStatus{
			Term: "monthly", TermEnd: ptr(t0.Add(11*24*time.Hour + 14*time.Hour)), Revision: 7,
			Profiles: map[string]apitype.ProfileStatus{
				"uc-premium": {Licensed: 10, Used: 8, Reserved: 1},
				"pbx-basic":  {Licensed: 3, Used: 2},
				"uc-future":  {Licensed: 1},
			},
			Overuse: map[string]int{"uc-business": 2},
		},
		Heartbeat: apitype.HeartbeatStatus{LastSuccess: ptr(t0.Add(-3 * time.Minute)), Next: ptr(t0.Add(time.Minute)), LastError: "portal timed out", Failures: 3},
		Deadlines: apitype.Deadlines{OfflineGraceEnd: ptr(t0.Add(30 * 24 * time.Hour))},
		SSH:       apitype.SSHStatus{Open: true, Port: 2222, Until: ptr(t0.Add(3 * time.Hour))},
		WMS:       apitype.WMSStatus{Version: "7.02.20250609.3"},
		Commands: []apitype.CommandStatus{
			{ID: "cmd-2", Type: "wms.upgrade", State: "waiting", ReceivedAt: t0.Add(-time.Hour)},
			{ID: "cmd-1", Type: "ssh.open", State: "done", Result: "opened", ReceivedAt: t0.Add(-26 * time.Hour), FinishedAt: ptr(t0.Add(-26*time.Hour + time.Minute))},
			{ID: "cmd-0", Type: "ssh.close", State: "done", ReceivedAt: t0.Add(-50 * time.Hour), FinishedAt: ptr(t0.Add(-24 * time.Hour))},
		},
		Clock: apitype.ClockStatus{Now: t0, LocalBehind: "3 hours"},
	}
}

// daemon is a local API with a fake backend, served on a socket in a test
// folder; its path goes to the CLI as --socket.
func daemon(t *testing.T) (*localapitest.Backend, string) {
	t.Helper()
	fb := new(localapitest.Backend)
	fb.SetStatus(activeStatus())
	srv, err := localapi.New(localapi.Config{Backend: fb, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := srv.ListenUnix(ctx, sock, "", 0o660)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, localapi.Unix) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return fb, sock
}

// oneLine checks the CLI's error contract: at most one line on stderr.
// wantResult checks a CLI run against a table case: the exit code, and
// each output containing what is wanted, or empty when nothing is; then
// oneLine.
func wantResult(t *testing.T, r result, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code = %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	if !strings.Contains(r.stdout, stdout) || stdout == "" && r.stdout != "" {
		t.Errorf("stdout = %q, want %q", r.stdout, stdout)
	}
	if !strings.Contains(r.stderr, stderr) || stderr == "" && r.stderr != "" {
		t.Errorf("stderr = %q, want %q", r.stderr, stderr)
	}
	oneLine(t, r)
}

func oneLine(t *testing.T, r result) {
	t.Helper()
	if strings.Count(r.stderr, "\n") > 1 {
		t.Errorf("stderr has more than one line: %q", r.stderr)
	}
}

func TestConnError(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	group := "pbx-agent"
	if g, err := user.LookupGroup("nogroup"); err == nil && os.Geteuid() == 0 {
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(sock, -1, gid); err != nil {
			t.Fatal(err)
		}
		group = "nogroup"
	}
	c := newAPIClient(sock)
	connect := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"not running", connect(syscall.ECONNREFUSED), "cannot reach pbx-agent on " + sock + ": is the daemon running? (systemctl status pbx-agent)"},
		{"no socket", connect(syscall.ENOENT), "is the daemon running?"},
		{"permission", connect(syscall.EACCES), "permission denied on " + sock + ": join the group " + group},
		{"other", errors.New("boom"), "talking to pbx-agent on " + sock + ": boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.connError(tt.err).Error(); !strings.Contains(got, tt.want) {
				t.Errorf("connError = %q, want it to contain %q", got, tt.want)
			}
		})
	}
	t.Run("forbidden answer", func(t *testing.T) {
		de := &daemonError{status: 403, body: apitype.ErrorBody{Error: "uid 1000 may not read pbx-agent: join the group pbx-agent", Code: "forbidden"}}
		if got := de.Error(); got != "permission denied: uid 1000 may not read pbx-agent: join the group pbx-agent" {
			t.Errorf("403 = %q", got)
		}
	})
}
