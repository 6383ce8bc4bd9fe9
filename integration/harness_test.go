// Package integration runs pbx-agent and pbx-portal-sim as real processes
// over loopback, the way an appliance and its portal meet.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// binDir holds the binaries TestMain builds once for every test.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pbx-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/pbx-agent", "../cmd/pbx-portal-sim")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running binary whose stderr is kept for failure reports.
type proc struct {
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.Write(b)
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, name), args...)
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.logs())
		}
	})
	return p
}

// stop ends the process with SIGTERM, as systemd does, and waits for it.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 10s of SIGTERM", p.name)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs a binary to completion.
func run(t *testing.T, stdin, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s %v: %v", name, args, err)
	}
	return result{code, out.String(), errb.String()}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %v; last seen: %s", what, within, last)
		case <-tick.C:
		}
	}
}

// portal is a running simulator.
type portal struct {
	t    *testing.T
	addr string
	data string
	proc *proc
}

func startPortal(t *testing.T, data, addr string, extra ...string) *portal {
	t.Helper()
	p := &portal{t: t, addr: addr, data: data}
	p.proc = start(t, "pbx-portal-sim", append([]string{"serve", "--listen", addr, "--data", data}, extra...)...)
	eventually(t, 10*time.Second, "portal up", func() (bool, string) {
		r := p.try("clock")
		return r.code == 0, r.stderr
	})
	return p
}

func (p *portal) url() string { return "http://" + p.addr }

func (p *portal) try(args ...string) result {
	return run(p.t, "", "pbx-portal-sim", append([]string{"--portal", p.url()}, args...)...)
}

func (p *portal) admin(args ...string) string {
	p.t.Helper()
	r := p.try(args...)
	if r.code != 0 {
		p.t.Fatalf("pbx-portal-sim %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// appliance is one pbx-agent with its own folders.
type appliance struct {
	t      *testing.T
	name   string
	config string
	http   string // the read-only HTTP listener
	proc   *proc
}

func newAppliance(t *testing.T, name string, p *portal, interval string) *appliance {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	httpAddr := freeAddr(t)
	cfg := fmt.Sprintf(`portal:
  url: %s
  keyring: %s
state_dir: %s/state
runtime_dir: %s/run
listen:
  http: %s
  socket: %s/run/agent.sock
heartbeat:
  interval: %s
identity:
  model: WPBX-VM
`, p.url(), filepath.Join(p.data, "keyring"), dir, dir, httpAddr, dir, interval)
	a := &appliance{t: t, name: name, config: filepath.Join(dir, "agent.yaml"), http: httpAddr}
	if err := os.WriteFile(a.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *appliance) start() {
	a.t.Helper()
	a.proc = start(a.t, "pbx-agent", "--config", a.config, "run", "--log-level", "debug")
	a.waitUp(a.cli)
}

// waitUp polls until the daemon answers its status through cli: with
// its state's exit code, whatever the state.
func (a *appliance) waitUp(cli func(stdin string, args ...string) result) {
	a.t.Helper()
	eventually(a.t, 10*time.Second, a.name+" up", func() (bool, string) {
		r := cli("", "status", "--json")
		return answered(r), r.stderr
	})
}

// stateExits is the exit code of `pbx-agent status` in each state, as
// its manual lists them: 0 only where the PBX may take new users.
var stateExits = map[string]int{"active": 0, "offline": 0, "unactivated": 10, "lapsed": 11, "stopping": 12, "stopped": 13, "deleted": 14}

// answered reports whether a run of `pbx-agent status` reached the
// daemon: it exits 0 or with a state's code (10 to 19), 2 when it could
// not ask.
func answered(r result) bool { return r.code == 0 || r.code >= 10 && r.code <= 19 }

// wantStateExit fails the test when status exited with another code than
// its state's.
func (a *appliance) wantStateExit(r result, state string) {
	a.t.Helper()
	want, ok := stateExits[state]
	if !ok {
		want = 19 // a state the CLI does not know
	}
	if r.code != want {
		a.t.Fatalf("%s status in state %s: exit %d, want %d: %s", a.name, state, r.code, want, r.stderr)
	}
}

func (a *appliance) cli(stdin string, args ...string) result {
	return run(a.t, stdin, "pbx-agent", append([]string{"--config", a.config}, args...)...)
}

func (a *appliance) status() apitype.Status {
	a.t.Helper()
	r := a.cli("", "status", "--json")
	if !answered(r) {
		a.t.Fatalf("%s status: exit %d: %s", a.name, r.code, r.stderr)
	}
	var s apitype.Status
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		a.t.Fatalf("%s status --json: %v\n%s", a.name, err, r.stdout)
	}
	a.wantStateExit(r, s.State)
	return s
}

// waitState polls until the agent reports state.
func (a *appliance) waitState(state string, within time.Duration) apitype.Status {
	a.t.Helper()
	var s apitype.Status
	eventually(a.t, within, a.name+" "+state, func() (bool, string) {
		s = a.status()
		return s.State == state, s.State + ": " + s.Summary + " " + s.Heartbeat.LastError
	})
	return s
}
