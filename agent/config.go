// Package agent is the pbx-agent daemon: its configuration, wiring, loops and
// local API.
package agent

import (
	"errors"
	"fmt"
	"net/url"
	"time"

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
	Source string            `mapstructure:"source"` // sqlite, command or http
	SQLite SQLiteUsersConfig `mapstructure:"sqlite"`
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

// EnforcementConfig lists what a stopped licence stops.
type EnforcementConfig struct {
	StopUnits []string `mapstructure:"stop_units"`
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

// DefaultConfig returns the configuration of a packaged install.
func DefaultConfig() Config {
	return Config{
		Portal:     PortalConfig{Keyring: "/etc/pbx-agent/portal-keys"},
		StateDir:   "/var/lib/pbx-agent",
		RuntimeDir: "/run/pbx-agent",
		Listen:     ListenConfig{HTTP: "127.0.0.1:9731", Socket: "/run/pbx-agent/agent.sock"},
		Users: UsersConfig{
			Source: "sqlite",
			SQLite: SQLiteUsersConfig{
				Path:  "/var/lib/wms/users.db",
				Query: "SELECT profile, COUNT(*) FROM users GROUP BY profile",
			},
		},
		Admission:   AdmissionConfig{ReservationTTL: 60 * time.Second},
		Enforcement: EnforcementConfig{StopUnits: []string{}},
		Upgrade:     UpgradeConfig{Package: "wms"},
		SSH:         SSHConfig{Port: 2222},
		API:         APIConfig{WriteGroups: []string{}},
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
	case "sqlite", "command", "http":
	default:
		bad("users.source", "%q: use sqlite, command or http", c.Users.Source)
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
	return errors.Join(errs...)
}
