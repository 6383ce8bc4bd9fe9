package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// tunnelCopyBytes is what figure 9 copies through one SSH session.
const tunnelCopyBytes = 100 << 20

// tunnelEchoes is how many one-byte round trips figure 9 times a session.
const tunnelEchoes = 200

// sshd is Debian's OpenSSH server, which the agent starts for support.
const sshd = "/usr/sbin/sshd"

// tunnelCost is figure 9: support SSH through the portal's tunnel against
// the same SSH straight to the support sshd the agent started on loopback.
// The path measured is the whole relay a support engineer goes through:
// ssh, `pbx-portal-sim tunnel` as its ProxyCommand, the simulator, the
// agent's WebSocket and its stream to sshd. Two figures: a 100 MiB copy
// (ssh … 'cat >/dev/null'), and a one-byte echo inside an open session
// (ssh … cat), the latency a keystroke sees. Runs alternate, direct then
// tunnel, rounds times; each one's best is kept. The tunnel-mode sshd
// listens on a privileged port, so the figure needs root.
func (r *rig) tunnelCost(ctx context.Context, rounds int) ([]row, error) {
	notRun := func(why string) []row {
		return []row{{Item: "9", What: "support SSH through the tunnel", Agent: "not run (" + why + ")",
			Against: "the same SSH straight to the loopback sshd"}}
	}
	if os.Geteuid() != 0 {
		return notRun("needs root: the tunnel-mode sshd listens on a privileged port"), nil
	}
	for _, p := range []string{sshd, "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(p); err != nil {
			return notRun(p + " not installed (Debian: openssh-server, openssh-client)"), nil
		}
	}
	me, err := user.Current()
	if err != nil {
		return nil, err
	}
	a, err := r.newAgent("tunnel", time.Minute, users)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	tunnelPort, err := freePrivilegedPort()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(a.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(f, "ssh:\n  port: %d\n  tunnel_port: %d\n  sshd: %s\n  user: %s\n", port, tunnelPort, sshd, me.Username)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := r.start(ctx, a); err != nil {
		return nil, err
	}
	defer a.d.stop()
	if err := r.activate(ctx, a, licences...); err != nil {
		return nil, err
	}
	key := filepath.Join(a.dir, "support_key")
	if _, err := run(ctx, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "support@bench", "-f", key); err != nil {
		return nil, err
	}
	pbx := a.name + ".bench"
	if _, err := r.sim(ctx, "command", pbx, "ssh-open", "--tunnel", "--ttl", "30m", "--pubkey", key+".pub"); err != nil {
		return nil, err
	}
	if err := poll(ctx, 30*time.Second, "the tunnel connected", func() error {
		out, err := r.cli(ctx, a, "", "status", "--json")
		if err != nil {
			return err
		}
		var st struct {
			SSH struct {
				Tunnel *struct{ Connected bool } `json:"tunnel"`
			} `json:"ssh"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if st.SSH.Tunnel == nil || !st.SSH.Tunnel.Connected {
			return errors.New("not connected yet")
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%w (agent log: %s)", err, a.d.log)
	}

	common := []string{"-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-T"}
	direct := append(slices.Clone(common), "-p", strconv.Itoa(tunnelPort), me.Username+"@127.0.0.1")
	proxy := fmt.Sprintf("%s --portal http://%s tunnel %s", filepath.Join(r.bin, "pbx-portal-sim"), r.simAddr, pbx)
	tunnelled := append(slices.Clone(common), "-o", "ProxyCommand="+proxy, me.Username+"@"+pbx)

	var copyDirect, copyTunnel, echoDirect, echoTunnel time.Duration
	for i := range rounds {
		for _, m := range []struct {
			argv       []string
			copy, echo *time.Duration
		}{{direct, &copyDirect, &echoDirect}, {tunnelled, &copyTunnel, &echoTunnel}} {
			c, err := sshCopy(ctx, m.argv, tunnelCopyBytes)
			if err != nil {
				return nil, err
			}
			e, err := sshEcho(ctx, m.argv, tunnelEchoes)
			if err != nil {
				return nil, err
			}
			if i == 0 || c < *m.copy {
				*m.copy = c
			}
			if i == 0 || e < *m.echo {
				*m.echo = e
			}
		}
	}
	mbps := func(d time.Duration) string {
		return fmtRate(float64(tunnelCopyBytes)/(1<<20)/d.Seconds(), "MiB/s") + " · " + fmtDur(d)
	}
	cr, creads := costRatio(float64(copyTunnel), float64(copyDirect))
	er, ereads := costRatio(float64(echoTunnel), float64(echoDirect))
	return []row{
		{Item: "9", What: "support SSH, copy 100 MiB (ssh … 'cat >/dev/null'): throughput · time",
			Agent: "through the tunnel: " + mbps(copyTunnel), Against: "the same copy straight to the loopback sshd",
			Other: mbps(copyDirect), Ratio: cr, Reads: creads},
		{Item: "9", What: fmt.Sprintf("support SSH, one-byte echo in a session (median of %d)", tunnelEchoes),
			Agent: "through the tunnel: " + fmtDur(echoTunnel), Against: "the same echo straight to the loopback sshd",
			Other: fmtDur(echoDirect), Ratio: er, Reads: ereads},
	}, nil
}

// sshCopy times ssh argv 'cat >/dev/null' fed n bytes: from exec until
// the session ends, the handshake included, as for scp.
func sshCopy(ctx context.Context, argv []string, n int64) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "ssh", append(slices.Clone(argv), "cat >/dev/null")...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	chunk := make([]byte, 256<<10)
	var werr error
	for left := n; left > 0 && werr == nil; left -= int64(len(chunk)) {
		_, werr = in.Write(chunk[:min(int64(len(chunk)), left)])
	}
	in.Close()
	if err := cmd.Wait(); err != nil || werr != nil {
		return 0, fmt.Errorf("ssh %v: %v %v: %s", argv, err, werr, stderr.String())
	}
	return time.Since(began), nil
}

// sshEcho opens a session running cat and times n one-byte round trips
// through it, after the first: it returns their median.
func sshEcho(ctx context.Context, argv []string, n int) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "ssh", append(slices.Clone(argv), "cat")...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		in.Close()
		cmd.Wait()
	}()
	out := bufio.NewReader(outPipe)
	b := []byte{'x'}
	took := make([]time.Duration, 0, n)
	for i := range n + 1 {
		began := time.Now()
		if _, err := in.Write(b); err != nil {
			return 0, fmt.Errorf("ssh %v: %w: %s", argv, err, stderr.String())
		}
		if _, err := io.ReadFull(out, b); err != nil {
			return 0, fmt.Errorf("ssh %v: %w: %s", argv, err, stderr.String())
		}
		if i > 0 { // the first waits for the session to be set up
			took = append(took, time.Since(began))
		}
	}
	slices.Sort(took)
	return took[len(took)/2], nil
}

// freePort returns a TCP port nothing listens on now on loopback.
func freePort() (int, error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// freePrivilegedPort returns a port below 1024 nothing listens on now on
// loopback.
func freePrivilegedPort() (int, error) {
	for port := 900; port < 1024; port++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port between 900 and 1023")
}

// limitedBuffer keeps the first 4 KiB written to it: enough of ssh's
// stderr to say why it failed.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
