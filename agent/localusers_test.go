package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func uidPtr(u uint32) *uint32 { return &u }

func askAs(uid uint32, p license.Profile, n int) apitype.Admission {
	return apitype.Admission{Profile: p, Count: n, Peer: fmt.Sprintf("uid %d pid 1", uid), PeerUID: uidPtr(uid)}
}

// TestAdmissionBoundPerUID is a member of the read group reserving seat
// after seat: it holds at most admission.max_reservations_per_uid at once,
// told why and what to do, while other peers, root and the uids of
// admission.unbounded_uids go on; each reservation is audited with its uid.
func TestAdmissionBoundPerUID(t *testing.T) {
	r := newRig(t)
	r.cfg.Admission.MaxReservationsPerUID = 5
	r.cfg.Admission.UnboundedUIDs = []uint32{33}
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 0}}
	a := r.admitting(t, license.Counts{license.UCPremium: 100}, src)
	ctx := context.Background()
	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}
	const attacker = 1001
	for i := range 5 {
		mustAdmit(t, a.Admit(ctx, askAs(attacker, license.UCPremium, 1)), 100-1-i)
	}
	bound := []string{"uid 1001 holds 5 reserved seats", "may hold 5 at once (admission.max_reservations_per_uid)", "admission.unbounded_uids",
		"admission.reservation_ttl (60 seconds)", "the reserved seats free up as a count shows their users, at the latest: 5 held until "}
	mustDeny(t, a.Admit(ctx, askAs(attacker, license.UCPremium, 1)), bound...)
	if ans := a.Admit(ctx, askAs(attacker, license.UCPremium, 1)); strings.Contains(ans.Reason, "1m0s") {
		t.Errorf("a raw Go duration in the denial: %q", ans.Reason)
	}
	// A dry run answers as the real request would; in one go is no way round.
	dryRun := askAs(attacker, license.UCPremium, 1)
	dryRun.DryRun = true
	mustDeny(t, a.Admit(ctx, dryRun), bound...)
	mustDeny(t, a.Admit(ctx, askAs(1002, license.UCPremium, 6)), "uid 1002 holds 0 reserved seats", "so 6 more are refused")
	if ps := profileStatus(a, license.UCPremium); ps.Reserved != 5 {
		t.Errorf("reserved %d after the refusals, want the attacker's 5", ps.Reserved)
	}

	// Other peers are bounded on their own; root and the WMS's uid are not.
	mustAdmit(t, a.Admit(ctx, askAs(1002, license.UCPremium, 5)), 90)
	mustAdmit(t, a.Admit(ctx, askAs(0, license.UCPremium, 20)), 70)
	mustAdmit(t, a.Admit(ctx, askAs(33, license.UCPremium, 20)), 50)

	// A count that shows two users added frees two of the oldest seats,
	// the attacker's: it may reserve two more.
	src.set(license.Counts{license.UCPremium: 2}, nil)
	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}
	mustAdmit(t, a.Admit(ctx, askAs(attacker, license.UCPremium, 2)), 48)
	mustDeny(t, a.Admit(ctx, askAs(attacker, license.UCPremium, 1)), "uid 1001 holds 5 reserved seats")

	// Each reservation is in the audit log with its uid; dry runs are not.
	res := auditOf(t, r.cfg.StateDir, auditAdmissionReserved)
	if len(res) != 5+3+1 {
		t.Fatalf("%d reservations audited, want 9", len(res))
	}
	first, last := res[0].Fields, res[len(res)-1].Fields
	if first["uid"] != float64(attacker) || first["profile"] != "uc-premium" || first["count"] != float64(1) || first["peer"] != "uid 1001 pid 1" || first["held"] != float64(1) {
		t.Errorf("first reservation audited as %v", first)
	}
	if last["uid"] != float64(attacker) || last["count"] != float64(2) || last["held"] != float64(5) || last["remaining"] != float64(48) {
		t.Errorf("last reservation audited as %v", last)
	}
	denied := auditOf(t, r.cfg.StateDir, auditAdmissionDenied)
	if len(denied) == 0 || denied[0].Fields["kind"] != admission.KindBound || denied[0].Fields["uid"] != float64(attacker) {
		t.Errorf("denials audited as %v, want the bound's with the uid", denied)
	}
}

// TestAdmissionBoundReloads: a reload applies a new bound and a new list of
// exempt uids to the next request.
func TestAdmissionBoundReloads(t *testing.T) {
	r := newRig(t)
	r.cfg.Admission.MaxReservationsPerUID = 1
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 0}}
	a := r.admitting(t, license.Counts{license.UCPremium: 10}, src)
	ctx := context.Background()
	if err := a.countUsers(ctx); err != nil {
		t.Fatal(err)
	}
	mustDeny(t, a.Admit(ctx, askAs(1001, license.UCPremium, 2)), "may hold 1 at once")
	next := a.cfg
	next.Admission.MaxReservationsPerUID = 2
	next.Admission.UnboundedUIDs = []uint32{1002}
	a.rl.read = func() (Config, error) { return next, nil }
	lp := &loops{heartbeat: newLoop(ctx, func(context.Context) {}), users: newLoop(ctx, func(context.Context) {})}
	defer lp.stop()
	a.reload(ctx, lp)
	mustAdmit(t, a.Admit(ctx, askAs(1001, license.UCPremium, 2)), 8)
	mustAdmit(t, a.Admit(ctx, askAs(1002, license.UCPremium, 5)), 3)
}

func TestAdmissionConfigValidation(t *testing.T) {
	for _, tt := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Admission.MaxReservationsPerUID = 0 }, "admission.max_reservations_per_uid"},
		{func(c *Config) { c.Admission.UnboundedUIDs = []uint32{0} }, "admission.unbounded_uids"},
		{func(c *Config) { c.Listen.HTTP = "9731" }, "listen.http"},
		{func(c *Config) { c.Listen.HTTP = "127.0.0.1:http" }, "listen.http"},
	} {
		c := DefaultConfig()
		c.Portal.URL = "https://portal.example"
		tt.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate = %v, want an error naming %s", err, tt.want)
		}
	}
}

// admitPeerEnv names the socket a TestHelperAdmitPeer child asks.
const admitPeerEnv = "PBX_AGENT_TEST_ADMIT_SOCKET"

// TestHelperAdmitPeer is not a test: it is the child of
// TestPeerCannotHoardSeats, running as nobody, that asks the daemon for one
// seat at a time until refused and prints each answer.
func TestHelperAdmitPeer(t *testing.T) {
	sock := os.Getenv(admitPeerEnv)
	if sock == "" {
		t.Skip("helper process for TestPeerCannotHoardSeats")
	}
	c := socketClient(sock)
	for range 20 {
		status, ans, err := postAdmission(c, `{"profile": "uc-premium", "count": 1, "dry_run": false}`)
		if err != nil {
			fmt.Printf("ADMIT error %v\n", err)
			return
		}
		line, _ := json.Marshal(ans)
		fmt.Printf("ADMIT %d %s\n", status, line)
	}
}

// TestPeerCannotHoardSeats runs the daemon and, as uid 65534 (nobody, a
// peer allowed to ask for admission), reserves seat after seat over the
// socket, as a local user who wants to keep the WMS from adding users
// would: it gets admission.max_reservations_per_uid seats and no more, and
// the seats it got are in the status and the audit log under its uid.
func TestPeerCannotHoardSeats(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the peer runs as another uid (nobody)")
	}
	nogroup, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Skip("needs the group nogroup")
	}
	gid, _ := strconv.Atoi(nogroup.Gid)
	r := newRig(t)
	// nobody must reach the socket and run the test binary.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.cfg.Listen.Socket = filepath.Join(dir, "agent.sock")
	r.cfg.Listen.HTTP = ""
	r.cfg.API.WriteGroups = []string{"nogroup"} // the pbx-agent group may not exist here: nobody's group lets it ask
	r.cfg.Admission.MaxReservationsPerUID = 3
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 0}}
	a, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Root: r.root, Users: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	runAgent(t, a)
	c := socketClient(r.cfg.Listen.Socket)
	eventually(t, 10*time.Second, "the first count", func() bool {
		var st apitype.Status
		return getJSON(c, "/v1/status", &st) == nil && st.Users.CountedAt != nil
	})
	if err := os.Chown(r.cfg.Listen.Socket, -1, gid); err != nil {
		t.Fatal(err)
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "agent.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperAdmitPeer$")
	cmd.Env = []string{admitPeerEnv + "=" + r.cfg.Listen.Socket}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: uint32(gid)}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s%s", err, out, stderr.Bytes())
	}
	var allowed, denied int
	var reason string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "ADMIT ")
		if !ok {
			continue
		}
		code, body, _ := strings.Cut(line, " ")
		var ans apitype.AdmissionAnswer
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatalf("child said %q", line)
		}
		switch {
		case code == "200" && ans.Allowed:
			allowed++
		case code == "409" && !ans.Allowed:
			denied++
			reason = ans.Reason
		default:
			t.Errorf("answer %s", line)
		}
	}
	if allowed != 3 || denied != 17 {
		t.Errorf("nobody got %d seats and %d refusals, want 3 and 17", allowed, denied)
	}
	if !strings.Contains(reason, "uid 65534 holds 3 reserved seats") || !strings.Contains(reason, "admission.max_reservations_per_uid") {
		t.Errorf("refusal %q does not name the uid and the bound", reason)
	}
	var st apitype.Status
	if err := getJSON(c, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if got := st.License.Profiles["uc-premium"].Reserved; got != 3 {
		t.Errorf("reserved %d, want nobody's 3", got)
	}
	res := auditOf(t, r.cfg.StateDir, auditAdmissionReserved)
	if len(res) != 3 || res[0].Fields["uid"] != float64(65534) || !strings.HasPrefix(res[0].Fields["peer"].(string), "uid 65534 pid ") {
		t.Errorf("reservations audited as %v, want 3 under uid 65534", res)
	}
}

// TestRunWithItsPortSquatted: a local user binds listen.http's port before
// the daemon starts, to keep it from starting or to serve a fake status
// page. The daemon starts anyway: READY=1, the socket answers, admission
// works, and the status names the held port. Once the squatter lets go,
// the daemon takes the port.
func TestRunWithItsPortSquatted(t *testing.T) {
	ch := systemdSocket(t, 0)
	squat, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := squat.Addr().String()
	r := newRig(t)
	r.cfg.Listen.Socket = filepath.Join(t.TempDir(), "agent.sock")
	r.cfg.Listen.HTTP = addr
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	src := &fakeUsers{counts: license.Counts{license.UCPremium: 4}}
	a, err := New(r.cfg, slog.New(slog.DiscardHandler), Options{Root: r.root, Users: src})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	runAgent(t, a)
	await(t, ch, "READY=1")

	c := socketClient(r.cfg.Listen.Socket)
	resp, err := c.Get("http://local/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("readyz on the socket = %d, want 200", resp.StatusCode)
	}
	var st apitype.Status
	eventually(t, 10*time.Second, "the held port in the status and a count", func() bool {
		return getJSON(c, "/v1/status", &st) == nil && st.Users.CountedAt != nil &&
			st.Listeners != nil && st.Listeners.HTTP != nil && strings.Contains(st.Listeners.HTTP.Error, "address already in use")
	})
	if st.Listeners.HTTP.Address != addr || st.State != "active" {
		t.Errorf("status %s, listeners.http %+v", st.State, st.Listeners.HTTP)
	}
	if status, ans, err := postAdmission(c, `{"profile": "uc-premium", "count": 6}`); err != nil || status != 200 || !ans.Allowed {
		t.Errorf("admission while the port is held: %d %+v %v", status, ans, err)
	}
	if status, ans, err := postAdmission(c, `{"profile": "uc-premium", "count": 1}`); err != nil || status != 409 || ans.Allowed {
		t.Errorf("admission past the licence while the port is held: %d %+v %v, want enforced", status, ans, err)
	}

	squat.Close()
	eventually(t, 15*time.Second, "listen.http bound once freed", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	var after apitype.Status // fresh: decoding into st would keep its error
	if err := getJSON(c, "/v1/status", &after); err != nil || after.Listeners.HTTP.Error != "" || after.Listeners.HTTP.Address != addr {
		t.Errorf("listeners.http %+v after binding (%v), want %s without an error", after.Listeners.HTTP, err, addr)
	}
}

// TestAdoptListeners sorts what systemd hands over: by FileDescriptorName,
// a name on a listener of the wrong kind being an error, else by address.
func TestAdoptListeners(t *testing.T) {
	dir := t.TempDir()
	unixLn := func(t *testing.T, name string) net.Listener {
		ln, err := net.Listen("unix", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	tcpLn := func(t *testing.T) net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	agentFor := func(sock, http string) *Agent {
		return &Agent{cfg: Config{Listen: ListenConfig{Socket: sock, HTTP: http}}, log: slog.New(slog.DiscardHandler)}
	}
	t.Run("by name", func(t *testing.T) {
		u, h := unixLn(t, "a.sock"), tcpLn(t)
		l, err := agentFor(u.Addr().String(), h.Addr().String()).adoptListeners(map[string][]net.Listener{"socket": {u}, "http": {h}})
		if err != nil || l.unix != u || !l.unixSystemd || l.http != h {
			t.Errorf("adopted %+v, %v", l, err)
		}
	})
	t.Run("unnamed, by address", func(t *testing.T) {
		u, h := unixLn(t, "b.sock"), tcpLn(t)
		l, err := agentFor(u.Addr().String(), "127.0.0.1:9731").adoptListeners(map[string][]net.Listener{"pbx-agent.socket": {h, u}})
		if err != nil || l.unix != u || l.http != h {
			t.Errorf("adopted %+v, %v", l, err)
		}
	})
	t.Run("a name on the wrong kind", func(t *testing.T) {
		u, h := unixLn(t, "c.sock"), tcpLn(t)
		_, err := agentFor(u.Addr().String(), "").adoptListeners(map[string][]net.Listener{"socket": {h}, "http": {u}})
		if err == nil || !strings.Contains(err.Error(), "ListenStream=") {
			t.Errorf("adopt = %v, want an error naming ListenStream=", err)
		}
	})
	t.Run("listen.http empty", func(t *testing.T) {
		h := tcpLn(t)
		l, err := agentFor("/run/x.sock", "").adoptListeners(map[string][]net.Listener{"http": {h}})
		if err != nil || l.http != nil {
			t.Errorf("adopted %+v, %v; want the TCP listener closed", l, err)
		}
		if _, err := h.Accept(); err == nil {
			t.Error("the unwanted listener still accepts")
		}
	})
}

// inheritEnv asks TestHelperInherited to take the listeners of its
// LISTEN_FDS, as the daemon does under systemd.
const inheritEnv = "PBX_AGENT_TEST_INHERIT"

// TestHelperInherited is not a test: it is the child of
// TestSocketActivation, started the way systemd starts the daemon, with
// the listeners as fds 3 and 4. It prints what it adopted.
func TestHelperInherited(t *testing.T) {
	if os.Getenv(inheritEnv) == "" {
		t.Skip("helper process for TestSocketActivation")
	}
	// systemd sets LISTEN_PID to the service's pid, unknown before exec.
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	named, err := activation.ListenersWithNames()
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{Listen: ListenConfig{Socket: os.Getenv("SOCK"), HTTP: os.Getenv("HTTP")}}, log: slog.New(slog.DiscardHandler)}
	l, err := a.adoptListeners(named)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADOPTED unix=%s systemd=%v http=%s env=%q\n", l.unix.Addr(), l.unixSystemd, l.http.Addr(), os.Getenv("LISTEN_FDS"))
}

// TestSocketActivation passes a unix and a TCP listener as systemd does
// (LISTEN_FDS, LISTEN_FDNAMES=socket:http) and checks that the daemon's
// code finds each by its name, and clears the variables so the children
// it starts (sshd) do not take them.
func TestSocketActivation(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	u, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	h, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	uf, err := u.File()
	if err != nil {
		t.Fatal(err)
	}
	defer uf.Close()
	hf, err := h.File()
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestHelperInherited$")
	cmd.Env = []string{inheritEnv + "=1", "LISTEN_FDS=2", "LISTEN_FDNAMES=socket:http", "SOCK=" + sock, "HTTP=" + h.Addr().String()}
	cmd.ExtraFiles = []*os.File{uf, hf} // fds 3 and 4
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := fmt.Sprintf("ADOPTED unix=%s systemd=true http=%s env=\"\"", sock, h.Addr())
	if !strings.Contains(string(out), want) {
		t.Errorf("child said:\n%s\nwant %q", out, want)
	}
}
