package actions

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// The stand-in WMS's versions: v1 installed first, v2 a good upgrade, v3 a
// bad one (its health file says "broken"), v4 never published.
const (
	wmsV1 = "7.02.20250609.1"
	wmsV2 = "7.02.20250701.2"
	wmsV3 = "7.02.20250801.3"
	wmsV4 = "7.02.20250901.4"
)

// wmsRepo is a signed flat apt repository of the stand-in WMS, made with
// dpkg-deb and gpg: what the helper meets in production, on a file: URL.
type wmsRepo struct {
	dir, keyring string
	debs         map[string]string // version → .deb
}

func requireDpkg(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: installing packages into a dpkg root needs root (CI runs as root)")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "apt-get", "apt-mark", "gpg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s is missing (apt-get install dpkg apt gnupg)", tool)
		}
	}
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// buildWMSDeb builds the stand-in at version: a health file, a conffile, and
// a postinst that says what it configures.
func buildWMSDeb(t *testing.T, dir, version, health string) string {
	t.Helper()
	src := filepath.Join(dir, "src-"+version)
	for _, d := range []string{"DEBIAN", "usr/share/wms", "etc/wms"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"DEBIAN/control": fmt.Sprintf("Package: wms\nVersion: %s\nArchitecture: all\nMaintainer: Test <test@example.com>\n"+
			"Description: stand-in for the PBX's management software\n", version),
		"DEBIAN/conffiles":      "/etc/wms/wms.conf\n",
		"DEBIAN/postinst":       "#!/bin/sh\nset -e\necho \"wms postinst $1 (from ${2:-nothing})\"\n" + blockIn("postinst"),
		"DEBIAN/preinst":        "#!/bin/sh\nset -e\n" + blockIn("preinst"),
		"DEBIAN/postrm":         "#!/bin/sh\nset -e\n" + blockIn("postrm"),
		"usr/share/wms/health":  health + "\n",
		"usr/share/wms/VERSION": version + "\n",
		"etc/wms/wms.conf":      "# shipped by " + version + "\nlisten = 5060\n",
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "DEBIAN/p") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, "wms_"+version+"_all.deb")
	run(t, nil, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", src, deb)
	return deb
}

// openTempDir is a t.TempDir that others may enter, as apt's sandbox user
// _apt must to read a repository, a keyring and a root's lists.
func openTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newWMSRepo(t *testing.T) *wmsRepo {
	t.Helper()
	base := openTempDir(t)
	r := &wmsRepo{dir: filepath.Join(base, "repo"), keyring: filepath.Join(base, "wms-archive-keyring.gpg"), debs: map[string]string{}}
	if err := os.Mkdir(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var packages bytes.Buffer
	for _, v := range []struct{ version, health string }{{wmsV1, "ok"}, {wmsV2, "ok"}, {wmsV3, "broken"}} {
		deb := buildWMSDeb(t, r.dir, v.version, v.health)
		r.debs[v.version] = deb
		data, err := os.ReadFile(deb)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		packages.WriteString(run(t, nil, "dpkg-deb", "--field", deb))
		fmt.Fprintf(&packages, "Filename: ./%s\nSize: %d\nSHA256: %s\n\n", filepath.Base(deb), len(data), hex.EncodeToString(sum[:]))
	}
	if err := os.WriteFile(filepath.Join(r.dir, "Packages"), packages.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(packages.Bytes())
	release := fmt.Sprintf("Origin: pbx-agent tests\nLabel: wms\nDate: %s\nSHA256:\n %s %d Packages\n",
		time.Now().UTC().Format(time.RFC1123), hex.EncodeToString(sum[:]), packages.Len())
	if err := os.WriteFile(filepath.Join(r.dir, "Release"), []byte(release), 0o644); err != nil {
		t.Fatal(err)
	}
	// A throwaway signing key; apt checks InRelease against the keyring
	// named in Signed-By.
	gnupg := []string{"GNUPGHOME=" + filepath.Join(base, "gnupg")}
	if err := os.Mkdir(filepath.Join(base, "gnupg"), 0o700); err != nil {
		t.Fatal(err)
	}
	gpg := []string{"--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""}
	run(t, gnupg, "gpg", append(gpg, "--quick-gen-key", "WMS test archive <wms@example.com>", "ed25519", "sign", "never")...)
	run(t, gnupg, "gpg", append(gpg, "--output", r.keyring, "--export")...)
	run(t, gnupg, "gpg", append(gpg, "--output", filepath.Join(r.dir, "InRelease"), "--clearsign", filepath.Join(r.dir, "Release"))...)
	t.Cleanup(func() { exec.Command("gpgconf", "--kill", "all").Run() })
	return r
}

// newDpkgRoot makes an empty system for dpkg and apt under a folder.
func newDpkgRoot(t *testing.T) string {
	t.Helper()
	root := openTempDir(t)
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log",
		"etc/apt/sources.list.d", "etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/trusted.gpg.d",
		"var/cache/apt/archives/partial", "var/lib/apt/lists/partial"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func dpkgIn(t *testing.T, root string, args ...string) string {
	t.Helper()
	return run(t, []string{"DEBIAN_FRONTEND=noninteractive"}, "dpkg",
		append([]string{"--root=" + root, "--log=" + filepath.Join(root, "var/log/dpkg.log"), "--force-script-chrootless"}, args...)...)
}

// status is the package's dpkg status and version under root, e.g.
// "hi 7.02.20250609.1" (held, installed).
func status(t *testing.T, root string) string {
	t.Helper()
	out, _ := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"),
		"--show", "--showformat=${db:Status-Abbrev}${Version}", "wms").Output()
	return strings.Join(strings.Fields(string(out)), " ")
}

type wmsCase struct {
	repo    *wmsRepo
	root    string
	cfg     WMSUpgradeConfig
	journal bytes.Buffer
}

func newWMSCase(t *testing.T, repo *wmsRepo) *wmsCase {
	t.Helper()
	c := &wmsCase{repo: repo, root: newDpkgRoot(t)}
	c.cfg = WMSUpgradeConfig{
		Package: "wms", RepoURL: "file://" + repo.dir, RepoSuite: "./", Keyring: repo.keyring,
		HealthCommand:  []string{"grep", "-qx", "ok", filepath.Join(c.root, "usr/share/wms/health")},
		HealthTimeout:  time.Second,
		HealthInterval: 100 * time.Millisecond,
		AptLockTimeout: 10 * time.Second, InstallTimeout: 2 * time.Minute,
		RuntimeDir: t.TempDir(), ResultDir: filepath.Join(t.TempDir(), "results"), ResultGID: -1,
		Root: c.root, Output: &c.journal,
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the helper's output:\n%s", c.journal.String())
		}
	})
	return c
}

func (c *wmsCase) request(t *testing.T, version string) {
	t.Helper()
	if err := wms.WriteRequest(c.cfg.RuntimeDir, wms.Request{Version: version, Repository: "rel70", CommandID: "cmd-1"}); err != nil {
		t.Fatal(err)
	}
}

func (c *wmsCase) upgrade(t *testing.T, version string) (*wms.Result, error) {
	t.Helper()
	res, err := UpgradeWMS(context.Background(), c.cfg, version, nil)
	if res == nil {
		t.Fatalf("no result: %v", err)
	}
	// What the agent reads back is what the helper returned.
	read, found, rerr := wms.ReadResult(c.cfg.ResultDir, version)
	if rerr != nil || !found {
		t.Fatalf("reading the result file: %v, found %v", rerr, found)
	}
	if read.Outcome != res.Outcome || read.Installed != res.Installed || !read.Done() {
		t.Errorf("result file %+v; returned %+v", read, res)
	}
	return res, err
}

func TestUpgradeWMSWithDpkg(t *testing.T) {
	requireDpkg(t)
	repo := newWMSRepo(t)

	t.Run("a good upgrade", func(t *testing.T) {
		c := newWMSCase(t, repo)
		dpkgIn(t, c.root, "--install", repo.debs[wmsV1])
		// An admin's change to a conffile survives (--force-confold).
		conf := filepath.Join(c.root, "etc/wms/wms.conf")
		if err := os.WriteFile(conf, []byte("listen = 5080\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.request(t, wmsV2)
		c.cfg.BackupHook = []string{"sh", "-c", `echo "backing up $WMS_VERSION_FROM before $WMS_VERSION_TO"`}
		c.cfg.BackupTimeout = time.Minute
		res, err := c.upgrade(t, wmsV2)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(c.journal.String(), "backing up "+wmsV1+" before "+wmsV2) {
			t.Error("the backup hook did not run with the versions")
		}
		if res.Outcome != wms.Upgraded || res.Previous != wmsV1 || res.Installed != wmsV2 || !res.Health.OK ||
			res.RolledBack || !res.Held || res.Recovered || res.CommandID != "cmd-1" || res.Repository != "rel70" {
			t.Errorf("result %+v", res)
		}
		if s := status(t, c.root); s != "hi "+wmsV2 {
			t.Errorf("dpkg-query: %q, want held and installed at %s", s, wmsV2)
		}
		if data, _ := os.ReadFile(conf); string(data) != "listen = 5080\n" {
			t.Errorf("the admin's conffile was replaced: %q", data)
		}
		if !strings.Contains(strings.Join(res.LogTail, "\n"), "wms postinst configure (from "+wmsV1+")") {
			t.Errorf("the log tail lacks the package's own output: %q", res.LogTail)
		}
		// The source is the one configured, signed.
		src, err := os.ReadFile(filepath.Join(c.root, "etc/apt", WMSSourceFile))
		if err != nil || !strings.Contains(string(src), "Signed-By: "+repo.keyring+"\n") || !strings.Contains(string(src), "URIs: file://"+repo.dir+"\n") {
			t.Errorf("apt source %q (%v)", src, err)
		}
		// The new version is kept for the next rollback, the old one dropped.
		kept, _ := filepath.Glob(filepath.Join(c.cfg.ResultDir, "rollback", "*.deb"))
		if len(kept) != 1 || filepath.Base(kept[0]) != "wms_"+wmsV2+"_all.deb" {
			t.Errorf("kept %v", kept)
		}

		// The same again: nothing to do.
		res, err = c.upgrade(t, wmsV2)
		if err != nil || res.Outcome != wms.Unchanged {
			t.Errorf("again: %v, %+v", err, res)
		}
		// Backwards: refused.
		c.request(t, wmsV1)
		if res, err = c.upgrade(t, wmsV1); err == nil || res.Outcome != wms.Failed || !strings.Contains(err.Error(), "never downgrades") {
			t.Errorf("a downgrade: %v, %+v", err, res)
		}
	})

	t.Run("a bad upgrade is rolled back and held", func(t *testing.T) {
		c := newWMSCase(t, repo)
		dpkgIn(t, c.root, "--install", repo.debs[wmsV1])
		c.request(t, wmsV3)
		res, err := c.upgrade(t, wmsV3)
		if err == nil || !strings.Contains(err.Error(), "unhealthy after the upgrade to "+wmsV3) || !strings.Contains(err.Error(), "rolled back to "+wmsV1) {
			t.Errorf("error %v", err)
		}
		if res.Outcome != wms.RolledBack || !res.RolledBack || res.Health == nil || res.Health.OK ||
			res.RollbackHealth == nil || !res.RollbackHealth.OK || res.Installed != wmsV1 || !res.Held {
			t.Errorf("result %+v health %+v rollback health %+v", res, res.Health, res.RollbackHealth)
		}
		if s := status(t, c.root); s != "hi "+wmsV1 {
			t.Errorf("dpkg-query: %q, want held and installed at %s", s, wmsV1)
		}
		if data, _ := os.ReadFile(filepath.Join(c.root, "usr/share/wms/VERSION")); string(data) != wmsV1+"\n" {
			t.Errorf("the files are of %q", data)
		}
	})

	t.Run("an interrupted dpkg is recovered first", func(t *testing.T) {
		c := newWMSCase(t, repo)
		// Unpacked, never configured: what a dpkg killed mid-run leaves,
		// and what makes apt refuse to work.
		dpkgIn(t, c.root, "--unpack", repo.debs[wmsV1])
		if s := status(t, c.root); s != "iU "+wmsV1 {
			t.Fatalf("set-up: %q", s)
		}
		c.request(t, wmsV2)
		res, err := c.upgrade(t, wmsV2)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Recovered || res.Outcome != wms.Upgraded || res.Previous != wmsV1 {
			t.Errorf("result %+v", res)
		}
		if s := status(t, c.root); s != "hi "+wmsV2 {
			t.Errorf("dpkg-query: %q", s)
		}
		if !strings.Contains(c.journal.String(), "--configure -a") {
			t.Errorf("no dpkg --configure -a in the log")
		}
	})

	t.Run("a version the repository lacks: nothing lost", func(t *testing.T) {
		c := newWMSCase(t, repo)
		dpkgIn(t, c.root, "--install", repo.debs[wmsV1])
		c.request(t, wmsV4)
		res, err := c.upgrade(t, wmsV4)
		if err == nil || res.OK() || res.Installed != wmsV1 {
			t.Errorf("%v, %+v", err, res)
		}
		if s := status(t, c.root); s != "hi "+wmsV1 {
			t.Errorf("dpkg-query: %q", s)
		}
	})

	t.Run("refused before anything changes", func(t *testing.T) {
		for _, tc := range []struct {
			name, err string
			setup     func(c *wmsCase)
		}{
			{"no request", "no such file", func(c *wmsCase) {}},
			{"a request for another version", `for version "` + wmsV3 + `"`, func(c *wmsCase) {
				c.request(t, wmsV3)
				os.Rename(wms.RequestPath(c.cfg.RuntimeDir, wmsV3), wms.RequestPath(c.cfg.RuntimeDir, wmsV2))
			}},
			{"the window closed", "the maintenance window closed", func(c *wmsCase) {
				end := time.Now().Add(-time.Minute)
				wms.WriteRequest(c.cfg.RuntimeDir, wms.Request{Version: wmsV2, Repository: "rel70", Window: &wms.Window{Start: end.Add(-time.Hour), End: end}})
			}},
			// Open on this machine's clock for another hour, but the
			// licence clock the agent follows is 2 hours ahead of it.
			{"the window closed on the licence clock", "the maintenance window closed", func(c *wmsCase) {
				end := time.Now().Add(time.Hour)
				wms.WriteRequest(c.cfg.RuntimeDir, wms.Request{Version: wmsV2, Repository: "rel70", Window: &wms.Window{Start: end.Add(-2 * time.Hour), End: end},
					LicenceAheadMS: (2 * time.Hour).Milliseconds()})
			}},
			{"the backup fails", "the backup hook failed, nothing changed", func(c *wmsCase) {
				c.request(t, wmsV2)
				c.cfg.BackupHook = []string{"sh", "-c", `echo "backing up $WMS_VERSION_FROM before $WMS_VERSION_TO"; exit 3`}
				c.cfg.BackupTimeout = time.Minute
			}},
			{"no repository", "upgrade.repo_url is empty", func(c *wmsCase) {
				c.request(t, wmsV2)
				c.cfg.RepoURL = ""
			}},
			{"no keyring", "upgrade.keyring", func(c *wmsCase) {
				c.request(t, wmsV2)
				c.cfg.Keyring = "/nonexistent/keyring.gpg"
			}},
			{"a keyring _apt cannot read", "apt reads it as the user _apt", func(c *wmsCase) {
				c.request(t, wmsV2)
				c.cfg.Keyring = filepath.Join(t.TempDir(), "keyring.gpg")
				data, _ := os.ReadFile(repo.keyring)
				os.WriteFile(c.cfg.Keyring, data, 0o640)
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := newWMSCase(t, repo)
				dpkgIn(t, c.root, "--install", repo.debs[wmsV1])
				tc.setup(c)
				res, err := c.upgrade(t, wmsV2)
				if err == nil || !strings.Contains(err.Error(), tc.err) || res.Outcome != wms.Failed || res.Error == "" {
					t.Errorf("%v; result %+v", err, res)
				}
				// The agent matches a result with its command by id.
				if req, rerr := wms.ReadRequest(c.cfg.RuntimeDir, wmsV2); rerr == nil && res != nil && res.CommandID != req.CommandID {
					t.Errorf("result for command %q; want the request's %q", res.CommandID, req.CommandID)
				}
				if s := status(t, c.root); s != "hi "+wmsV1 && s != "ii "+wmsV1 {
					t.Errorf("dpkg-query: %q", s)
				}
				// Its times are on the licence clock the request gives.
				var ahead time.Duration
				if req, rerr := wms.ReadRequest(c.cfg.RuntimeDir, wmsV2); rerr == nil {
					ahead = time.Duration(req.LicenceAheadMS) * time.Millisecond
				}
				if res != nil {
					for what, at := range map[string]time.Time{"started": res.Started, "finished": res.Finished} {
						if d := at.Sub(time.Now().Add(ahead)); d < -time.Minute || d > time.Minute {
							t.Errorf("%s at %v: %v off the licence clock (%v ahead of this machine's)", what, at, d, ahead)
						}
					}
				}
			})
		}
		t.Run("another upgrade running", func(t *testing.T) {
			c := newWMSCase(t, repo)
			c.request(t, wmsV2)
			if err := os.MkdirAll(c.cfg.ResultDir, 0o750); err != nil {
				t.Fatal(err)
			}
			unlock, err := lockFile(filepath.Join(c.cfg.ResultDir, ".lock"))
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			if res, err := c.upgrade(t, wmsV2); err == nil || !strings.Contains(err.Error(), "another WMS upgrade") || res.Outcome != wms.Failed {
				t.Errorf("%v; %+v", err, res)
			}
		})
		t.Run("not installed", func(t *testing.T) {
			c := newWMSCase(t, repo)
			c.request(t, wmsV2)
			if res, err := c.upgrade(t, wmsV2); err == nil || !strings.Contains(err.Error(), "wms is not installed") || res.Held {
				t.Errorf("%v; %+v", err, res)
			}
		})
	})
}

func TestWMSSource(t *testing.T) {
	cfg := WMSUpgradeConfig{RepoURL: "https://deb.example.com/wms", RepoComponents: []string{"main"}, Keyring: "/etc/pbx-agent/wms.gpg"}
	src, uri, err := WMSSource(cfg, "rel70")
	if err != nil {
		t.Fatal(err)
	}
	if uri != "https://deb.example.com/wms" || !strings.Contains(src, "Suites: rel70\nComponents: main\nSigned-By: /etc/pbx-agent/wms.gpg\n") {
		t.Errorf("%s", src)
	}
	cfg.RepoURL = "https://deb.example.com/{repository}"
	if _, uri, _ := WMSSource(cfg, "rel60"); uri != "https://deb.example.com/rel60" {
		t.Errorf("template: %s", uri)
	}
	for _, tc := range []struct {
		name string
		edit func(*WMSUpgradeConfig)
		repo string
		err  string
	}{
		{"bad repository", func(*WMSUpgradeConfig) {}, "rel70\nSigned-By: /tmp/x", "rel and two digits"},
		{"ftp", func(c *WMSUpgradeConfig) { c.RepoURL = "ftp://x/wms" }, "rel70", "https, http or file"},
		{"credentials", func(c *WMSUpgradeConfig) { c.RepoURL = "https://u:p@x/wms" }, "rel70", "auth.conf.d"},
		{"space", func(c *WMSUpgradeConfig) { c.RepoURL = "https://x/wms [trusted=yes]" }, "rel70", ""},
		{"flat with components", func(c *WMSUpgradeConfig) { c.RepoSuite = "./" }, "rel70", "flat repository"},
		{"no components", func(c *WMSUpgradeConfig) { c.RepoComponents = nil }, "rel70", "name at least one"},
		{"keyring with a space", func(c *WMSUpgradeConfig) { c.Keyring = "/etc/a b.gpg" }, "rel70", "without spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			tc.edit(&c)
			if _, _, err := WMSSource(c, tc.repo); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("WMSSource = %v; want %q", err, tc.err)
			}
		})
	}
}

func TestCheckHealth(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 { // starting up
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var heard []string
	h := CheckHealth(ctx, srv.URL, nil, 10*time.Millisecond, func(s string) { heard = append(heard, s) })
	if !h.OK || calls.Load() != 3 || len(heard) != 2 || !strings.Contains(heard[0], "503") {
		t.Errorf("health %+v after %d calls, heard %q", h, calls.Load(), heard)
	}

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer down.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if h := CheckHealth(ctx, down.URL, nil, 10*time.Millisecond, nil); h.OK || !strings.Contains(h.Detail, "500 Internal Server Error") {
		t.Errorf("a failing URL: %+v", h)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if h := CheckHealth(ctx, srv.URL, []string{"sh", "-c", "echo wms not ready >&2; exit 1"}, 10*time.Millisecond, nil); h.OK ||
		!strings.Contains(h.Detail, "wms not ready") {
		t.Errorf("a failing command with a good URL: %+v", h)
	}
}
