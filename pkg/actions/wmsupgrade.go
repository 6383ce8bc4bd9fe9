package actions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
	"github.com/pbx-agent/pbx-agent/pkg/proc"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// WMSSourceFile is the apt source the upgrade helper writes, under /etc/apt.
const WMSSourceFile = "sources.list.d/pbx-agent-wms.sources"

// WMSUpgradeConfig is what the root helper needs: the `upgrade` section of
// the agent's configuration, and the agent's runtime folder, where the
// request is.
type WMSUpgradeConfig struct {
	Package string // the WMS's Debian package
	// RepoURL, RepoSuite and RepoComponents make the apt source; {repository}
	// in the URL or the suite is the request's repository (relNN). A suite
	// ending in "/" is a flat repository, without components.
	RepoURL        string
	RepoSuite      string
	RepoComponents []string
	Keyring        string // the source's Signed-By: the repository's public keys

	BackupHook    []string // run before anything changes; no shell
	BackupTimeout time.Duration

	HealthURL      string   // must answer 2xx
	HealthCommand  []string // must exit 0; no shell
	HealthTimeout  time.Duration
	HealthInterval time.Duration // between attempts; zero: 2 s

	AptLockTimeout time.Duration // DPkg::Lock::Timeout
	InstallTimeout time.Duration // bounds each apt or dpkg run

	RuntimeDir string // the agent's: the request is under it
	ResultDir  string // results, the lock and the kept .deb
	ResultGID  int    // group of the result files (the agent's); -1 leaves it

	// Root, when not "" or "/", is a folder holding a whole dpkg database
	// that stands for the system: dpkg runs with --root, apt with Dir set
	// to it. For tests and image builds; the package's unit never sets it.
	Root string

	Output io.Writer // the commands' output, as it comes (the journal); nil discards

	// beforeStep, when set, is called after a step is recorded and before
	// it starts: the tests' kill point.
	beforeStep func(wms.Step)
}

func (c *WMSUpgradeConfig) root() string {
	if c.Root == "" {
		return "/"
	}
	return c.Root
}

func (c *WMSUpgradeConfig) fakeRoot() bool { return c.Root != "" && c.Root != "/" }

// Validate names the first setting the helper cannot work with.
func (c *WMSUpgradeConfig) Validate() error {
	switch {
	case !ValidPackageName(c.Package):
		return fmt.Errorf("upgrade.package %q is not a Debian package name", c.Package)
	case c.RepoURL == "":
		return errors.New("upgrade.repo_url is empty: set the WMS repository's URL, e.g. https://deb.example.com/wms")
	case c.Keyring == "" || !filepath.IsAbs(c.Keyring):
		return fmt.Errorf("upgrade.keyring %q: want the absolute path of the repository's keyring (apt's Signed-By)", c.Keyring)
	case c.RuntimeDir == "" || c.ResultDir == "":
		return errors.New("the runtime and result folders are needed")
	case c.HealthTimeout <= 0 || c.AptLockTimeout <= 0 || c.InstallTimeout <= 0:
		return errors.New("upgrade.health_timeout, upgrade.apt_lock_timeout and upgrade.install_timeout must be positive")
	case len(c.BackupHook) > 0 && c.BackupTimeout <= 0:
		return errors.New("upgrade.backup_timeout must be positive")
	}
	if _, _, err := WMSSource(*c, "rel00"); err != nil {
		return err
	}
	return nil
}

// ValidPackageName reports whether s is a Debian package name (Policy 5.6.1).
func ValidPackageName(s string) bool {
	if len(s) < 2 || len(s) > 100 || !isLowerAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// WMSSource returns the apt source (deb822) for repository, and its URL.
func WMSSource(c WMSUpgradeConfig, repository string) (source, uri string, err error) {
	if _, err := wms.ParseRepository(repository); err != nil {
		return "", "", err
	}
	uri = strings.ReplaceAll(c.RepoURL, "{repository}", repository)
	suite := c.RepoSuite
	if suite == "" {
		suite = "{repository}"
	}
	suite = strings.ReplaceAll(suite, "{repository}", repository)
	u, err := url.Parse(uri)
	switch {
	case err != nil:
		return "", "", fmt.Errorf("upgrade.repo_url %q: %v", c.RepoURL, err)
	case u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file":
		return "", "", fmt.Errorf("upgrade.repo_url %q: want an https, http or file URL", c.RepoURL)
	case strings.ContainsAny(uri, " \t\r\n"):
		return "", "", fmt.Errorf("upgrade.repo_url %q: no spaces or line breaks", c.RepoURL)
	case u.User != nil:
		return "", "", fmt.Errorf("upgrade.repo_url %q: put credentials in /etc/apt/auth.conf.d, not in the URL", c.RepoURL)
	}
	if !sourceWord(suite) {
		return "", "", fmt.Errorf("upgrade.repo_suite %q: one word, e.g. {repository}, or ./ for a flat repository", c.RepoSuite)
	}
	flat := strings.HasSuffix(suite, "/")
	switch {
	case flat && len(c.RepoComponents) > 0:
		return "", "", fmt.Errorf("upgrade.repo_components %v: a flat repository (suite %q) has none", c.RepoComponents, suite)
	case !flat && len(c.RepoComponents) == 0:
		return "", "", errors.New("upgrade.repo_components is empty: name at least one, e.g. [main]")
	}
	for _, comp := range c.RepoComponents {
		if !sourceWord(comp) || strings.Contains(comp, "{") {
			return "", "", fmt.Errorf("upgrade.repo_components: %q is not a component name", comp)
		}
	}
	if !sourceWord(c.Keyring) {
		return "", "", fmt.Errorf("upgrade.keyring %q: a path without spaces", c.Keyring)
	}
	var b strings.Builder
	b.WriteString("# Written by pbx-agent's WMS upgrade helper from the upgrade section of\n" +
		"# /etc/pbx-agent/agent.yaml, at every upgrade: edit that file, not this one.\n")
	fmt.Fprintf(&b, "Types: deb\nURIs: %s\nSuites: %s\n", uri, suite)
	if !flat {
		fmt.Fprintf(&b, "Components: %s\n", strings.Join(c.RepoComponents, " "))
	}
	fmt.Fprintf(&b, "Signed-By: %s\n", c.Keyring)
	return b.String(), uri, nil
}

// sourceWord reports whether s can stand as one value in a deb822 field.
func sourceWord(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\r\n#") && !strings.HasPrefix(s, "-")
}

// UpgradeWMS is the root helper's procedure (`pbx-agent helper wms-upgrade
// VERSION`, run by pbx-agent-wms-upgrade@VERSION.service): it reads the
// agent's request for version, and then
//
//  1. finishes an interrupted dpkg run (dpkg --configure -a);
//  2. writes the apt source of the requested repository and updates it;
//  3. keeps the installed version's .deb, to roll back to;
//  4. runs the backup hook;
//  5. installs the version with apt-get, non-interactively, waiting for
//     the dpkg lock and keeping changed configuration files;
//  6. runs the health check;
//  7. on failure, installs the kept .deb again (--allow-downgrades) and
//     runs the health check again;
//  8. holds the package, so that nothing but this helper moves it.
//
// It writes the result under cfg.ResultDir as it goes (outcome "running")
// and at the end, and returns it. The error is non-nil when the result is
// not a success, or could not be written.
func UpgradeWMS(ctx context.Context, cfg WMSUpgradeConfig, version string, log *slog.Logger) (*wms.Result, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := wms.ParseVersion(version); err != nil {
		return nil, err
	}
	if cfg.ResultDir == "" {
		return nil, errors.New("no result folder")
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 2 * time.Second
	}
	if err := os.MkdirAll(cfg.ResultDir, 0o750); err != nil {
		return nil, err
	}
	if cfg.ResultGID >= 0 { // the agent's group reads the results, nobody else
		if err := os.Chown(cfg.ResultDir, -1, cfg.ResultGID); err != nil {
			return nil, err
		}
		if err := os.Chmod(cfg.ResultDir, 0o750); err != nil {
			return nil, err
		}
	}
	u := &upgrade{cfg: cfg, log: log, version: version, tail: &tailBuffer{}}
	if req, err := wms.ReadRequest(cfg.RuntimeDir, version); err == nil {
		// The result's times are on the licence clock, as the agent
		// reports them; run reads the request again and refuses a bad one.
		u.licenceNow = req.LicenceNow
	}
	u.out = io.MultiWriter(u.tail, orDiscard(cfg.Output))
	u.res = &wms.Result{Version: version, Outcome: wms.Running, Started: u.now()}

	unlock, err := lockFile(filepath.Join(cfg.ResultDir, ".lock"))
	if err != nil {
		// Another upgrade runs: say so in this version's result, unless
		// that result is an interrupted upgrade's, which a later start
		// must still find to resume it.
		if prev, found, _ := wms.ReadResult(cfg.ResultDir, version); found && prev.Resumable() {
			return u.res, err
		}
		u.res.Outcome, u.res.Error, u.res.Finished = wms.Failed, err.Error(), u.now()
		return u.res, errors.Join(err, u.save())
	}
	defer unlock()
	// Read under the lock: a result left unfinished is resumed.
	prev, found, rerr := wms.ReadResult(cfg.ResultDir, version)
	if rerr != nil {
		log.Warn("the previous result is unreadable; starting afresh", "err", rerr)
	}
	if cfg.fakeRoot() {
		dir, err := os.MkdirTemp("", "pbx-agent-apt-*")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		u.aptConf = filepath.Join(dir, "apt.conf")
		if err := os.WriteFile(u.aptConf, []byte(fakeRootAptConf(cfg.root())), 0o644); err != nil {
			return nil, err
		}
	}
	if found && prev.Resumable() {
		err = u.resume(ctx, prev)
	} else {
		err = u.run(ctx)
	}
	// The result is written even when the helper is being stopped.
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		u.res.Error = err.Error()
		u.logf("error: %v", err)
		if u.res.Outcome == wms.Running {
			u.res.Outcome = wms.Failed
		}
	}
	u.hold(ctx)
	u.res.Finished = u.now()
	if werr := u.save(); werr != nil {
		return u.res, errors.Join(err, werr)
	}
	if u.res.Outcome == wms.Upgraded {
		// Only once the result is final: until then a resumed helper
		// may still need the previous version's .deb.
		u.keepNew(ctx)
	}
	if err == nil && !u.res.OK() {
		err = errors.New(u.res.Error)
	}
	return u.res, err
}

type upgrade struct {
	cfg     WMSUpgradeConfig
	log     *slog.Logger
	version string
	res     *wms.Result
	tail    *tailBuffer
	out     io.Writer
	aptConf string // APT_CONFIG for a fake root
	// licenceNow is the request's offset of the licence clock from this
	// machine's (Request.LicenceNow); nil before a request is read.
	licenceNow func(machine time.Time) time.Time
}

// now is the licence clock: this machine's clock moved by the offset the
// agent wrote in the request. The helper has no licence clock of its own.
func (u *upgrade) now() time.Time {
	if u.licenceNow == nil {
		return time.Now().UTC()
	}
	return u.licenceNow(time.Now()).UTC()
}

func (u *upgrade) save() error {
	u.res.LogTail = wms.Tail(u.tail.String())
	return wms.WriteResult(u.cfg.ResultDir, u.res, u.cfg.ResultGID)
}

// step records that step s begins, durably, before it begins: a helper
// started again after a power loss or a kill resumes from it.
func (u *upgrade) step(s wms.Step) error {
	u.res.Step, u.res.StepStarted = s, u.now()
	if err := u.save(); err != nil {
		return fmt.Errorf("recording the step %s: %w", s, err)
	}
	if u.cfg.beforeStep != nil {
		u.cfg.beforeStep(s)
	}
	return nil
}

func (u *upgrade) logf(format string, args ...any) {
	fmt.Fprintf(u.out, "pbx-agent: "+format+"\n", args...)
}

// run does the work; an error it returns before anything changed leaves
// the outcome Failed, after a rollback RolledBack.
func (u *upgrade) run(ctx context.Context) error {
	// The request is read first, so that even a configuration problem's
	// result names its command: the agent reports it, not a helper that
	// "stopped without a result".
	cfgErr := u.cfg.Validate()
	req, err := wms.ReadRequest(u.cfg.RuntimeDir, u.version)
	if err == nil {
		u.res.Repository, u.res.CommandID = req.Repository, req.CommandID
	}
	switch {
	case cfgErr != nil:
		return fmt.Errorf("config %w", cfgErr)
	case err != nil:
		return err
	}
	if req.Window != nil {
		// The window is on the licence clock, which the agent's offset
		// gives from this machine's.
		if pos, _ := req.Window.At(u.now()); pos == wms.After {
			return fmt.Errorf("the maintenance window closed at %s: nothing done", req.Window.End.UTC().Format(time.RFC3339))
		}
	}
	u.logf("upgrading %s to %s from %s", u.cfg.Package, u.version, req.Repository)

	// 1. An interrupted dpkg run blocks apt: finish it first.
	if err := u.step(wms.StepPrepare); err != nil {
		return err
	}
	if err := u.recover(ctx); err != nil {
		return err
	}
	previous, err := u.installed(ctx)
	if err != nil {
		return err
	}
	if previous == "" {
		return fmt.Errorf("%s is not installed: there is nothing to upgrade", u.cfg.Package)
	}
	u.res.Previous, u.res.Installed = previous, previous
	target := wms.MustParseVersion(u.version)
	if pv, err := wms.ParseVersion(previous); err == nil {
		switch c := target.Compare(pv); {
		case previous == u.version:
			u.res.Outcome = wms.Unchanged
			u.logf("%s %s is already installed", u.cfg.Package, previous)
			return nil
		case c < 0:
			return fmt.Errorf("%s is older than the installed %s: an upgrade never downgrades", u.version, previous)
		}
	}

	// 2. The repository.
	if err := u.step(wms.StepSource); err != nil {
		return err
	}
	if err := u.writeSource(req.Repository); err != nil {
		return err
	}
	if err := u.apt(ctx, "update", "-o", "Dir::Etc::sourcelist="+WMSSourceFile, "-o", "Dir::Etc::sourceparts=-",
		"-o", "APT::Get::List-Cleanup=0"); err != nil {
		return fmt.Errorf("reading repository %s: %w", req.Repository, err)
	}

	// 3. Something to roll back to, before anything changes.
	if err := u.step(wms.StepKeep); err != nil {
		return err
	}
	kept, err := u.keep(ctx, previous)
	if err != nil {
		return fmt.Errorf("keeping %s %s for a rollback: %w", u.cfg.Package, previous, err)
	}
	u.res.Kept = kept

	// 4. The backup.
	if len(u.cfg.BackupHook) > 0 {
		if err := u.step(wms.StepBackup); err != nil {
			return err
		}
		u.logf("backup: %s", strings.Join(u.cfg.BackupHook, " "))
		env := []string{"WMS_VERSION_FROM=" + previous, "WMS_VERSION_TO=" + u.version}
		if err := u.runCmd(ctx, u.cfg.BackupTimeout, env, u.cfg.BackupHook[0], u.cfg.BackupHook[1:]...); err != nil {
			return fmt.Errorf("the backup hook failed, nothing changed: %w", err)
		}
	}

	// 5. The upgrade, 6. the health check.
	if err := u.step(wms.StepInstall); err != nil {
		return err
	}
	var failure error
	if err := u.apt(ctx, "install", "--no-remove", "--allow-change-held-packages", u.cfg.Package+"="+u.version); err != nil {
		failure = fmt.Errorf("installing %s %s: %w", u.cfg.Package, u.version, err)
	} else if now, err := u.installed(ctx); err != nil || now != u.version {
		failure = fmt.Errorf("after apt-get, %s is at %q, not %s (%v)", u.cfg.Package, now, u.version, err)
	} else {
		u.res.Installed = now
		return u.checkTarget(ctx)
	}
	return u.rollBackFor(ctx, failure)
}

// checkTarget is step 6: the target is installed; a failed health check
// rolls it back.
func (u *upgrade) checkTarget(ctx context.Context) error {
	if err := u.step(wms.StepHealth); err != nil {
		return err
	}
	h := u.health(ctx)
	u.res.Health = &h
	if h.OK {
		u.res.Outcome = wms.Upgraded
		u.logf("%s %s installed and healthy", u.cfg.Package, u.version)
		return nil
	}
	return u.rollBackFor(ctx, fmt.Errorf("unhealthy after the upgrade to %s: %s", u.version, h.Detail))
}

// rollBackFor is step 7: the kept .deb installed again because of failure,
// which the result records first, so that a resumed rollback still says why.
func (u *upgrade) rollBackFor(ctx context.Context, failure error) error {
	u.res.Error = failure.Error()
	if err := u.step(wms.StepRollback); err != nil {
		return fmt.Errorf("%v; %w", failure, err)
	}
	previous := u.res.Previous
	u.logf("%v; rolling back to %s", failure, previous)
	if err := u.rollback(ctx, u.res.Kept, previous); err != nil {
		u.res.Outcome = wms.Failed
		return fmt.Errorf("%v; the rollback to %s failed too: %w", failure, previous, err)
	}
	u.res.RolledBack = true
	u.res.Outcome = wms.RolledBack
	h := u.health(ctx)
	u.res.RollbackHealth = &h
	if !h.OK {
		return fmt.Errorf("%v; rolled back to %s, which is unhealthy too: %s", failure, previous, h.Detail)
	}
	return fmt.Errorf("%v; rolled back to %s", failure, previous)
}

// recover finishes what an interrupted dpkg run left (dpkg --audit says
// what), as apt would ask an admin to.
func (u *upgrade) recover(ctx context.Context) error {
	var audit bytes.Buffer
	if err := u.exe(ctx, u.cfg.InstallTimeout, nil, "", &audit, "dpkg", u.dpkgArgs("--audit")...); err != nil && audit.Len() == 0 {
		return fmt.Errorf("dpkg --audit: %w", err)
	}
	if strings.TrimSpace(audit.String()) == "" {
		return nil
	}
	u.logf("an interrupted dpkg run is pending:\n%s", strings.TrimSpace(audit.String()))
	if err := u.dpkg(ctx, "--configure", "-a"); err != nil {
		return fmt.Errorf("recovering an interrupted dpkg (dpkg --configure -a): %w", err)
	}
	u.res.Recovered = true
	return nil
}

// installed is the installed version of the package, "" when it is not
// installed; a package in any state but installed is an error.
func (u *upgrade) installed(ctx context.Context) (string, error) {
	v, status, err := dpkgQuery(ctx, u.cfg.root(), u.cfg.Package)
	if err != nil || status == "" || status == "not-installed" || status == "config-files" {
		return "", err
	}
	if status != "installed" {
		return "", fmt.Errorf("%s %s is %s: dpkg could not finish it (see the log)", u.cfg.Package, v, status)
	}
	return v, nil
}

// dpkgQuery reads a package's version and status from the dpkg database
// under root; both "" when dpkg has never heard of it.
func dpkgQuery(ctx context.Context, root, pkg string) (version, status string, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"--show", "--showformat=${db:Status-Status} ${Version}", pkg}
	if root != "/" && root != "" {
		args = append([]string{"--root=" + root}, args...)
	}
	cmd := exec.CommandContext(ctx, "dpkg-query", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "no packages found") {
			return "", "", nil
		}
		return "", "", fmt.Errorf("dpkg-query %s: %w: %s", pkg, err, proc.FirstLine(stderr.String()))
	}
	status, version, _ = strings.Cut(strings.TrimSpace(stdout.String()), " ")
	return version, status, nil
}

func (u *upgrade) writeSource(repository string) error {
	source, uri, err := WMSSource(u.cfg, repository)
	if err != nil {
		return err
	}
	if err := othersCanRead(u.cfg.Keyring); err != nil {
		return fmt.Errorf("upgrade.keyring: %w", err)
	}
	path := filepath.Join(u.cfg.root(), "etc/apt", WMSSourceFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	u.logf("apt source %s: %s", path, uri)
	return atomicfile.WriteFile(path, []byte(source), 0o644)
}

// othersCanRead checks that a file is readable by any user, through
// folders any user may enter: apt checks signatures as its sandbox user
// _apt, which cannot read a keyring under /etc/pbx-agent (0750).
func othersCanRead(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o004 == 0 {
		return fmt.Errorf("%s must be a file others may read (0644): apt reads it as the user _apt", path)
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s: the folder %s must be open to others (o+x): apt reads the keyring as the user _apt", path, dir)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// keepDir holds one .deb: the installed version's, to roll back to.
func (u *upgrade) keepDir() string { return filepath.Join(u.cfg.ResultDir, "rollback") }

// keep finds the .deb of the installed version: kept by the last upgrade,
// in apt's cache, or downloaded again from the configured sources. It
// checks what the file says it is.
func (u *upgrade) keep(ctx context.Context, version string) (string, error) {
	dir := u.keepDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	pattern := u.cfg.Package + "_" + strings.ReplaceAll(version, ":", "%3a") + "_*.deb"
	for _, d := range []string{dir, filepath.Join(u.cfg.root(), "var/cache/apt/archives")} {
		matches, _ := filepath.Glob(filepath.Join(d, pattern))
		for _, m := range matches {
			if u.debIs(ctx, m, version) {
				return u.keepOnly(m)
			}
		}
	}
	if err := u.aptIn(ctx, dir, "download", u.cfg.Package+"="+version); err != nil {
		return "", fmt.Errorf("not kept, not in apt's cache, and %w", err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, pattern))
	for _, m := range matches {
		if u.debIs(ctx, m, version) {
			return u.keepOnly(m)
		}
	}
	return "", errors.New("apt-get download left no matching .deb")
}

// keepOnly copies deb into the keep folder, if it is not there, and removes
// every other .deb there.
func (u *upgrade) keepOnly(deb string) (string, error) {
	dir := u.keepDir()
	dst := filepath.Join(dir, filepath.Base(deb))
	if filepath.Dir(deb) != dir {
		data, err := os.ReadFile(deb)
		if err != nil {
			return "", err
		}
		if err := atomicfile.WriteFile(dst, data, 0o600); err != nil {
			return "", err
		}
	}
	others, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	for _, o := range others {
		if o != dst {
			os.Remove(o)
		}
	}
	u.logf("kept for a rollback: %s", dst)
	return dst, nil
}

// keepNew keeps the newly installed version's .deb, so that the next
// upgrade can roll back to it even if its repository drops it.
func (u *upgrade) keepNew(ctx context.Context) {
	if _, err := u.keep(ctx, u.version); err != nil {
		u.logf("warning: the .deb of %s %s is not kept for the next rollback: %v", u.cfg.Package, u.version, err)
	}
}

// debIs reports whether the file is the package's .deb in that version.
func (u *upgrade) debIs(ctx context.Context, path, version string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dpkg-deb", "--showformat=${Package} ${Version}", "--show", path).Output()
	return err == nil && strings.TrimSpace(string(out)) == u.cfg.Package+" "+version
}

// rollback installs the kept .deb again, with apt (which allows the
// downgrade when told) or, if apt cannot, with dpkg itself.
func (u *upgrade) rollback(ctx context.Context, kept, previous string) error {
	if err := u.keptDeb(ctx, kept, previous); err != nil {
		return err
	}
	if err := u.recover(ctx); err != nil {
		u.logf("%v", err) // apt may still manage; dpkg below in any case
	}
	err := u.apt(ctx, "install", "--no-remove", "--allow-downgrades", "--allow-change-held-packages", kept)
	if err == nil {
		// A dpkg killed while unpacking leaves the package half-installed
		// at the old version, which apt takes for installed.
		if now, ierr := u.installed(ctx); ierr != nil || now != previous {
			err = fmt.Errorf("%s is at %q (%v)", u.cfg.Package, now, ierr)
		}
	}
	if err != nil {
		u.logf("apt-get could not roll back (%v); trying dpkg --install", err)
		if derr := u.dpkg(ctx, "--install", kept); derr != nil {
			return fmt.Errorf("%w; dpkg --install: %w", err, derr)
		}
	}
	now, err := u.installed(ctx)
	if err != nil {
		return err
	}
	u.res.Installed = now
	if now != previous {
		return fmt.Errorf("%s is at %q after the rollback", u.cfg.Package, now)
	}
	u.logf("rolled back to %s %s", u.cfg.Package, now)
	return nil
}

// hold marks the package held, on every path where it is installed, so
// that an unattended upgrade never moves it: only this helper does.
func (u *upgrade) hold(ctx context.Context) {
	if u.res.Installed == "" {
		return
	}
	if err := u.runCmd(ctx, u.cfg.InstallTimeout, u.aptEnv(), "apt-mark", "hold", u.cfg.Package); err != nil {
		u.logf("warning: apt-mark hold %s: %v", u.cfg.Package, err)
		return
	}
	u.res.Held = true
}

// health runs the health check until it passes or its time is up.
func (u *upgrade) health(ctx context.Context) wms.Health {
	if u.cfg.HealthURL == "" && len(u.cfg.HealthCommand) == 0 {
		return wms.Health{OK: true, Detail: "no health check configured"}
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.HealthTimeout)
	defer cancel()
	return CheckHealth(ctx, u.cfg.HealthURL, u.cfg.HealthCommand, u.cfg.HealthInterval, func(detail string) {
		u.logf("health check: %s", detail)
	})
}

// CheckHealth polls a health URL (which must answer 2xx) and a health
// command (which must exit 0) every interval until both pass or ctx ends;
// the verdict's detail is what failed last. progress, if not nil, hears
// each failed attempt.
func CheckHealth(ctx context.Context, healthURL string, command []string, interval time.Duration, progress func(string)) wms.Health {
	client := &http.Client{Transport: &http.Transport{Proxy: nil}} // the WMS is local: no proxy
	defer client.CloseIdleConnections()
	attempt := func() error {
		if healthURL != "" {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(actx, http.MethodGet, healthURL, nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("GET %s: %w", healthURL, err)
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return fmt.Errorf("GET %s: %s", healthURL, resp.Status)
			}
		}
		if len(command) > 0 {
			cmd := exec.CommandContext(ctx, command[0], command[1:]...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			cmd.WaitDelay = time.Second
			var out tailBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				if msg := proc.FirstLine(out.String()); msg != "" {
					return fmt.Errorf("%s: %w: %s", command[0], err, msg)
				}
				return fmt.Errorf("%s: %w", command[0], err)
			}
		}
		return nil
	}
	t := time.NewTimer(0)
	defer t.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return wms.Health{OK: false, Detail: "no pass in time: " + last.Error()}
		case <-t.C:
		}
		err := attempt()
		if err != nil && ctx.Err() != nil && last != nil {
			continue // cut short by the deadline: the previous failure says more
		}
		if last = err; last == nil {
			what := strings.TrimSpace(healthURL + " " + strings.Join(command, " "))
			return wms.Health{OK: true, Detail: what}
		}
		if progress != nil {
			progress(last.Error())
		}
		t.Reset(interval)
	}
}

// apt runs apt-get non-interactively, waiting for the dpkg lock and
// keeping changed configuration files (DESIGN.md, the upgrade unit).
func (u *upgrade) apt(ctx context.Context, args ...string) error { return u.aptIn(ctx, "", args...) }

func (u *upgrade) aptIn(ctx context.Context, dir string, args ...string) error {
	argv := []string{"-y", "-q",
		"-o", fmt.Sprintf("DPkg::Lock::Timeout=%d", int(u.cfg.AptLockTimeout.Seconds())),
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"}
	return u.exe(ctx, u.cfg.InstallTimeout+u.cfg.AptLockTimeout, u.aptEnv(), dir, nil, "apt-get", append(argv, args...)...)
}

func (u *upgrade) aptEnv() []string {
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	if u.aptConf != "" {
		env = append(env, "APT_CONFIG="+u.aptConf)
	}
	return env
}

// dpkg runs dpkg on the root, keeping changed configuration files.
func (u *upgrade) dpkg(ctx context.Context, args ...string) error {
	args = append([]string{"--force-confdef", "--force-confold"}, args...)
	return u.runCmd(ctx, u.cfg.InstallTimeout, []string{"DEBIAN_FRONTEND=noninteractive"}, "dpkg", u.dpkgArgs(args...)...)
}

func (u *upgrade) dpkgArgs(args ...string) []string {
	if !u.cfg.fakeRoot() {
		return args
	}
	r := u.cfg.root()
	return append([]string{"--root=" + r, "--log=" + filepath.Join(r, "var/log/dpkg.log"), "--force-script-chrootless"}, args...)
}

// fakeRootAptConf points apt at a dpkg database under root and has it run
// dpkg there, the way a chrootless bootstrap does.
func fakeRootAptConf(root string) string {
	r := strings.TrimSuffix(root, "/")
	return fmt.Sprintf(`Dir "%[1]s/";
Dir::Bin::dpkg "/usr/bin/dpkg";
DPkg::Options { "--root=%[1]s"; "--log=%[1]s/var/log/dpkg.log"; "--force-script-chrootless"; };
`, r)
}

// exe runs a command for the upgrade: in its own process group, killed
// whole at the timeout; its output to the log (stdout to stdout when set).
func (u *upgrade) exe(ctx context.Context, timeout time.Duration, env []string, dir string, stdout io.Writer, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = u.out, u.out
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(stdout, u.out)
	}
	u.logf("$ %s", strings.Join(cmd.Args, " "))
	if err := cmd.Run(); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s: not done within %v: killed", name, timeout)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (u *upgrade) runCmd(ctx context.Context, timeout time.Duration, env []string, name string, args ...string) error {
	return u.exe(ctx, timeout, env, "", nil, name, args...)
}

// lockFile takes an exclusive lock, so that two upgrades never run at once.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another WMS upgrade holds %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
