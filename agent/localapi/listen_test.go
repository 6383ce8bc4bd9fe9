package localapi_test

import (
	"context"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	. "github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/agent/localapi/localapitest"
)

func TestListenUnix(t *testing.T) {
	s, err := New(Config{Backend: new(localapitest.Backend), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("creates folder, sets mode and group", func(t *testing.T) {
		g, err := user.LookupGroup("nogroup")
		if err != nil {
			t.Skip("no group nogroup on this machine")
		}
		path := filepath.Join(t.TempDir(), "a", "b", "agent.sock")
		ln, err := s.ListenUnix(ctx, path, "nogroup", 0o660)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
			t.Errorf("socket mode = %v, want socket 0660", fi.Mode())
		}
		if gid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)); os.Geteuid() == 0 && gid != g.Gid {
			t.Errorf("socket gid = %s, want %s (nogroup)", gid, g.Gid)
		}
		if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o755 {
			t.Errorf("parent folder: %v %v, want 0755", di.Mode(), err)
		}
	})

	t.Run("missing group skipped", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.sock")
		ln, err := s.ListenUnix(ctx, path, "pbx-agent-test-missing", 0o600)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
	})

	t.Run("another agent answering", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.sock")
		ln, err := s.ListenUnix(ctx, path, "", 0o660)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Serve(sctx, ln, Unix) }()
		defer func() { cancel(); <-done }()

		_, err = s.ListenUnix(ctx, path, "", 0o660)
		if want := "another pbx-agent is running on " + path; err == nil || err.Error() != want {
			t.Fatalf("second ListenUnix = %v, want %q", err, want)
		}
		if a := unixGet(t, path, "/healthz"); a != 200 {
			t.Errorf("the first server stopped answering: %d", a)
		}
	})

	t.Run("stale socket replaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.sock")
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		old.SetUnlinkOnClose(false)
		old.Close() // as a crash would: the file stays, nothing answers
		if _, err := os.Lstat(path); err != nil {
			t.Fatal(err)
		}
		ln, err := s.ListenUnix(ctx, path, "", 0o660)
		if err != nil {
			t.Fatalf("ListenUnix over a stale socket: %v", err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Serve(sctx, ln, Unix) }()
		if a := unixGet(t, path, "/healthz"); a != 200 {
			t.Errorf("healthz = %d", a)
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("socket left behind after shutdown: %v", err)
		}
	})

	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.sock")
		if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := s.ListenUnix(ctx, path, "", 0o660)
		if err == nil || !strings.Contains(err.Error(), "is not a socket") {
			t.Errorf("ListenUnix over a file = %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "keep me" {
			t.Error("the file was replaced")
		}
	})
}

func unixGet(t *testing.T, sock, path string) int {
	t.Helper()
	resp, err := unixClient(sock).Get("http://local" + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
