package integration

import (
	"crypto/ed25519"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// releaseAgent is the name, in binDir, of a pbx-agent linked as make deb
// links a release: with portal root keys embedded.
const releaseAgent = "pbx-agent-release"

// buildRelease links pbx-agent with the root keys of the keyring folder dir
// embedded, as make deb does with PORTAL_ROOTS.
func buildRelease(t *testing.T, dir string) {
	t.Helper()
	kr, err := license.LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	roots := map[string]ed25519.PublicKey{}
	for _, kid := range kr.KeyIDs() {
		pub, err := license.ParsePublicKeyPEM(mustReadFile(t, filepath.Join(dir, kid+".pem")))
		if err != nil {
			t.Fatal(err)
		}
		roots[kid] = pub
	}
	spec, err := license.FormatRoots(roots)
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-ldflags", "-X github.com/pbx-agent/pbx-agent/pkg/license.embeddedRoots="+spec,
		"-o", filepath.Join(binDir, releaseAgent), "../cmd/pbx-agent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the release agent: %v\n%s", err, out)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startRelease runs the appliance's daemon from the release binary.
func (a *appliance) startRelease() {
	a.t.Helper()
	a.proc = start(a.t, releaseAgent, "--config", a.config, "run", "--log-level", "debug")
	a.waitUp(a.cli)
}

func (a *appliance) releaseCLI(stdin string, args ...string) result {
	return run(a.t, stdin, releaseAgent, append([]string{"--config", a.config}, args...)...)
}

// The appliance's owner, root on it, points portal.url and portal.keyring
// at a portal of their own, with a key of their own, announced by
// themselves. A development build grants whatever that portal signs; a
// release build, whose roots are embedded, refuses it, and still trusts a
// vendor portal whose key an embedded root announced.
func TestReleaseBuildRefusesTheOwnersPortal(t *testing.T) {
	vendor := filepath.Join(t.TempDir(), "vendor-root")
	r := run(t, "", "pbx-portal-sim", "keys", "init", "--data", vendor)
	if r.code != 0 {
		t.Fatalf("keys init: %s", r.stderr)
	}
	rootKID := strings.TrimSpace(r.stdout)
	buildRelease(t, filepath.Join(vendor, "keyring"))

	// The vendor's portal signs with a key its root announced.
	vendorPortal := startPortal(t, filepath.Join(t.TempDir(), "vendor-portal"), freeAddr(t), "--interval", "1s")
	portalKID := strings.TrimSpace(run(t, "", "pbx-portal-sim", "keys", "init", "--data", vendorPortal.data).stdout)
	if r := run(t, "", "pbx-portal-sim", "keys", "announce", "--data", vendor,
		"--key", filepath.Join(vendorPortal.data, "keyring", portalKID+".pem"),
		"--out", filepath.Join(vendorPortal.data, "keyring", "announce.jws")); r.code != 0 {
		t.Fatalf("keys announce: %s", r.stderr)
	}

	// The owner's portal, its key in the keyring folder as a bare .pem,
	// and an announcement of it signed by itself.
	owners := startPortal(t, filepath.Join(t.TempDir(), "owner-portal"), freeAddr(t), "--interval", "1s")
	ownerKID := strings.TrimSpace(run(t, "", "pbx-portal-sim", "keys", "init", "--data", owners.data).stdout)
	if r := run(t, "", "pbx-portal-sim", "keys", "announce", "--data", owners.data,
		"--key", filepath.Join(owners.data, "keyring", ownerKID+".pem")); r.code != 0 {
		t.Fatalf("keys announce: %s", r.stderr)
	}
	ownersKey := owners.admin("pbx", "create", "--name", "free.example", "--model", "WPBX-VM", "--term", "lifetime",
		"--users", "uc-premium=1000")

	owned := newAppliance(t, "owned", owners, "1s")

	t.Run("a development build grants the owner's key", func(t *testing.T) {
		if r := owned.cli(ownersKey, "key", "inspect"); r.code != 0 {
			t.Fatalf("dev build key inspect: exit %d: %s", r.code, r.stderr)
		}
	})

	owned.startRelease()
	t.Run("the release CLI refuses it offline", func(t *testing.T) {
		r := owned.releaseCLI(ownersKey, "key", "inspect")
		if r.code != 2 || !strings.Contains(r.stderr, `portal key "`+ownerKID+`" is not in the embedded portal roots`) {
			t.Errorf("release key inspect: exit %d: %s", r.code, r.stderr)
		}
		r = owned.releaseCLI(ownersKey, "activate")
		if r.code != 2 || !strings.Contains(r.stderr, "untrusted portal key") {
			t.Errorf("release activate: exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("the release daemon refuses it past a development CLI", func(t *testing.T) {
		// The development CLI's offline check passes; the daemon decides.
		r := owned.cli(ownersKey, "activate")
		if r.code != 2 || !strings.Contains(r.stderr, `portal key "`+ownerKID+`" is not in the embedded portal roots`) {
			t.Errorf("activate through the daemon: exit %d: %s", r.code, r.stderr)
		}
		s := owned.status()
		if s.State != "unactivated" || s.License != nil {
			t.Errorf("after the owner's key: state %s, licence %+v", s.State, s.License)
		}
		tr := s.Trust
		if tr == nil || tr.Roots != "embedded" || len(tr.Keys) != 1 || tr.Keys[0].KeyID != rootKID || tr.Keys[0].Role != "root" {
			t.Fatalf("trust = %+v, want the embedded root alone", tr)
		}
		for _, file := range []string{ownerKID + ".pem", "announce.jws"} {
			if !slices.ContainsFunc(tr.Ignored, func(s string) bool { return strings.Contains(s, file) }) {
				t.Errorf("trust.ignored does not name %s: %q", file, tr.Ignored)
			}
		}
		if !strings.Contains(owned.proc.logs(), "portal keyring: not trusted") {
			t.Error("the daemon logged no warning about the keyring files it ignored")
		}
		if strings.Contains(owned.proc.logs(), license.DevelopmentBuildWarning) {
			t.Error("the release build says it is a development build")
		}
	})

	t.Run("the vendor's announced portal is trusted", func(t *testing.T) {
		vendorKey := vendorPortal.admin("pbx", "create", "--name", "acme.example", "--model", "WPBX-VM", "--term", "monthly",
			"--users", "uc-premium=10")
		genuine := newAppliance(t, "genuine", vendorPortal, "1s")
		genuine.startRelease()
		if r := genuine.releaseCLI(vendorKey, "activate"); r.code != 0 {
			t.Fatalf("activate a vendor key: exit %d: %s", r.code, r.stderr)
		}
		s := genuine.waitState("active", 10*time.Second)
		if s.License == nil || s.License.Profiles["uc-premium"].Licensed != 10 {
			t.Errorf("licence = %+v", s.License)
		}
		var roles []string
		for _, k := range s.Trust.Keys {
			roles = append(roles, k.KeyID+"="+k.Role+"/"+k.AnnouncedBy)
		}
		if want := []string{portalKID + "=announced/" + rootKID, rootKID + "=root/"}; !slices.Equal(roles, want) &&
			!slices.Equal(roles, []string{want[1], want[0]}) {
			t.Errorf("trust keys = %v, want %v", roles, want)
		}
		if strings.Contains(genuine.proc.logs(), noAnnouncementLog) {
			t.Error("the release build says no announcement is installed beside one")
		}
	})

	t.Run("a fresh install is told to install the announcements", func(t *testing.T) {
		// The package installs the keyring folder empty: nothing ships
		// the announcements, which the vendor provides.
		data := t.TempDir()
		if err := os.Mkdir(filepath.Join(data, "keyring"), 0o755); err != nil {
			t.Fatal(err)
		}
		fresh := newAppliance(t, "fresh", &portal{t: t, addr: vendorPortal.addr, data: data}, "1s")
		fresh.startRelease()
		logs := fresh.proc.logs()
		if !strings.Contains(logs, noAnnouncementLog) || !strings.Contains(logs, "copy the key announcement files (*.jws) the vendor provides to "+filepath.Join(data, "keyring")) {
			t.Errorf("a release build without announcements does not say what to install where:\n%s", logs)
		}
	})
}

// noAnnouncementLog is how a release build says it trusts no announced key.
const noAnnouncementLog = "no portal key announcement installed"
