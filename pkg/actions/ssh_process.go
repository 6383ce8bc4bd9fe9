package actions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ProcessSSH runs support sshd as a child process group of the agent, for
// machines without systemd (development, the demo, tests). The group is
// killed at the TTL, on Close, and when the agent dies (the parent-death
// signal), so access never outlives its TTL or the agent.
//
// sshd runs as the agent's user with a host key of its own in the runtime
// folder, with the unit's confinement (sshdOptions): the policy's account
// alone, on the policy's addresses alone, no forwarding. Run as root it
// needs /run/sshd, which it creates. Unlike the systemd unit, a session
// that leaves sshd's process group (setsid) is not ended with it.
type ProcessSSH struct {
	sshd   string // the sshd binary
	dir    string // <runtime_dir>/ssh: keys, host key
	policy SSHPolicy
	log    *slog.Logger

	mu    sync.Mutex
	now   func() time.Time // the clock Until is told on; SetClock
	child *sshChild        // nil when closed
}

type sshChild struct {
	cmd   *exec.Cmd
	state SSHState
	done  chan struct{} // closed when the process has exited
	timer *time.Timer
}

// NewProcessSSH returns the executor; sshd is the binary (usually
// /usr/sbin/sshd), dir the folder for its files, policy who may log in and
// where sshd listens (Open refuses a policy that does not Check).
func NewProcessSSH(sshd, dir string, policy SSHPolicy, log *slog.Logger) *ProcessSSH {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ProcessSSH{sshd: sshd, dir: dir, policy: policy, log: log, now: time.Now}
}

// SetClock sets the clock the access's end is told on: the licence clock,
// so that the status and the portal see the end the licence sees. The TTL
// itself runs on elapsed time.
func (p *ProcessSSH) SetClock(now func() time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.now = now
}

// listenTimeout bounds the wait for sshd to listen.
const listenTimeout = 10 * time.Second

// Open starts sshd for req, replacing an open access, and returns once it
// listens.
func (p *ProcessSSH) Open(ctx context.Context, req SSHRequest) (SSHState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := checkTTL(req.TTL); err != nil {
		return SSHState{}, err // before closing the access open now
	}
	if err := p.checkPolicy(); err != nil {
		return SSHState{}, err
	}
	policy := p.policy.forRequest(req)
	p.closeLocked()
	addr := policy.dialAddr(req.Port)
	if err := checkPortFree(ctx, addr); err != nil {
		return SSHState{}, err
	}
	keys, err := writeAuthorizedKeys(p.dir, req.Keys)
	if err != nil {
		return SSHState{}, err
	}
	hostKey := filepath.Join(p.dir, "ssh_host_ed25519_key")
	if err := ensureHostKey(hostKey); err != nil {
		return SSHState{}, fmt.Errorf("making the support sshd's host key: %w", err)
	}
	if os.Geteuid() == 0 {
		// sshd run as root wants its privilege separation folder.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return SSHState{}, fmt.Errorf("creating /run/sshd: %w", err)
		}
	}
	args := []string{"-D", "-e", "-f", "/dev/null",
		"-p", strconv.Itoa(req.Port), "-h", hostKey,
		"-o", "AuthorizedKeysFile=" + keys,
		"-o", "PidFile=none", "-o", "UsePAM=no", "-o", "StrictModes=no"}
	for _, o := range policy.sshdOptions() {
		args = append(args, "-o", o)
	}
	cmd := exec.Command(p.sshd, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	out := &lineLogger{log: p.log.With("component", "sshd")}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return SSHState{}, fmt.Errorf("starting %s: %w", p.sshd, err)
	}
	c := &sshChild{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()

	if err := waitListening(ctx, addr, c.done); err != nil {
		killGroup(cmd)
		<-c.done
		return SSHState{}, fmt.Errorf("support sshd did not start: %w (%s)", err, out.last())
	}
	// Until is on the licence clock; the timer counts the TTL as elapsed
	// time, so neither clock moving shortens or stretches the access.
	c.state = SSHState{Open: true, Port: req.Port, Until: p.now().Round(0).Add(req.TTL),
		HostKeys: Fingerprints([]string{hostKey + ".pub"}), Loopback: req.Loopback}
	c.timer = time.AfterFunc(req.TTL, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.child == c {
			p.log.Info("support SSH access expired", "port", req.Port)
			p.closeLocked()
		}
	})
	p.child = c
	return c.state, nil
}

// Close ends the access and every session in sshd's process group.
func (p *ProcessSSH) Close(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
	return nil
}

func (p *ProcessSSH) closeLocked() {
	c := p.child
	if c == nil {
		return
	}
	p.child = nil
	c.timer.Stop()
	killGroup(c.cmd)
	<-c.done
	os.Remove(filepath.Join(p.dir, AuthorizedKeysName))
}

// State reports the access: open while sshd runs and its TTL lasts.
func (p *ProcessSSH) State(context.Context) (SSHState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.child == nil {
		return SSHState{}, nil
	}
	select {
	case <-p.child.done:
		p.child.timer.Stop()
		p.child = nil
		return SSHState{}, nil
	default:
		return p.child.state, nil
	}
}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// checkPolicy refuses a policy that cannot confine sshd, or that no one
// could log in with: sshd run by a user other than root can only let that
// user in.
func (p *ProcessSSH) checkPolicy() error {
	if err := p.policy.Check(); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return nil
	}
	me, err := user.Current()
	if err != nil {
		return fmt.Errorf("finding the account sshd would run as: %w", err)
	}
	if me.Username != p.policy.User {
		return fmt.Errorf("support sshd runs as %s here (not root), so it can let in %s alone, not %s: set ssh.user to %s",
			me.Username, me.Username, p.policy.User, me.Username)
	}
	return nil
}

// checkPortFree refuses to start sshd where something already answers:
// waitListening would take that for sshd, and support's session would
// reach whoever holds the port.
func checkPortFree(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("another process already listens on %s, the support sshd's address: stop it (ss -ltnp 'sport = :%s' names it) or set another port", addr, portOf(addr))
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// waitListening polls until something accepts on addr, the process exits,
// or the time is up.
func waitListening(ctx context.Context, addr string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, listenTimeout)
	defer cancel()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("it exited")
		case <-ctx.Done():
			return fmt.Errorf("nothing listens on %s after %v", addr, listenTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lineLogger logs a child's output line by line and keeps the last line
// for errors.
type lineLogger struct {
	log  *slog.Logger
	mu   sync.Mutex
	buf  []byte
	tail string
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		line := string(l.buf[:i])
		l.buf = l.buf[i+1:]
		if line != "" {
			l.tail = line
			l.log.Info(line)
		}
	}
	if len(l.buf) > 4096 {
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

func (l *lineLogger) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tail == "" {
		return "no output"
	}
	return l.tail
}
