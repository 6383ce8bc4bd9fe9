package integration

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// demo is scripts/demo.sh running without a terminal, as `make demo
// </dev/null` or CI runs it.
type demo struct {
	t       *testing.T
	cmd     *exec.Cmd
	tmp     string // its TMPDIR: the demo's folder is made in it
	portal  string // PORTAL_ADDR
	agent   string // AGENT_HTTP
	mu      sync.Mutex
	out     bytes.Buffer
	done    chan struct{}
	exitErr error
}

func (d *demo) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.Write(b)
}

func (d *demo) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

func (d *demo) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// needDemoTools skips when the script's tools are missing.
func needDemoTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bash", "timeout", "seq", "mktemp", "grep", "tail"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("scripts/demo.sh needs %s: %v", tool, err)
		}
	}
}

// startDemo runs scripts/demo.sh with the binaries of bin, stdin from
// /dev/null, in a process group of its own so that a failed test leaves
// nothing running.
func startDemo(t *testing.T, bin, portalAddr, agentAddr string) *demo {
	t.Helper()
	needDemoTools(t)
	d := &demo{t: t, tmp: t.TempDir(), portal: portalAddr, agent: agentAddr, done: make(chan struct{})}
	d.cmd = exec.Command("bash", "../scripts/demo.sh", bin)
	d.cmd.Env = append(os.Environ(), "TMPDIR="+d.tmp, "PORTAL_ADDR="+portalAddr, "AGENT_HTTP="+agentAddr)
	d.cmd.Stdout, d.cmd.Stderr = d, d
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		if t.Failed() {
			t.Logf("demo output:\n%s", d.output())
		}
	})
	return d
}

// wait waits for the demo to end and returns its exit code.
func (d *demo) wait(within time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(within):
		d.t.Fatalf("the demo still runs after %v", within)
	}
	var ee *exec.ExitError
	if errors.As(d.exitErr, &ee) {
		return ee.ExitCode()
	}
	if d.exitErr != nil {
		d.t.Fatal(d.exitErr)
	}
	return 0
}

// folders lists the demo's temporary folders.
func (d *demo) folders() []string {
	d.t.Helper()
	m, err := filepath.Glob(filepath.Join(d.tmp, "pbx-demo.*"))
	if err != nil {
		d.t.Fatal(err)
	}
	return m
}

// processesUsing returns the pids whose command line mentions dir.
func processesUsing(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc to find the demo's processes: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func answers(url string) (bool, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, resp.Status
}

// runningDemo starts the real demo and waits until it has printed its last
// line, the one saying it runs until interrupted.
func runningDemo(t *testing.T) *demo {
	t.Helper()
	d := startDemo(t, binDir, freeAddr(t), freeAddr(t))
	eventually(t, 25*time.Second, "the demo up and waiting", func() (bool, string) {
		if d.exited() {
			t.Fatalf("the demo ended before it was up:\n%s", d.output())
		}
		return strings.Contains(d.output(), "Running until interrupted"), "not printed yet"
	})
	return d
}

// TestDemoRunsWithoutTerminalUntilSIGINT: every URL and command the demo
// prints must still answer after it has printed them, with no terminal;
// SIGINT (or SIGTERM) to the script alone stops both programs and removes
// the folder.
func TestDemoRunsWithoutTerminalUntilSIGINT(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { demoUntil(t, sig) })
	}
}

func demoUntil(t *testing.T, sig syscall.Signal) {
	d := runningDemo(t)
	status := "http://" + d.agent + "/v1/status"
	if ok, last := answers(status); !ok {
		t.Fatalf("%s does not answer once the demo is up: %s", status, last)
	}

	// It keeps answering: polled for 3 s, every answer must be a 200 and
	// the demo must not end.
	until := time.Now().Add(3 * time.Second)
	polls := 0
	for time.Now().Before(until) {
		if d.exited() {
			t.Fatalf("the demo ended %d polls after it was up, with no terminal and no signal", polls)
		}
		if ok, last := answers(status); !ok {
			t.Fatalf("%s stopped answering after %d polls: %s", status, polls, last)
		}
		polls++
		select {
		case <-d.done:
		case <-time.After(200 * time.Millisecond):
		}
	}
	if polls < 5 {
		t.Fatalf("only %d polls in 3 s", polls)
	}
	// A printed portal command works too.
	list := exec.Command(filepath.Join(binDir, "pbx-portal-sim"), "--portal", "http://"+d.portal, "pbx", "list")
	if out, err := list.CombinedOutput(); err != nil || !strings.Contains(string(out), "acme.example") {
		t.Fatalf("pbx list against the demo's portal: %v\n%s", err, out)
	}

	folders := d.folders()
	if len(folders) != 1 {
		t.Fatalf("want one demo folder in TMPDIR, got %v", folders)
	}
	pids := processesUsing(t, folders[0])
	if len(pids) != 2 {
		t.Fatalf("want the portal and the agent running from %s, got pids %v", folders[0], pids)
	}

	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d after %v; want 0", code, sig)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after the demo ended (kill 0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(folders[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after %v: %v", folders[0], sig, err)
	}
	if !strings.Contains(d.output(), "stopped; removed "+folders[0]) {
		t.Errorf("the demo did not say it stopped and removed its folder")
	}
}

// TestDemoRefusesTakenPort: a listener the test holds on either port is
// named, with the variable that moves it, before anything starts; the
// demo never talks to it.
func TestDemoRefusesTakenPort(t *testing.T) {
	for _, which := range []string{"PORTAL_ADDR", "AGENT_HTTP"} {
		t.Run(which, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			held := ln.Addr().String()
			portalAddr, agentAddr := held, freeAddr(t)
			if which == "AGENT_HTTP" {
				portalAddr, agentAddr = freeAddr(t), held
			}
			d := startDemo(t, binDir, portalAddr, agentAddr)
			if code := d.wait(15 * time.Second); code == 0 {
				t.Fatalf("exit 0 with %s %s taken", which, held)
			}
			if want := which + " " + held + " is taken"; !strings.Contains(d.output(), want) {
				t.Fatalf("output does not say %q:\n%s", want, d.output())
			}
			if !strings.Contains(d.output(), which+"=") {
				t.Errorf("output does not say how to move the port with %s=", which)
			}
			if f := d.folders(); len(f) != 0 {
				t.Errorf("the demo started before refusing the port: it made %v", f)
			}
		})
	}
}

// TestDemoKeepsLogsOnFailure: when a program fails the demo says why,
// shows the log and keeps its folder; when the agent dies while the demo
// runs, the portal is stopped and the logs are kept too.
func TestDemoKeepsLogsOnFailure(t *testing.T) {
	t.Run("portal fails to start", func(t *testing.T) {
		bin := t.TempDir()
		if err := os.Symlink(filepath.Join(binDir, "pbx-agent"), filepath.Join(bin, "pbx-agent")); err != nil {
			t.Fatal(err)
		}
		fake := "#!/bin/sh\necho 'portal-failure-marker: the data folder is unusable' >&2\nexit 3\n"
		if err := os.WriteFile(filepath.Join(bin, "pbx-portal-sim"), []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
		d := startDemo(t, bin, freeAddr(t), freeAddr(t))
		if code := d.wait(15 * time.Second); code == 0 {
			t.Fatal("exit 0 though the portal failed")
		}
		folders := d.folders()
		if len(folders) != 1 {
			t.Fatalf("want the demo folder kept, got %v", folders)
		}
		out := d.output()
		for _, want := range []string{"portal-failure-marker", "Logs and data kept in " + folders[0], "the portal ended"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if log, err := os.ReadFile(filepath.Join(folders[0], "portal.log")); err != nil || !strings.Contains(string(log), "portal-failure-marker") {
			t.Errorf("portal.log not kept with the reason: %v %q", err, log)
		}
	})
	t.Run("agent dies while running", func(t *testing.T) {
		d := runningDemo(t)
		folders := d.folders()
		if len(folders) != 1 {
			t.Fatalf("want one demo folder, got %v", folders)
		}
		var agentPid int
		pids := processesUsing(t, folders[0])
		for _, pid := range pids {
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if bytes.Contains(cmdline, []byte("agent.yaml\x00run")) {
				agentPid = pid
			}
		}
		if agentPid == 0 || len(pids) != 2 {
			t.Fatalf("want the portal and the agent, got pids %v", pids)
		}
		if err := syscall.Kill(agentPid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := d.wait(20 * time.Second); code == 0 {
			t.Fatal("exit 0 though the agent died")
		}
		if !strings.Contains(d.output(), "the agent ended on its own") {
			t.Errorf("the demo did not say the agent ended:\n%s", d.output())
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("pid %d still exists after the demo ended (kill 0: %v)", pid, err)
			}
		}
		for _, log := range []string{"portal.log", "agent.log"} {
			if _, err := os.Stat(filepath.Join(folders[0], log)); err != nil {
				t.Errorf("%s not kept: %v", log, err)
			}
		}
	})
}

// TestDepsNamesMissingPackagesFirst: scripts/deps.sh, which make demo and
// make check run, never runs sudo; it names a missing package before
// installing it, and installs only as root.
func TestDepsNamesMissingPackagesFirst(t *testing.T) {
	needDemoTools(t)
	for _, tc := range []struct {
		uid         string
		wantInstall bool
	}{{"1000", false}, {"0", true}} {
		t.Run("uid "+tc.uid, func(t *testing.T) {
			fake := t.TempDir()
			for name, body := range map[string]string{
				"dpkg-query": "exit 1", // nothing is installed
				"id":         "echo " + tc.uid,
				"apt-get":    `echo "RAN apt-get $*"`,
				"sudo":       `echo "RAN sudo $*"`,
			} {
				if err := os.WriteFile(filepath.Join(fake, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("bash", "../scripts/deps.sh", "demo")
			cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			text := string(out)
			named := strings.Index(text, "missing Debian packages: ca-certificates")
			ran := strings.Index(text, "RAN apt-get install")
			if named < 0 {
				t.Fatalf("the missing package is not named:\n%s", text)
			}
			if strings.Contains(text, "RAN sudo") {
				t.Errorf("deps.sh ran sudo:\n%s", text)
			}
			if !tc.wantInstall {
				if err == nil || ran >= 0 || !strings.Contains(text, "sudo apt-get install ca-certificates") {
					t.Errorf("want exit 1 with the command to run and nothing installed; err %v:\n%s", err, text)
				}
				return
			}
			if err != nil || ran < named {
				t.Errorf("want the package named, then installed; err %v:\n%s", err, text)
			}
		})
	}
}

// TestDemoTalksOnlyToItsOwnPortal: a portal that serves another keyring
// than the one in the demo's folder (a stranger's, or one from an earlier
// run) is refused at once, with its log kept, before anything is created
// on it or the agent is started.
func TestDemoTalksOnlyToItsOwnPortal(t *testing.T) {
	bin := t.TempDir()
	if err := os.Symlink(filepath.Join(binDir, "pbx-agent"), filepath.Join(bin, "pbx-agent")); err != nil {
		t.Fatal(err)
	}
	// serve runs the real simulator on a data folder of its own; other
	// verbs go to the real one.
	stranger := t.TempDir()
	wrapper := "#!/bin/sh\nreal=" + filepath.Join(binDir, "pbx-portal-sim") + "\n" +
		"if [ \"$1\" = serve ]; then exec \"$real\" serve --listen \"$3\" --data " + stranger + "; fi\n" +
		"exec \"$real\" \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "pbx-portal-sim"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDemo(t, bin, freeAddr(t), freeAddr(t))
	if code := d.wait(15 * time.Second); code == 0 {
		t.Fatal("exit 0 with a portal serving a stranger's keyring")
	}
	out := d.output()
	if !strings.Contains(out, "serves another keyring") {
		t.Fatalf("the demo does not say the portal is not its own:\n%s", out)
	}
	if strings.Contains(out, "The portal creates a PBX") || strings.Contains(out, "Starting pbx-agent") {
		t.Errorf("the demo went on with a stranger's portal:\n%s", out)
	}
	if f := d.folders(); len(f) != 1 || !strings.Contains(out, "Logs and data kept in "+f[0]) {
		t.Errorf("want the folder kept and named, got %v:\n%s", f, out)
	}
}
