package actions

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	"golang.org/x/crypto/ssh"

	"github.com/pbx-agent/pbx-agent/internal/logbuf"
)

// loopbackPolicy lets in the account the tests run as, on 127.0.0.1 alone.
func loopbackPolicy(t *testing.T) SSHPolicy {
	t.Helper()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return SSHPolicy{User: me.Username, Listen: []string{"127.0.0.1"}}
}

// supportKey is a support engineer's key: the signer and the line the
// portal pushes.
func supportKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
}

// openSupport opens access with one pushed key under policy.
func openSupport(t *testing.T, policy SSHPolicy, keyLine string) (*ProcessSSH, int) {
	t.Helper()
	p := NewProcessSSH(sshdOrSkip(t), filepath.Join(t.TempDir(), "ssh"), policy, nil)
	port := freeTCPPort(t)
	if _, err := p.Open(context.Background(), SSHRequest{Port: port, TTL: time.Hour, Keys: []string{keyLine}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p, port
}

func login(addr, account string, signer ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: account, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
}

// refused asserts that the pushed key does not log in as account.
func refused(t *testing.T, addr, account string, signer ssh.Signer) {
	t.Helper()
	c, err := login(addr, account, signer)
	if err == nil {
		c.Close()
		t.Errorf("the pushed key logged in as %s", account)
		return
	}
	if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("login as %s: %v, want an authentication refusal", account, err)
	}
}

// otherAccounts are accounts of this machine other than except, and one
// that does not exist.
func otherAccounts(except string) []string {
	out := []string{"no-such-account"}
	for _, name := range []string{"root", "daemon", "nobody", "sshd", "postgres", "pbx-support"} {
		if _, err := user.Lookup(name); err == nil && name != except {
			out = append(out, name)
		}
	}
	return out
}

// TestProcessSSHLetsInOneAccount pushes a key and tries it, as the support
// engineer given it would, on every account: only the configured one may
// take it. AuthorizedKeysFile is one path for all accounts, so without
// AllowUsers the key would open root.
func TestProcessSSHLetsInOneAccount(t *testing.T) {
	signer, line := supportKey(t)
	policy := loopbackPolicy(t)
	_, port := openSupport(t, policy, line)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	c, err := login(addr, policy.User, signer)
	if err != nil {
		t.Fatalf("the configured account %s: %v", policy.User, err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("echo logged-in")
	c.Close()
	if err != nil || strings.TrimSpace(string(out)) != "logged-in" {
		t.Fatalf("a command as %s: %v %q", policy.User, err, out)
	}
	for _, account := range otherAccounts(policy.User) {
		refused(t, addr, account, signer)
	}
}

// TestProcessSSHRefusesRoot configures an account other than root (the
// shipped one is pbx-support): the key must not open root, which sshd run
// as root could otherwise let in.
func TestProcessSSHRefusesRoot(t *testing.T) {
	other := "nobody"
	if _, err := user.Lookup(other); err != nil {
		t.Skipf("no account %s to configure: %v", other, err)
	}
	policy := SSHPolicy{User: other, Listen: []string{"127.0.0.1"}}
	if os.Geteuid() != 0 {
		// sshd as an ordinary user can let in that user alone: say so
		// rather than open an access no one can use.
		p := NewProcessSSH(sshdOrSkip(t), filepath.Join(t.TempDir(), "ssh"), policy, nil)
		_, err := p.Open(context.Background(), SSHRequest{Port: freeTCPPort(t), TTL: time.Hour})
		if err == nil || !strings.Contains(err.Error(), "set ssh.user to") {
			t.Fatalf("opening for %s as uid %d: %v, want a refusal naming ssh.user", other, os.Geteuid(), err)
		}
		return
	}
	signer, line := supportKey(t)
	logs := &logbuf.Buffer{}
	p := NewProcessSSH(sshdOrSkip(t), filepath.Join(t.TempDir(), "ssh"), policy, slog.New(slog.NewTextHandler(logs, nil)))
	port := freeTCPPort(t)
	if _, err := p.Open(context.Background(), SSHRequest{Port: port, TTL: time.Hour, Keys: []string{line}}); err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	refused(t, addr, "root", signer)
	// Refused for not being the account, not for a key sshd could not
	// read: the key file is the same for every account.
	waitFor(t, 5*time.Second, "sshd logs root's refusal", func() bool {
		return strings.Contains(logs.String(), "User root from 127.0.0.1 not allowed because not listed in AllowUsers")
	})
}

// TestProcessSSHListensOnlyWhereConfigured binds one loopback address and
// dials the others the machine has: nothing may answer there.
func TestProcessSSHListensOnlyWhereConfigured(t *testing.T) {
	signer, line := supportKey(t)
	policy := loopbackPolicy(t)
	policy.Listen = []string{"127.0.0.2"}
	_, port := openSupport(t, policy, line)
	ps := strconv.Itoa(port)

	c, err := login(net.JoinHostPort("127.0.0.2", ps), policy.User, signer)
	if err != nil {
		t.Fatalf("the configured address: %v", err)
	}
	c.Close()

	others := []string{"127.0.0.1", "::1"}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() && !slices.Contains(others, n.IP.String()) {
				others = append(others, n.IP.String())
			}
		}
	}
	for _, ip := range others {
		if ip == "127.0.0.2" {
			continue
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, ps), 2*time.Second)
		if err == nil {
			c.Close()
			t.Errorf("support sshd answers on %s, configured to listen on 127.0.0.2 alone", ip)
		}
	}
}

// TestProcessSSHRefusesForwarding logs in as the support engineer and
// tries to reach past the appliance: a local port forward (ssh -L, and -D
// which asks the same), a Unix socket forward (the agent's socket), a
// remote forward (ssh -R) and a tunnel device (ssh -w).
func TestProcessSSHRefusesForwarding(t *testing.T) {
	signer, line := supportKey(t)
	policy := loopbackPolicy(t)
	_, port := openSupport(t, policy, line)
	c, err := login(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), policy.User, signer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Something on the site's network, here a listener of the test.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	unixTarget, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer unixTarget.Close()

	for _, d := range []struct {
		network, addr string
		ln            net.Listener
	}{{"tcp", target.Addr().String(), target}, {"unix", sock, unixTarget}} {
		conn, err := c.Dial(d.network, d.addr)
		if err == nil {
			conn.Close()
			t.Errorf("forwarding to %s %s was allowed", d.network, d.addr)
			continue
		}
		// sshd answers a forward after connecting: a connection made
		// would wait in the backlog now.
		d.ln.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(100 * time.Millisecond))
		if conn, aerr := d.ln.Accept(); aerr == nil {
			conn.Close()
			t.Errorf("forwarding to %s %s was refused (%v) but sshd connected to it", d.network, d.addr, err)
		}
	}
	if ln, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
		t.Error("a remote forward (ssh -R) was allowed")
	}
	// tun@openssh.com: tunnel mode 1 (point to point), any unit.
	payload := ssh.Marshal(struct{ Mode, Unit uint32 }{1, 0x7fffffff})
	if ch, _, err := c.OpenChannel("tun@openssh.com", payload); err == nil {
		ch.Close()
		t.Error("a tunnel device (ssh -w) was allowed")
	}
}

// TestProcessSSHUntilOnTheGivenClock runs the executor on a clock months
// ahead of the machine's, as the licence clock is when the portal's is:
// the end is told on that clock, and the TTL still ends the access after
// its real duration.
func TestProcessSSHUntilOnTheGivenClock(t *testing.T) {
	sshd := sshdOrSkip(t)
	licence := time.Now().Add(140 * 24 * time.Hour).UTC().Truncate(time.Second)
	p := NewProcessSSH(sshd, filepath.Join(t.TempDir(), "ssh"), loopbackPolicy(t), nil)
	p.SetClock(func() time.Time { return licence })
	port := freeTCPPort(t)
	began := time.Now()
	st, err := p.Open(context.Background(), SSHRequest{Port: port, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if want := licence.Add(2 * time.Second); !st.Until.Equal(want) {
		t.Fatalf("until %v, want %v: the licence clock plus the TTL", st.Until, want)
	}
	waitFor(t, 10*time.Second, "the TTL closes sshd", func() bool { return !listening(port) })
	if took := time.Since(began); took < 2*time.Second {
		t.Fatalf("closed after %v, before its 2 s TTL", took)
	}
}

// TestPolicyCheck refuses what would widen AllowUsers or bind a name.
func TestPolicyCheck(t *testing.T) {
	for _, p := range []SSHPolicy{
		{User: "*", Listen: []string{"0.0.0.0"}},
		{User: "pbx-support root", Listen: []string{"0.0.0.0"}},
		{User: "pbx-support,root", Listen: []string{"0.0.0.0"}},
		{User: "pbx-support@10.0.0.1", Listen: []string{"0.0.0.0"}},
		{User: "!root", Listen: []string{"0.0.0.0"}},
		{User: "", Listen: []string{"0.0.0.0"}},
		{User: "pbx-support", Listen: nil},
		{User: "pbx-support", Listen: []string{"localhost"}},
		{User: "pbx-support", Listen: []string{"0.0.0.0:22"}},
	} {
		if err := p.Check(); err == nil {
			t.Errorf("%+v passed the check", p)
		}
	}
	if err := UnitSSHPolicy().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestUnitMatchesTheProcessMode reads the shipped units: their sshd
// options are the process mode's for the default policy, in port mode and
// in tunnel mode, so both modes confine support alike.
func TestUnitMatchesTheProcessMode(t *testing.T) {
	for _, u := range []struct {
		file   string
		policy SSHPolicy
		port   int
	}{
		{"pbx-agent-sshd@.service", UnitSSHPolicy(), SSHUnitPort},
		{"pbx-agent-sshd-tunnel@.service", UnitSSHPolicy().forRequest(SSHRequest{Loopback: true}), SSHTunnelUnitPort},
	} {
		t.Run(u.file, func(t *testing.T) {
			exec := unitExecStart(t, "../../systemd/"+u.file)
			fields := strings.Fields(exec)
			var opts []string
			for i, f := range fields {
				if f == "-o" && i+1 < len(fields) {
					opts = append(opts, fields[i+1])
				}
			}
			want := u.policy.sshdOptions()
			for _, o := range want {
				if !slices.Contains(opts, o) {
					t.Errorf("the unit lacks -o %s (its options: %v)", o, opts)
				}
			}
			for _, o := range opts {
				if k, _, _ := strings.Cut(o, "="); k == "AllowUsers" || k == "ListenAddress" {
					if !slices.Contains(want, o) {
						t.Errorf("the unit has -o %s, which the default policy does not", o)
					}
				}
			}
			if !strings.Contains(exec, fmt.Sprintf("-p %d ", u.port)) {
				t.Errorf("the unit's sshd does not listen on port %d: %s", u.port, exec)
			}
		})
	}
}

// unitExecStart is a unit file's ExecStart=, its continued lines joined.
func unitExecStart(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var exec string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "ExecStart=") || (exec != "" && strings.HasSuffix(exec, "\\")) {
			exec = strings.TrimSuffix(exec, "\\") + " " + line
		}
	}
	return exec
}

// sshUnits stands in for systemd running the support sshd unit.
type sshUnits struct {
	mu      sync.Mutex
	running string // the active unit; "" for none
	startUS uint64 // its ActiveEnterTimestampMonotonic
	mono    time.Duration
}

func (u *sshUnits) StartUnitContext(_ context.Context, name, _ string, ch chan<- string) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.running, u.startUS = name, uint64(u.mono/time.Microsecond)
	go func() { ch <- "done" }()
	return 1, nil
}

func (u *sshUnits) StopUnitContext(_ context.Context, _, _ string, ch chan<- string) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.running = ""
	go func() { ch <- "done" }()
	return 1, nil
}

func (u *sshUnits) ListUnitsByPatternsContext(context.Context, []string, []string) ([]sddbus.UnitStatus, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.running == "" {
		return nil, nil
	}
	return []sddbus.UnitStatus{{Name: u.running, ActiveState: "active"}}, nil
}

func (u *sshUnits) GetUnitPropertyContext(_ context.Context, _, property string) (*sddbus.Property, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if property != "ActiveEnterTimestampMonotonic" {
		return nil, errors.New("unexpected property " + property)
	}
	return &sddbus.Property{Name: property, Value: dbus.MakeVariant(u.startUS)}, nil
}

func (u *sshUnits) Close() {}

func (u *sshUnits) advance(d time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.mono += d
}

// TestSystemdSSHUntilOnTheLicenceClock starts the unit with the licence
// clock months ahead of the machine's: the end is the licence time at the
// start plus the TTL, steady across reads, and later reads count the time
// since the start on the monotonic clock.
func TestSystemdSSHUntilOnTheLicenceClock(t *testing.T) {
	units := &sshUnits{mono: 1000 * time.Hour}
	s := NewSystemdSSH(func(context.Context) (SSHUnits, error) { return units, nil },
		filepath.Join(t.TempDir(), "ssh"), filepath.Join(t.TempDir(), "none*"), UnitSSHPolicy(), nil)
	s.mono = func() time.Duration { units.mu.Lock(); defer units.mu.Unlock(); return units.mono }
	licence := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC) // the machine says December 2026
	s.SetClock(func() time.Time { return licence.Add(units.mono - 1000*time.Hour) })

	st, err := s.Open(context.Background(), SSHRequest{Port: SSHUnitPort, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if want := licence.Add(time.Hour); !st.Until.Equal(want) {
		t.Fatalf("until %v, want %v", st.Until, want)
	}
	units.advance(20 * time.Minute)
	if st, err := s.State(context.Background()); err != nil || !st.Until.Equal(licence.Add(time.Hour)) {
		t.Fatalf("state 20 min later: %+v %v, want until %v", st, err, licence.Add(time.Hour))
	}
	// A new executor (an agent restart) reads the running unit afresh.
	s2 := NewSystemdSSH(func(context.Context) (SSHUnits, error) { return units, nil },
		filepath.Join(t.TempDir(), "ssh"), filepath.Join(t.TempDir(), "none*"), UnitSSHPolicy(), nil)
	s2.mono = s.mono
	s2.SetClock(func() time.Time { return licence.Add(units.mono - 1000*time.Hour) })
	if st, err := s2.State(context.Background()); err != nil || !st.Until.Equal(licence.Add(time.Hour)) {
		t.Fatalf("after a restart: %+v %v, want until %v", st, err, licence.Add(time.Hour))
	}
}

// TestSystemdSSHRefusesAnotherPolicy: the unit cannot take the
// configuration's account or addresses, so Open says so instead of
// opening something other than what is configured.
func TestSystemdSSHRefusesAnotherPolicy(t *testing.T) {
	for _, p := range []SSHPolicy{
		{User: "root", Listen: UnitSSHPolicy().Listen},
		{User: "pbx-support", Listen: []string{"127.0.0.1"}},
	} {
		units := &sshUnits{mono: time.Hour}
		s := NewSystemdSSH(func(context.Context) (SSHUnits, error) { return units, nil },
			filepath.Join(t.TempDir(), "ssh"), filepath.Join(t.TempDir(), "none*"), p, nil)
		_, err := s.Open(context.Background(), SSHRequest{Port: SSHUnitPort, TTL: time.Hour})
		if err == nil || !strings.Contains(err.Error(), "set ssh.user and ssh.listen") || units.running != "" {
			t.Errorf("policy %+v: %v (unit %q), want a refusal before starting the unit", p, err, units.running)
		}
	}
}
