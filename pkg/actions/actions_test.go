package actions

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// fakeSystemd stands in for systemd on the bus: the two targets, which
// conflict, and the jobs asked of it.
type fakeSystemd struct {
	mu      sync.Mutex
	active  map[string]string // unit → ActiveState
	result  string            // every job's result; "" is "done"
	callErr error             // the next call fails with it
	jobs    []string
	dials   int
	closed  int
	noReply bool // the job never finishes
}

func newFakeSystemd() *fakeSystemd {
	return &fakeSystemd{active: map[string]string{ActiveTarget: "active", StoppedTarget: "inactive"}}
}

func (f *fakeSystemd) dial(context.Context) (Units, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dials++
	return &fakeConn{f}, nil
}

type fakeConn struct{ f *fakeSystemd }

func (c *fakeConn) StartUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callErr; err != nil {
		f.callErr = nil
		return 0, err
	}
	f.jobs = append(f.jobs, "start "+name+" "+mode)
	result := f.result
	if result == "" {
		result = "done"
		other := map[string]string{ActiveTarget: StoppedTarget, StoppedTarget: ActiveTarget}[name]
		f.active[name], f.active[other] = "active", "inactive"
	}
	if !f.noReply {
		go func() { ch <- result }() // as go-systemd: from its signal goroutine
	}
	return len(f.jobs), nil
}

func (c *fakeConn) GetUnitPropertyContext(_ context.Context, unit, property string) (*sddbus.Property, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callErr; err != nil {
		f.callErr = nil
		return nil, err
	}
	return &sddbus.Property{Name: property, Value: dbus.MakeVariant(f.active[unit])}, nil
}

func (c *fakeConn) Close() {
	c.f.mu.Lock()
	c.f.closed++
	c.f.mu.Unlock()
}

func (f *fakeSystemd) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs
	f.jobs = nil
	return j
}

func TestSystemdTelephony(t *testing.T) {
	ctx := context.Background()
	f := newFakeSystemd()
	s := NewSystemdTelephony(f.dial, nil)
	defer s.Close()

	if err := s.Start(ctx, "active"); err != nil {
		t.Fatal(err)
	}
	if j := f.took(); j != nil {
		t.Errorf("Start with the active target up started %v; want nothing (an admin's stopped unit stays stopped)", j)
	}
	if err := s.Stop(ctx, "stop_at passed"); err != nil {
		t.Fatal(err)
	}
	if j := f.took(); !reflect.DeepEqual(j, []string{"start " + StoppedTarget + " replace"}) {
		t.Errorf("Stop: jobs %v", j)
	}
	if stopped, err := s.Stopped(ctx); err != nil || !stopped {
		t.Errorf("Stopped = %v, %v after Stop", stopped, err)
	}
	if err := s.Stop(ctx, "again"); err != nil { // idempotent: systemd has nothing to do
		t.Fatal(err)
	}
	f.took()
	if err := s.Start(ctx, "licence back"); err != nil {
		t.Fatal(err)
	}
	if j := f.took(); !reflect.DeepEqual(j, []string{"start " + ActiveTarget + " replace"}) {
		t.Errorf("Start after a stop: jobs %v", j)
	}
	if f.dials != 1 {
		t.Errorf("dialled %d times; want one connection kept", f.dials)
	}

	t.Run("a failed job is an error", func(t *testing.T) {
		f.mu.Lock()
		f.result = "failed"
		f.mu.Unlock()
		defer func() { f.mu.Lock(); f.result = ""; f.mu.Unlock() }()
		err := s.Stop(ctx, "x")
		if err == nil || !strings.Contains(err.Error(), `the job ended "failed"`) {
			t.Errorf("Stop = %v", err)
		}
	})
	t.Run("a failed call redials", func(t *testing.T) {
		f.mu.Lock()
		f.callErr = errors.New("org.freedesktop.DBus.Error.AccessDenied: not allowed")
		f.mu.Unlock()
		if err := s.Stop(ctx, "x"); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
			t.Errorf("Stop = %v", err)
		}
		if err := s.Stop(ctx, "x"); err != nil {
			t.Errorf("Stop after a failure: %v", err)
		}
		if f.dials != 2 || f.closed != 1 {
			t.Errorf("dials %d closes %d; want the failed connection closed and a new one", f.dials, f.closed)
		}
	})
	t.Run("no job result: the context ends the wait", func(t *testing.T) {
		f.mu.Lock()
		f.noReply = true
		f.mu.Unlock()
		defer func() { f.mu.Lock(); f.noReply = false; f.mu.Unlock() }()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Stop(cctx, "x"); !errors.Is(err, context.Canceled) {
			t.Errorf("Stop = %v, want context.Canceled", err)
		}
	})
	t.Run("dial failure", func(t *testing.T) {
		s := NewSystemdTelephony(func(context.Context) (Units, error) { return nil, errors.New("no bus") }, nil)
		if err := s.Stop(ctx, "x"); err == nil || err.Error() != "no bus" {
			t.Errorf("Stop = %v", err)
		}
	})
}

func TestCommandTelephony(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "log")
	script := filepath.Join(dir, "telephony")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1: $PBX_LICENCE_WHY\" >> "+logf+"\n[ \"$1\" != fail ] || { echo broken >&2; exit 1; }\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := NewCommandTelephony([]string{script, "stop"}, []string{script, "start"}, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Stop(ctx, "stop_at passed\nsecond line"); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, "licence back"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(logf)
	if got := string(b); got != "stop: stop_at passed second line\nstart: licence back\n" {
		t.Errorf("the commands saw:\n%s", got)
	}
	f, _ := NewCommandTelephony([]string{script, "fail"}, []string{script, "start"}, 10*time.Second, nil)
	if err := f.Stop(ctx, "x"); err == nil || !strings.Contains(err.Error(), "stopping telephony") || !strings.Contains(err.Error(), "broken") {
		t.Errorf("failing stop: %v", err)
	}
	if _, err := NewCommandTelephony(nil, []string{"x"}, time.Second, nil); err == nil {
		t.Error("a start command without a stop command accepted")
	}
}

func TestValidUnitName(t *testing.T) {
	for name, want := range map[string]bool{
		"asterisk.service": true, "wms-sip@1.service": true, "pbx\\x2dtel.service": true, "sip.socket": true,
		"": false, "asterisk": false, "/etc/x.service": false, "../x.service": false, "a b.service": false,
		"*.service": false, "x.service\nExecStart=/bin/sh": false, ActiveTarget: false, StoppedTarget: false, "-x.service": false,
	} {
		if got := ValidUnitName(name); got != want {
			t.Errorf("ValidUnitName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestWriteDropIns(t *testing.T) {
	root := t.TempDir()
	read := func(target string) string {
		b, err := os.ReadFile(filepath.Join(root, target+".d", DropInName))
		if err != nil {
			return ""
		}
		return string(b)
	}
	units := []string{"asterisk.service", "wms-sip.service"}
	changed, err := WriteDropIns(root, units)
	if err != nil || !changed {
		t.Fatalf("first write: %v, %v", changed, err)
	}
	if got := read(StoppedTarget); !strings.Contains(got, "[Unit]\nConflicts=asterisk.service wms-sip.service\nAfter=asterisk.service wms-sip.service\n") {
		t.Errorf("stopped target drop-in:\n%s", got)
	}
	if got := read(ActiveTarget); !strings.Contains(got, "[Unit]\nWants=asterisk.service wms-sip.service\n") {
		t.Errorf("active target drop-in:\n%s", got)
	}
	if err := CheckDropIns(root, units); err != nil {
		t.Errorf("CheckDropIns after a write: %v", err)
	}
	if err := CheckDropIns(root, units[:1]); err == nil || !strings.Contains(err.Error(), "run `pbx-agent helper telephony-units`") {
		t.Errorf("CheckDropIns with another list: %v", err)
	}
	if changed, err := WriteDropIns(root, units); err != nil || changed {
		t.Errorf("same list again: changed %v, %v; want no change (no daemon-reload)", changed, err)
	}
	// An admin's own drop-in beside ours stays, and keeps the folder.
	own := filepath.Join(root, ActiveTarget+".d", "10-admin.conf")
	if err := os.WriteFile(own, []byte("[Unit]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := WriteDropIns(root, nil); err != nil || !changed {
		t.Fatalf("empty list: %v, %v", changed, err)
	}
	if read(StoppedTarget) != "" || read(ActiveTarget) != "" {
		t.Error("drop-ins left after the list was emptied")
	}
	if _, err := os.Stat(own); err != nil {
		t.Errorf("the admin's drop-in: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, StoppedTarget+".d")); !os.IsNotExist(err) {
		t.Errorf("the empty drop-in folder stayed: %v", err)
	}
	if err := CheckDropIns(root, nil); err != nil {
		t.Errorf("CheckDropIns, no units: %v", err)
	}
	if _, err := WriteDropIns(root, []string{"x.service\n[Service]"}); err == nil {
		t.Error("a unit name with a newline accepted")
	}
}
