// Package agent is the pbx-agent daemon: its configuration, wiring, loops and
// local API.
package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/actions"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// DefaultConfigPath is where the package installs the configuration.
const DefaultConfigPath = "/etc/pbx-agent/agent.yaml"

// Config is the agent's configuration. Its mapstructure names are the
// configuration keys of the external interface (DESIGN.md section 4): the
// file, PBX_AGENT_* variables and flags all set the same keys.
type Config struct {
	Portal      PortalConfig      `mapstructure:"portal"`
	StateDir    string            `mapstructure:"state_dir"`
	RuntimeDir  string            `mapstructure:"runtime_dir"`
	Listen      ListenConfig      `mapstructure:"listen"`
	API         APIConfig         `mapstructure:"api"`
	Heartbeat   HeartbeatConfig   `mapstructure:"heartbeat"`
	Users       UsersConfig       `mapstructure:"users"`
	Identity    IdentityConfig    `mapstructure:"identity"`
	Admission   AdmissionConfig   `mapstructure:"admission"`
	Enforcement EnforcementConfig `mapstructure:"enforcement"`
	Upgrade     UpgradeConfig     `mapstructure:"upgrade"`
	SSH         SSHConfig         `mapstructure:"ssh"`
	Metrics     MetricsConfig     `mapstructure:"metrics"`
	Log         LogConfig         `mapstructure:"log"`
}

// LogConfig is the daemon's logging; run's --log-level overrides it.
type LogConfig struct {
	Level string `mapstructure:"level"` // debug, info, warn or error; a reload applies it
}

// PortalConfig says where the portal is and which of its keys to trust.
type PortalConfig struct {
	URL     string `mapstructure:"url"`
	Keyring string `mapstructure:"keyring"` // folder of key announcements (*.jws); a development build's <kid>.pem roots
	CAFile  string `mapstructure:"ca_file"` // pinned CA bundle; empty uses the system's
	// Proxy is the HTTP proxy to the portal, http://[user:password@]host:port;
	// empty follows HTTPS_PROXY and NO_PROXY, which a systemd unit does not
	// pass on. It never appears in logs, the status or errors.
	Proxy string `mapstructure:"proxy"`
}

// ListenConfig holds the local API listeners.
type ListenConfig struct {
	HTTP   string `mapstructure:"http"`   // read-only TCP listener
	Socket string `mapstructure:"socket"` // unix socket for the CLI and WMS
}

// APIConfig governs who may write through the local API.
type APIConfig struct {
	WriteGroups []string `mapstructure:"write_groups"`
}

// HeartbeatConfig overrides the portal's heartbeat interval.
type HeartbeatConfig struct {
	Interval time.Duration `mapstructure:"interval"` // zero follows the portal
}

// UsersConfig chooses where user counts come from.
type UsersConfig struct {
	Source   string             `mapstructure:"source"`   // sqlite, command or http
	Interval time.Duration      `mapstructure:"interval"` // how often users are counted
	SQLite   SQLiteUsersConfig  `mapstructure:"sqlite"`
	Command  CommandUsersConfig `mapstructure:"command"`
	HTTP     HTTPUsersConfig    `mapstructure:"http"`
}

// CommandUsersConfig runs a program, no shell, that prints
// {"profiles": {"<profile>": <count>, ...}} on stdout.
type CommandUsersConfig struct {
	Argv    []string      `mapstructure:"argv"`
	Timeout time.Duration `mapstructure:"timeout"`
}

// HTTPUsersConfig asks a WMS endpoint that answers
// {"profiles": {"<profile>": <count>, ...}}.
type HTTPUsersConfig struct {
	URL     string        `mapstructure:"url"`
	Timeout time.Duration `mapstructure:"timeout"`
}

// SQLiteUsersConfig reads counts from the WMS's SQLite database.
type SQLiteUsersConfig struct {
	Path  string `mapstructure:"path"`
	Query string `mapstructure:"query"` // yields rows of (profile id, count)
}

// IdentityConfig overrides hardware detection.
type IdentityConfig struct {
	Serial string `mapstructure:"serial"`
	Model  string `mapstructure:"model"`
}

// AdmissionConfig tunes admission decisions.
type AdmissionConfig struct {
	ReservationTTL time.Duration `mapstructure:"reservation_ttl"`
	// MaxReservationsPerUID bounds the seats one peer uid may hold reserved
	// at once (admitted, not counted yet), so that one member of the read
	// group cannot reserve every free seat. Root is not bounded.
	MaxReservationsPerUID int `mapstructure:"max_reservations_per_uid"`
	// UnboundedUIDs are peer uids the bound does not apply to: the WMS's,
	// for bulk imports.
	UnboundedUIDs []uint32 `mapstructure:"unbounded_uids"`
}

// EnforcementConfig lists what a stopped licence stops, and how.
type EnforcementConfig struct {
	// StopUnits are the telephony units: `pbx-agent helper
	// telephony-units` (run by the package scripts, as root) makes
	// pbx-licence-stopped.target stop them and pbx-licence-active.target
	// start them.
	StopUnits []string `mapstructure:"stop_units"`
	// StopCommand and StartCommand stop and start telephony without
	// systemd's targets: programs run with no shell. When set, they are
	// used instead of the targets.
	StopCommand  []string `mapstructure:"stop_command"`
	StartCommand []string `mapstructure:"start_command"`
	// OveruseHook runs when the over-use changes (after a decrease, more
	// users than licences), with the over-use as JSON on stdin, so the
	// WMS can decide which users to downgrade. The agent itself never
	// removes a user.
	OveruseHook []string `mapstructure:"overuse_hook"`
	// CommandTimeout bounds each run of the commands above.
	CommandTimeout time.Duration `mapstructure:"command_timeout"`
}

// UpgradeConfig is how the root helper upgrades the WMS
// (docs/wms-upgrade.md): its package, its repository, the backup and the
// health check. The helper reads it from this file, which only root may
// change.
type UpgradeConfig struct {
	Package string `mapstructure:"package"` // the WMS's Debian package
	// RepoURL is the repository's URL; {repository} becomes the command's
	// repository (relNN). RepoSuite may use it too; a suite ending in "/"
	// is a flat repository, without components.
	RepoURL        string   `mapstructure:"repo_url"`
	RepoSuite      string   `mapstructure:"repo_suite"`
	RepoComponents []string `mapstructure:"repo_components"`
	Keyring        string   `mapstructure:"keyring"` // apt's Signed-By: the repository's public keys
	// BackupHook runs (no shell) before anything changes, with
	// WMS_VERSION_FROM and WMS_VERSION_TO set; a failure stops the upgrade.
	BackupHook    []string      `mapstructure:"backup_hook"`
	BackupTimeout time.Duration `mapstructure:"backup_timeout"`
	// HealthURL must answer 2xx, and HealthCommand (no shell) exit 0,
	// within HealthTimeout after the upgrade; neither set skips the check.
	HealthURL      string        `mapstructure:"health_url"`
	HealthCommand  []string      `mapstructure:"health_command"`
	HealthTimeout  time.Duration `mapstructure:"health_timeout"`
	AptLockTimeout time.Duration `mapstructure:"apt_lock_timeout"` // apt's DPkg::Lock::Timeout
	InstallTimeout time.Duration `mapstructure:"install_timeout"`  // bounds each apt or dpkg run
	// ResultDir holds the results the agent reads, and the .deb kept for
	// a rollback.
	ResultDir string `mapstructure:"result_dir"`
}

// SSHConfig is the temporary support access.
type SSHConfig struct {
	// Port is where support sshd listens. Under systemd it is the unit's
	// (2222): a drop-in that changes the unit must change this too.
	Port int `mapstructure:"port"`
	// TunnelPort is where the tunnel-mode sshd listens, on 127.0.0.1
	// alone. It is privileged (below 1024), so no local user can bind it
	// first and receive support's session. Under systemd it is the
	// tunnel unit's (222).
	TunnelPort int `mapstructure:"tunnel_port"`
	// Sshd is the sshd binary run as a child process when systemd does
	// not run the agent.
	Sshd string `mapstructure:"sshd"`
	// User is the one account the pushed keys log in to. Listen are the
	// IP addresses sshd binds. Under systemd both are the unit's
	// (pbx-support; 0.0.0.0 and ::), which the agent cannot change: it
	// refuses to open access when they differ.
	User   string   `mapstructure:"user"`
	Listen []string `mapstructure:"listen"`
}

// Policy is who may log in to the support sshd and where it listens.
func (s SSHConfig) Policy() actions.SSHPolicy {
	return actions.SSHPolicy{User: s.User, Listen: s.Listen}
}

// MetricsConfig is the remote metrics listener, for a Prometheus off the
// PBX. The local listeners serve GET /metrics in any case.
type MetricsConfig struct {
	// Listen is the address of a listener that serves GET /metrics alone
	// (flag --web.listen-address of run); "" has none.
	Listen string `mapstructure:"listen"`
	// WebConfigFile is an exporter-toolkit web configuration (TLS, basic
	// auth), as node_exporter's --web.config.file (flag of the same name
	// of run); "" serves plain HTTP without authentication.
	WebConfigFile string `mapstructure:"web_config_file"`
}

// DefaultConfig returns the configuration of a packaged install.
func DefaultConfig() Config {
	return Config{
		Portal:     PortalConfig{Keyring: "/etc/pbx-agent/portal-keys"},
		StateDir:   "/var/lib/pbx-agent",
		RuntimeDir: "/run/pbx-agent",
		Listen:     ListenConfig{HTTP: "127.0.0.1:9731", Socket: "/run/pbx-agent/agent.sock"},
		Users: UsersConfig{
			Source:   "sqlite",
			Interval: 10 * time.Second,
			SQLite: SQLiteUsersConfig{
				Path:  "/var/lib/wms/users.db",
				Query: "SELECT profile, COUNT(*) FROM users GROUP BY profile",
			},
			Command: CommandUsersConfig{Argv: []string{}, Timeout: 10 * time.Second},
			HTTP:    HTTPUsersConfig{Timeout: 10 * time.Second},
		},
		Admission: AdmissionConfig{ReservationTTL: 60 * time.Second, MaxReservationsPerUID: 50, UnboundedUIDs: []uint32{}},
		Enforcement: EnforcementConfig{
			StopUnits: []string{}, StopCommand: []string{}, StartCommand: []string{}, OveruseHook: []string{},
			CommandTimeout: 2 * time.Minute,
		},
		Upgrade: UpgradeConfig{
			Package: "wms", RepoSuite: "{repository}", RepoComponents: []string{"main"},
			Keyring:    "/etc/apt/keyrings/wms-archive-keyring.gpg",
			BackupHook: []string{}, BackupTimeout: 30 * time.Minute,
			HealthCommand: []string{}, HealthTimeout: 5 * time.Minute,
			AptLockTimeout: 120 * time.Second, InstallTimeout: time.Hour,
			ResultDir: "/var/lib/pbx-agent-wms",
		},
		SSH: SSHConfig{Port: actions.SSHUnitPort, TunnelPort: actions.SSHTunnelUnitPort, Sshd: "/usr/sbin/sshd",
			User: actions.UnitSSHPolicy().User, Listen: actions.UnitSSHPolicy().Listen},
		API: APIConfig{WriteGroups: []string{}},
		Log: LogConfig{Level: "info"},
	}
}

// ConfigError is a problem with one configuration key. Its message names
// the key and says how to fix it; Key lets a caller sort and match them.
type ConfigError struct {
	Key string // e.g. portal.url
	Err error
}

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// badKey is a *ConfigError whose message is "config KEY: " and the rest.
func badKey(key, format string, args ...any) *ConfigError {
	return &ConfigError{Key: key, Err: fmt.Errorf("config %s: "+format, append([]any{key}, args...)...)}
}

// Validate reports every setting that cannot work, each a *ConfigError
// naming its key, joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, badKey(key, format, args...))
	}
	if c.Portal.URL != "" {
		u, err := url.Parse(c.Portal.URL)
		switch {
		case err != nil:
			bad("portal.url", "%v", err)
		case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
			bad("portal.url", "%q is not an http(s) URL", c.Portal.URL)
		}
	}
	if c.Portal.Proxy != "" {
		if _, err := parsePortalProxy(c.Portal.Proxy); err != nil {
			bad("portal.proxy", "%v", err)
		}
	}
	if c.Portal.Keyring == "" {
		bad("portal.keyring", "empty: name the folder of trusted portal keys")
	}
	if c.StateDir == "" {
		bad("state_dir", "empty")
	}
	if iv := c.Heartbeat.Interval; iv != 0 && (iv < 100*time.Millisecond || iv > time.Hour) {
		bad("heartbeat.interval", "%v is outside 100ms to 1h (0 follows the portal)", iv)
	}
	switch c.Users.Source {
	case "sqlite":
		if c.Users.SQLite.Path == "" || strings.TrimSpace(c.Users.SQLite.Query) == "" {
			bad("users.sqlite", "the sqlite source needs users.sqlite.path and users.sqlite.query")
		}
	case "command":
		if len(c.Users.Command.Argv) == 0 || c.Users.Command.Argv[0] == "" {
			bad("users.command.argv", "empty: the command source needs the program and its arguments, e.g. [/usr/lib/wms/count-users, --json]")
		}
	case "http":
		if u, err := url.Parse(c.Users.HTTP.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("users.http.url", "%q: the http source needs an http(s) URL", c.Users.HTTP.URL)
		}
	default:
		bad("users.source", "%q: use sqlite, command or http", c.Users.Source)
	}
	if iv := c.Users.Interval; iv < 100*time.Millisecond || iv > time.Hour {
		bad("users.interval", "%v is outside 100ms to 1h", iv)
	}
	if c.Users.Command.Timeout <= 0 {
		bad("users.command.timeout", "%v: must be positive", c.Users.Command.Timeout)
	}
	if c.Users.HTTP.Timeout <= 0 {
		bad("users.http.timeout", "%v: must be positive", c.Users.HTTP.Timeout)
	}
	for _, u := range c.Enforcement.StopUnits {
		if !actions.ValidUnitName(u) {
			bad("enforcement.stop_units", "%q is not a unit name (e.g. asterisk.service)", u)
		}
	}
	if (len(c.Enforcement.StopCommand) == 0) != (len(c.Enforcement.StartCommand) == 0) {
		bad("enforcement.stop_command", "set with enforcement.start_command or not at all: what stops telephony must start it again")
	}
	if c.Enforcement.CommandTimeout <= 0 {
		bad("enforcement.command_timeout", "%v: must be positive", c.Enforcement.CommandTimeout)
	}
	if c.Identity.Model != "" {
		if _, err := license.ParseModel(c.Identity.Model); err != nil {
			bad("identity.model", "%v", err)
		}
	}
	if c.Admission.ReservationTTL <= 0 {
		bad("admission.reservation_ttl", "%v: must be positive", c.Admission.ReservationTTL)
	}
	if n := c.Admission.MaxReservationsPerUID; n < 1 {
		bad("admission.max_reservations_per_uid", "%d: at least 1 (exempt a peer with admission.unbounded_uids instead)", n)
	}
	for _, uid := range c.Admission.UnboundedUIDs {
		if uid == 0 || uid == 1<<32-1 {
			bad("admission.unbounded_uids", "%d: list the uids of peers such as the WMS (root is never bounded)", uid)
		}
	}
	if c.Listen.HTTP != "" {
		if _, port, err := net.SplitHostPort(c.Listen.HTTP); err != nil {
			bad("listen.http", "%v: want host:port, e.g. 127.0.0.1:9731 (empty: no TCP listener)", err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad("listen.http", "%q: the port must be a number, e.g. 127.0.0.1:9731", c.Listen.HTTP)
		}
	}
	c.validateUpgrade(bad)
	if c.SSH.Port < 1 || c.SSH.Port > 65535 {
		bad("ssh.port", "%d is not a TCP port", c.SSH.Port)
	}
	if p := c.SSH.TunnelPort; p < 1 || p > 1023 {
		bad("ssh.tunnel_port", "%d: want a privileged port (1 to 1023), which no local user can bind before the support sshd; the default is %d",
			p, actions.SSHTunnelUnitPort)
	}
	if err := actions.CheckSSHUser(c.SSH.User); err != nil {
		bad("ssh.user", "%v", err)
	}
	if err := actions.CheckSSHListen(c.SSH.Listen); err != nil {
		bad("ssh.listen", "%v", err)
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "%v", err)
		}
	} else if c.Metrics.WebConfigFile != "" {
		bad("metrics.web_config_file", "set, but metrics.listen is empty: the web configuration applies to the remote metrics listener")
	}
	if _, err := c.LogLevel(); err != nil {
		bad("log.level", "%q: use debug, info, warn or error", c.Log.Level)
	}
	return errors.Join(errs...)
}

// validateUpgrade checks the upgrade section. An empty repo_url is allowed
// (no WMS upgrades on this PBX); the helper refuses to run without it.
func (c *Config) validateUpgrade(bad func(key, format string, args ...any)) {
	u := c.Upgrade
	if !actions.ValidPackageName(u.Package) {
		bad("upgrade.package", "%q is not a Debian package name (e.g. wms)", u.Package)
	}
	if u.RepoURL != "" {
		if _, _, err := actions.WMSSource(u.helperConfig(), "rel00"); err != nil {
			bad("upgrade", "%v", err)
		}
	}
	if u.Keyring == "" || !filepath.IsAbs(u.Keyring) {
		bad("upgrade.keyring", "%q: want an absolute path", u.Keyring)
	}
	if u.HealthURL != "" {
		if p, err := url.Parse(u.HealthURL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("upgrade.health_url", "%q is not an http(s) URL", u.HealthURL)
		}
	}
	if len(u.BackupHook) > 0 && u.BackupHook[0] == "" {
		bad("upgrade.backup_hook", "the program's path comes first, e.g. [/usr/lib/wms/backup, --full]")
	}
	if len(u.HealthCommand) > 0 && u.HealthCommand[0] == "" {
		bad("upgrade.health_command", "the program's path comes first, e.g. [/usr/lib/wms/healthy]")
	}
	for key, d := range map[string]time.Duration{"upgrade.backup_timeout": u.BackupTimeout, "upgrade.health_timeout": u.HealthTimeout,
		"upgrade.apt_lock_timeout": u.AptLockTimeout, "upgrade.install_timeout": u.InstallTimeout} {
		if d < time.Second {
			bad(key, "%v: at least 1s", d)
		}
	}
	if u.ResultDir == "" || !filepath.IsAbs(u.ResultDir) {
		bad("upgrade.result_dir", "%q: want an absolute path", u.ResultDir)
	}
}

// helperConfig is the root helper's configuration from this section and
// the runtime folder, where the agent leaves its requests.
func (u UpgradeConfig) helperConfig() actions.WMSUpgradeConfig {
	return actions.WMSUpgradeConfig{
		Package: u.Package, RepoURL: u.RepoURL, RepoSuite: u.RepoSuite, RepoComponents: u.RepoComponents, Keyring: u.Keyring,
		BackupHook: u.BackupHook, BackupTimeout: u.BackupTimeout,
		HealthURL: u.HealthURL, HealthCommand: u.HealthCommand, HealthTimeout: u.HealthTimeout,
		AptLockTimeout: u.AptLockTimeout, InstallTimeout: u.InstallTimeout,
		ResultDir: u.ResultDir, ResultGID: -1,
	}
}

// WMSUpgradeConfig is what the root helper and the upgrade executor need:
// the upgrade section, with the runtime folder.
func (c *Config) WMSUpgradeConfig() actions.WMSUpgradeConfig {
	h := c.Upgrade.helperConfig()
	h.RuntimeDir = c.RuntimeDir
	return h
}

// LogLevel is log.level as a slog level; "" is info.
func (c *Config) LogLevel() (slog.Level, error) {
	var l slog.Level
	if c.Log.Level == "" {
		return slog.LevelInfo, nil
	}
	err := l.UnmarshalText([]byte(c.Log.Level))
	return l, err
}
