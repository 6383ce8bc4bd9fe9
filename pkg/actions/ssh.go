package actions

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
)

// Temporary support SSH access: an sshd of its own on a port of its own
// (2222), open for a TTL, accepting only the keys the portal pushed. Under
// systemd it is the unit pbx-agent-sshd@<ttl>.service (SystemdSSH); without,
// a supervised child process group (ProcessSSH).
//
// In tunnel mode (SSHRequest.Loopback) the same sshd listens on 127.0.0.1
// alone, on a privileged port (222), for the agent to relay the portal's
// tunnel to: pbx-agent-sshd-tunnel@<ttl>.service under systemd. A port
// below 1024 cannot be bound by a local user waiting to receive support's
// session in its place.

// SSHRequest is what an ssh.open asks for.
type SSHRequest struct {
	Port int           // where sshd listens
	TTL  time.Duration // how long access stays open, whole seconds
	Keys []string      // support keys, authorized_keys lines, already validated
	// Loopback listens on 127.0.0.1 alone, whatever the policy's addresses:
	// tunnel mode, where only the agent connects.
	Loopback bool
}

// LoopbackListen is where the tunnel-mode sshd listens.
const LoopbackListen = "127.0.0.1"

// SSHPolicy is who may log in to the support sshd and where it listens.
type SSHPolicy struct {
	User   string   // the one account let in (sshd's AllowUsers)
	Listen []string // IP addresses sshd binds, each with the request's port
}

// UnitSSHPolicy is what the shipped pbx-agent-sshd@.service allows: the
// production values, and the defaults of ssh.user and ssh.listen.
func UnitSSHPolicy() SSHPolicy {
	return SSHPolicy{User: "pbx-support", Listen: []string{"0.0.0.0", "::"}}
}

// userName is a POSIX account name: no sshd pattern characters (*, ?, !,
// @, commas, spaces) that would widen AllowUsers.
var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// Check refuses a policy that would let in more than one account or bind
// anything but IP addresses.
func (p SSHPolicy) Check() error {
	return errors.Join(CheckSSHUser(p.User), CheckSSHListen(p.Listen))
}

// CheckSSHUser refuses anything but one account name.
func CheckSSHUser(name string) error {
	if !userName.MatchString(name) {
		return fmt.Errorf("ssh user %q is not one account name (e.g. pbx-support)", name)
	}
	return nil
}

// CheckSSHListen refuses an empty list or anything but IP addresses.
func CheckSSHListen(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("no listen address: name at least one, e.g. 0.0.0.0")
	}
	for _, a := range addrs {
		if net.ParseIP(a) == nil {
			return fmt.Errorf("listen address %q is not an IP address (e.g. 192.0.2.10; 0.0.0.0 and :: for all)", a)
		}
	}
	return nil
}

// sshdOptions are the sshd options that confine support access, the same
// in both modes (the unit carries them literally): one account, no root
// unless that account is root, no forwarding of any kind (ssh -L, -D, -R
// would reach the site's network or the appliance's local services), no
// tunnel devices.
func (p SSHPolicy) sshdOptions() []string {
	root := "no"
	if p.User == "root" {
		root = "prohibit-password"
	}
	opts := []string{"AllowUsers=" + p.User, "PermitRootLogin=" + root,
		"DisableForwarding=yes", "PermitTunnel=no",
		"PasswordAuthentication=no", "KbdInteractiveAuthentication=no"}
	for _, a := range p.Listen {
		opts = append(opts, "ListenAddress="+a)
	}
	return opts
}

// forRequest is the policy that applies to req: in tunnel mode, the
// configured account on LoopbackListen alone.
func (p SSHPolicy) forRequest(req SSHRequest) SSHPolicy {
	if req.Loopback {
		p.Listen = []string{LoopbackListen}
	}
	return p
}

// dialAddr is where to check that sshd listens: the first address, its
// loopback when it is a wildcard.
func (p SSHPolicy) dialAddr(port int) string {
	ip := net.ParseIP(p.Listen[0])
	switch {
	case ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(port))
}

// MaxSSHTTL is the longest access Open grants, as the protocol allows.
const MaxSSHTTL = 24 * time.Hour

// checkTTL refuses a TTL outside 1 s to MaxSSHTTL. The caller converted
// it from signed seconds already; this is the last guard before a timer
// or a unit name is made from it.
func checkTTL(ttl time.Duration) error {
	if ttl < time.Second || ttl > MaxSSHTTL {
		return fmt.Errorf("ttl %v is outside 1s to %v", ttl, MaxSSHTTL)
	}
	return nil
}

// SSHState is the access as it stands.
type SSHState struct {
	Open  bool
	Port  int
	Until time.Time // on the executor's clock (the licence clock); zero when closed
	// HostKeys are the fingerprints (SHA256:...) of the host keys the
	// sshd presents, so support can check the host.
	HostKeys []string
	// Loopback: tunnel mode, sshd on 127.0.0.1 alone (SSHRequest.Loopback).
	Loopback bool
}

// AuthorizedKeysName is the file the agent writes the pushed keys to, in
// <runtime_dir>/ssh/.
const AuthorizedKeysName = "authorized_keys"

// writeAuthorizedKeys writes the keys for the access, 0600, in dir (made
// 0700 when missing). An empty list still writes the file: sshd then
// accepts no key, which is what the portal asked.
func writeAuthorizedKeys(dir string, keys []string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	var b strings.Builder
	b.WriteString("# Support keys pushed by the portal for temporary access (pbx-agent).\n")
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('\n')
	}
	path := filepath.Join(dir, AuthorizedKeysName)
	if err := atomicfile.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("writing the support keys: %w", err)
	}
	return path, nil
}

// Fingerprints returns the SHA256 fingerprints of the public keys in the
// given files, sorted; files that do not parse are skipped.
func Fingerprints(paths []string) []string {
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			continue
		}
		out = append(out, pub.Type()+" "+ssh.FingerprintSHA256(pub))
	}
	sort.Strings(out)
	return out
}

// ensureHostKey makes an Ed25519 host key at path (0600) unless one is
// there, with its .pub beside it, for an sshd that is not the system's.
func ensureHostKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "pbx-agent temporary support access")
	if err != nil {
		return fmt.Errorf("encoding the host key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}
