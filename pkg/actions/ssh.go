package actions

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// SSHRequest is what an ssh.open asks for.
type SSHRequest struct {
	Port int           // where sshd listens
	TTL  time.Duration // how long access stays open, whole seconds
	Keys []string      // support keys, authorized_keys lines, already validated
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
	Until time.Time // wall clock; zero when closed
	// HostKeys are the fingerprints (SHA256:...) of the host keys the
	// sshd presents, so support can check the host.
	HostKeys []string
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
