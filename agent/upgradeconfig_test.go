package agent

import (
	"strings"
	"testing"
	"time"
)

func TestUpgradeConfig(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(*UpgradeConfig)
		wantErr string // "" valid
	}{
		{"the defaults: no repository, no upgrades", func(*UpgradeConfig) {}, ""},
		{"a repository", func(u *UpgradeConfig) { u.RepoURL = "https://deb.example.com/wms/{repository}" }, ""},
		{"a flat repository", func(u *UpgradeConfig) {
			u.RepoURL, u.RepoSuite, u.RepoComponents = "file:///srv/wms/{repository}", "./", nil
		}, ""},
		{"a health URL", func(u *UpgradeConfig) { u.HealthURL = "http://127.0.0.1:8080/health" }, ""},
		{"not a package", func(u *UpgradeConfig) { u.Package = "WMS server" }, "upgrade.package"},
		{"credentials in the URL", func(u *UpgradeConfig) { u.RepoURL = "https://u:p@deb.example.com/wms" }, "auth.conf.d"},
		{"a flat repository with components", func(u *UpgradeConfig) { u.RepoURL, u.RepoSuite = "file:///srv/wms", "./" }, "flat repository"},
		{"a relative keyring", func(u *UpgradeConfig) { u.Keyring = "wms.gpg" }, "upgrade.keyring"},
		{"a health URL that is not one", func(u *UpgradeConfig) { u.HealthURL = "127.0.0.1:8080/health" }, "upgrade.health_url"},
		{"a zero health timeout", func(u *UpgradeConfig) { u.HealthTimeout = 0 }, "upgrade.health_timeout"},
		{"a lock timeout under a second", func(u *UpgradeConfig) { u.AptLockTimeout = time.Millisecond }, "upgrade.apt_lock_timeout"},
		{"a relative result folder", func(u *UpgradeConfig) { u.ResultDir = "results" }, "upgrade.result_dir"},
		{"a hook without its program", func(u *UpgradeConfig) { u.BackupHook = []string{""} }, "upgrade.backup_hook"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.edit(&cfg.Upgrade)
			err := cfg.Validate()
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("Validate: %v, want an error naming %s", err, c.wantErr)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.RuntimeDir = "/run/x"
	if h := cfg.WMSUpgradeConfig(); h.RuntimeDir != "/run/x" || h.Package != "wms" || h.ResultGID != -1 || h.AptLockTimeout != 2*time.Minute {
		t.Errorf("WMSUpgradeConfig = %+v", h)
	}
}
