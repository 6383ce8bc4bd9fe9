// Package agent is the pbx-agent daemon: its configuration, wiring, loops and
// local API.
package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
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
	Keyring string `mapstructure:"keyring"` // folder of <kid>.pem portal public keys
	CAFile  string `mapstructure:"ca_file"` // pinned CA bundle; empty uses the system's
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

// UpgradeConfig describes the WMS package and its health check.
type UpgradeConfig struct {
	Package   string `mapstructure:"package"`
	HealthURL string `mapstructure:"health_url"`
}

// SSHConfig is the temporary support access.
type SSHConfig struct {
	Port int `mapstructure:"port"`
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
		Admission: AdmissionConfig{ReservationTTL: 60 * time.Second},
		Enforcement: EnforcementConfig{
			StopUnits: []string{}, StopCommand: []string{}, StartCommand: []string{}, OveruseHook: []string{},
			CommandTimeout: 2 * time.Minute,
		},
		Upgrade: UpgradeConfig{Package: "wms"},
		SSH:     SSHConfig{Port: 2222},
		API:     APIConfig{WriteGroups: []string{}},
		Log:     LogConfig{Level: "info"},
	}
}

// Validate reports the first setting that cannot work, naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config %s: "+format, append([]any{key}, args...)...))
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
	if c.SSH.Port < 1 || c.SSH.Port > 65535 {
		bad("ssh.port", "%d is not a TCP port", c.SSH.Port)
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

// LogLevel is log.level as a slog level; "" is info.
func (c *Config) LogLevel() (slog.Level, error) {
	var l slog.Level
	if c.Log.Level == "" {
		return slog.LevelInfo, nil
	}
	err := l.UnmarshalText([]byte(c.Log.Level))
	return l, err
}
