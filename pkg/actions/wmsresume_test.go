package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// blockIn is a maintainer script's tail that, when the file block-<script>
// exists in the dpkg root, says so (the file blocked) and waits to be
// killed: a power loss in the middle of a real dpkg run. A non-empty
// block file blocks only when the script's second argument (the other
// version) is its content.
func blockIn(script string) string {
	return `b="$DPKG_ROOT/block-` + script + `"
if [ -e "$b" ] && { [ ! -s "$b" ] || [ "$(cat "$b")" = "${2:-}" ]; }; then
	echo "$0 $*" > "$DPKG_ROOT/blocked"
	sleep 600
fi
`
}

// helperEnv carries the helper process's orders (TestWMSHelperProcess).
const helperEnv = "PBX_AGENT_TEST_WMS_HELPER"

type helperOrders struct {
	Cfg     WMSUpgradeConfig
	Version string
	StopAt  wms.Step // blocks once this step is recorded
	Marker  string   // written when it blocks there
}

// TestWMSHelperProcess is the upgrade helper run as a process of its own,
// so that a test can SIGKILL it and everything it started.
func TestWMSHelperProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("the helper process of TestUpgradeWMSResumesAfterSIGKILL")
	}
	var o helperOrders
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		t.Fatal(err)
	}
	o.Cfg.Output = os.Stderr
	o.Cfg.beforeStep = func(s wms.Step) {
		if s == o.StopAt {
			os.WriteFile(o.Marker, []byte(s), 0o644)
			time.Sleep(time.Hour) // until the test kills it; a bare select{} may be taken for a deadlock
		}
	}
	UpgradeWMS(context.Background(), o.Cfg, o.Version, nil)
	os.Exit(0)
}

// killSession SIGKILLs session sid and every descendant of its
// processes, as a power loss or systemd's kill of the unit's cgroup would:
// the helper, apt, and the dpkg that apt starts in a session of its own
// (for its pty), with the maintainer scripts. Each is stopped first, so
// that none forks or escapes while the tree is walked.
func killSession(t *testing.T, sid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := liveProcs()
		doomed := map[int]bool{}
		for pid, p := range procs {
			if p.sid == sid {
				doomed[pid] = true
			}
		}
		for grew := true; grew; { // descendants, whatever their session
			grew = false
			for pid, p := range procs {
				if !doomed[pid] && doomed[p.ppid] {
					doomed[pid], grew = true, true
				}
			}
		}
		if len(doomed) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of session %d survive SIGKILL: %v", sid, doomed)
		}
		for pid := range doomed {
			syscall.Kill(pid, syscall.SIGSTOP)
		}
		// Stopped, the tree no longer changes: one more walk finds what
		// forked meanwhile, then all of it is killed at once.
		if again := liveProcs(); len(again) == len(procs) {
			for pid := range doomed {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

type procInfo struct{ ppid, sid int }

// liveProcs maps each live (not zombie) process to its parent and session.
func liveProcs() map[int]procInfo {
	entries, _ := os.ReadDir("/proc")
	out := map[int]procInfo{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...: comm may hold spaces.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 4 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		sid, _ := strconv.Atoi(f[3])
		out[pid] = procInfo{ppid: ppid, sid: sid}
	}
	return out
}

// killedAt runs the helper as a process in a session of its own until it
// reaches the kill point (a recorded step, or a maintainer script blocked
// by its block file), then kills the whole session with SIGKILL.
func (c *wmsCase) killedAt(t *testing.T, version string, stopAt wms.Step, block, blockArg string) {
	t.Helper()
	marker := filepath.Join(c.root, "blocked")
	if block != "" {
		if err := os.WriteFile(filepath.Join(c.root, "block-"+block), []byte(blockArg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := c.cfg
	cfg.Output = nil // the process's stderr
	spec, err := json.Marshal(helperOrders{Cfg: cfg, Version: version, StopAt: stopAt, Marker: marker})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWMSHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = &c.journal, &c.journal
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { killSession(t, cmd.Process.Pid) })
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for reached := false; !reached; {
		select {
		case err := <-exited:
			t.Fatalf("the helper ended (%v) before the kill point %q%s", err, stopAt, block)
		case <-deadline:
			t.Fatalf("the helper never reached the kill point %q%s", stopAt, block)
		case <-tick.C:
			_, err := os.Stat(marker)
			reached = err == nil
		}
	}
	killSession(t, cmd.Process.Pid)
	<-exited
	for _, f := range []string{marker, filepath.Join(c.root, "block-"+block)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	res, found, err := wms.ReadResult(c.cfg.ResultDir, version)
	if err != nil || !found || !res.Resumable() {
		t.Fatalf("after the kill the result is %+v (%v, found %v): want a running one with its step", res, err, found)
	}
}

func TestUpgradeWMSResumesAfterSIGKILL(t *testing.T) {
	requireDpkg(t)
	repo := newWMSRepo(t)
	for _, tc := range []struct {
		name            string
		version         string   // v2 is healthy, v3 not
		stopAt          wms.Step // a step boundary
		block, blockArg string   // or inside dpkg: a maintainer script
		outcome         wms.Outcome
		installed       string
	}{
		{name: "prepare", version: wmsV2, stopAt: wms.StepPrepare, outcome: wms.Upgraded, installed: wmsV2},
		{name: "source", version: wmsV2, stopAt: wms.StepSource, outcome: wms.Upgraded, installed: wmsV2},
		{name: "keep", version: wmsV2, stopAt: wms.StepKeep, outcome: wms.Upgraded, installed: wmsV2},
		{name: "backup", version: wmsV2, stopAt: wms.StepBackup, outcome: wms.Upgraded, installed: wmsV2},
		{name: "install", version: wmsV2, stopAt: wms.StepInstall, outcome: wms.RolledBack, installed: wmsV1},
		{name: "install, dpkg in the new preinst", version: wmsV2, block: "preinst", blockArg: wmsV1, outcome: wms.RolledBack, installed: wmsV1},
		{name: "install, dpkg in the old postrm", version: wmsV2, block: "postrm", blockArg: wmsV2, outcome: wms.RolledBack, installed: wmsV1},
		{name: "install, dpkg in the new postinst", version: wmsV2, block: "postinst", blockArg: wmsV1, outcome: wms.RolledBack, installed: wmsV1},
		{name: "health", version: wmsV2, stopAt: wms.StepHealth, outcome: wms.Upgraded, installed: wmsV2},
		{name: "rollback", version: wmsV3, stopAt: wms.StepRollback, outcome: wms.RolledBack, installed: wmsV1},
		{name: "rollback, dpkg in the bad version's postrm", version: wmsV3, block: "postrm", blockArg: wmsV1, outcome: wms.RolledBack, installed: wmsV1},
		{name: "rollback, dpkg in the old postinst", version: wmsV3, block: "postinst", blockArg: wmsV3, outcome: wms.RolledBack, installed: wmsV1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newWMSCase(t, repo)
			c.cfg.BackupHook, c.cfg.BackupTimeout = []string{"true"}, time.Minute
			dpkgIn(t, c.root, "--install", repo.debs[wmsV1])
			c.request(t, tc.version)
			c.killedAt(t, tc.version, tc.stopAt, tc.block, tc.blockArg)

			// Started again, as the agent does when it finds the result
			// unfinished and the unit stopped.
			res, err := c.upgrade(t, tc.version)
			if res.Outcome != tc.outcome || res.Installed != tc.installed || res.Resumes != 1 || !res.Held || res.Previous != wmsV1 {
				t.Errorf("resumed: %v; result %+v", err, res)
			}
			if (err == nil) != (tc.outcome == wms.Upgraded) {
				t.Errorf("error %v with outcome %s", err, res.Outcome)
			}
			if tc.outcome == wms.RolledBack && (!res.RolledBack || res.RollbackHealth == nil || !res.RollbackHealth.OK) {
				t.Errorf("rolled back: %+v, health %+v", res, res.RollbackHealth)
			}
			if s := status(t, c.root); s != "hi "+tc.installed {
				t.Errorf("dpkg-query: %q, want held and installed at %s", s, tc.installed)
			}
			if data, _ := os.ReadFile(filepath.Join(c.root, "usr/share/wms/VERSION")); string(data) != tc.installed+"\n" {
				t.Errorf("the files are of %q", data)
			}
			if !strings.Contains(strings.Join(res.LogTail, "\n"), "resuming the upgrade of wms to "+tc.version) {
				t.Errorf("the log tail does not say it resumed: %q", res.LogTail)
			}
		})
	}
}

func TestUpgradeWMSLoopBreaker(t *testing.T) {
	requireDpkg(t)
	repo := newWMSRepo(t)
	c := newWMSCase(t, repo)
	dpkgIn(t, c.root, "--install", repo.debs[wmsV1])
	c.request(t, wmsV3)
	// Killed in the rollback every time: the first run and MaxResumes
	// resumes.
	for i := 0; i <= wms.MaxResumes; i++ {
		c.killedAt(t, wmsV3, wms.StepRollback, "", "")
		if res, _, _ := wms.ReadResult(c.cfg.ResultDir, wmsV3); res.Resumes != i {
			t.Fatalf("run %d: resumes %d", i, res.Resumes)
		}
	}
	res, err := c.upgrade(t, wmsV3)
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 resumes") || !strings.Contains(err.Error(), "in step rollback") ||
		!strings.Contains(err.Error(), "queue the upgrade again") || !strings.Contains(err.Error(), "wms "+wmsV1+" restored") {
		t.Errorf("error %v", err)
	}
	if res.Outcome != wms.Failed || !res.RolledBack || res.Installed != wmsV1 || !res.Held || res.Resumes != wms.MaxResumes+1 {
		t.Errorf("result %+v", res)
	}
	if s := status(t, c.root); s != "hi "+wmsV1 {
		t.Errorf("dpkg-query: %q", s)
	}

	// The restoring itself interrupted: nothing more is tried, and the
	// result is final all the same.
	res.Outcome, res.Finished, res.Step, res.Resumes = wms.Running, time.Time{}, wms.StepInstall, wms.MaxResumes+1
	if err := wms.WriteResult(c.cfg.ResultDir, res, -1); err != nil {
		t.Fatal(err)
	}
	c.journal.Reset()
	res, err = c.upgrade(t, wmsV3)
	if err == nil || !strings.Contains(err.Error(), "restoring the previous version was interrupted too") || res.Outcome != wms.Failed {
		t.Errorf("%v; %+v", err, res)
	}
	if strings.Contains(c.journal.String(), "dpkg --root") || strings.Contains(c.journal.String(), "apt-get -y") {
		t.Errorf("it tried again:\n%s", c.journal.String())
	}
}

// The result file names the package a rollback installs; one that points
// outside the keep folder, or at another version, is not installed.
func TestUpgradeWMSResumeChecksTheKeptPackage(t *testing.T) {
	requireDpkg(t)
	repo := newWMSRepo(t)
	for _, tc := range []struct{ name, kept, err string }{
		{"outside the keep folder", "", "outside"},
		{"another version", "wms_" + wmsV1 + "_all.deb", "is not wms " + wmsV1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newWMSCase(t, repo)
			dpkgIn(t, c.root, "--install", repo.debs[wmsV1])
			c.request(t, wmsV2)
			kept := repo.debs[wmsV3] // a .deb that installs, but not the one to roll back to
			if tc.kept != "" {
				kept = filepath.Join(c.cfg.ResultDir, "rollback", tc.kept)
				data, _ := os.ReadFile(repo.debs[wmsV3])
				if err := os.MkdirAll(filepath.Dir(kept), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := atomicfile.WriteFile(kept, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(c.cfg.ResultDir, 0o750); err != nil {
				t.Fatal(err)
			}
			forged := &wms.Result{Version: wmsV2, Outcome: wms.Running, Previous: wmsV1, Step: wms.StepInstall, Kept: kept, Started: time.Now()}
			if err := wms.WriteResult(c.cfg.ResultDir, forged, -1); err != nil {
				t.Fatal(err)
			}
			res, err := c.upgrade(t, wmsV2)
			if err == nil || !strings.Contains(err.Error(), tc.err) || res.Outcome != wms.Failed {
				t.Errorf("%v; %+v", err, res)
			}
			if s := status(t, c.root); s != "hi "+wmsV1 && s != "ii "+wmsV1 {
				t.Errorf("dpkg-query: %q", s)
			}
		})
	}
}

// A helper that finds another holding the lock reports that in the
// version's result, but never over an interrupted upgrade's result, which
// a later start must still find to resume it.
func TestUpgradeWMSLockedKeepsAResumableResult(t *testing.T) {
	cfg := WMSUpgradeConfig{RuntimeDir: t.TempDir(), ResultDir: filepath.Join(t.TempDir(), "results"), ResultGID: -1}
	if err := os.MkdirAll(cfg.ResultDir, 0o750); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockFile(filepath.Join(cfg.ResultDir, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	interrupted := &wms.Result{Version: wmsV2, Outcome: wms.Running, Previous: wmsV1, Step: wms.StepInstall, Started: time.Now()}
	if err := wms.WriteResult(cfg.ResultDir, interrupted, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := UpgradeWMS(context.Background(), cfg, wmsV2, nil); err == nil || !strings.Contains(err.Error(), "another WMS upgrade") {
		t.Errorf("UpgradeWMS = %v", err)
	}
	if res, found, err := wms.ReadResult(cfg.ResultDir, wmsV2); err != nil || !found || !res.Resumable() || res.Step != wms.StepInstall {
		t.Errorf("the interrupted result became %+v (%v)", res, err)
	}
	// Another version's result says why it did not run.
	if _, err := UpgradeWMS(context.Background(), cfg, wmsV3, nil); err == nil {
		t.Error("no error with the lock held")
	}
	if res, found, _ := wms.ReadResult(cfg.ResultDir, wmsV3); !found || res.Outcome != wms.Failed || !res.Done() {
		t.Errorf("%s: %+v", wmsV3, res)
	}
}
