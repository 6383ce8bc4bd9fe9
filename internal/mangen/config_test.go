package mangen

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/agent"
)

func TestParseConfig(t *testing.T) {
	src := `# Example configuration.
# Second line of the intro.

portal:
  # url: https://portal.example.com      # where the PBX activates
  keyring: /etc/keys    # key folder (*.jws)

# Section comment,
# over two lines.
users:
  sqlite:
    path: /var/lib/wms/users.db
    query: "SELECT a # b"  # rows
  timeout: 10s
log_level: info
`
	intro, keys, err := ParseConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Example configuration.\nSecond line of the intro."; intro != want {
		t.Errorf("intro = %q, want %q", intro, want)
	}
	want := []ConfigKey{
		{Key: "portal", IsParent: true},
		{Key: "portal.url", Default: "https://portal.example.com", Example: true, Doc: "where the PBX activates"},
		{Key: "portal.keyring", Default: "/etc/keys", Doc: "key folder (*.jws)"},
		{Key: "users", IsParent: true, Doc: "Section comment, over two lines."},
		{Key: "users.sqlite", IsParent: true},
		{Key: "users.sqlite.path", Default: "/var/lib/wms/users.db"},
		{Key: "users.sqlite.query", Default: `"SELECT a # b"`, Doc: "rows"},
		{Key: "users.timeout", Default: "10s"},
		{Key: "log_level", Default: "info"},
	}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("keys:\n got %+v\nwant %+v", keys, want)
	}
}

func TestParseConfigRefusesWhatItCannotDocument(t *testing.T) {
	_, _, err := ParseConfig("stop_units:\n  - asterisk.service\n")
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "inline") {
		t.Fatalf("ParseConfig of a block list = %v, want an error naming the line and the fix", err)
	}
}

// configKeys lists the dotted keys of the configuration struct, from its
// mapstructure tags: the keys the daemon accepts.
func configKeys(prefix string, t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		key := prefix + t.Field(i).Tag.Get("mapstructure")
		if t.Field(i).Type.Kind() == reflect.Struct {
			keys = append(keys, configKeys(key+".", t.Field(i).Type)...)
		} else {
			keys = append(keys, key)
		}
	}
	return keys
}

// TestShippedConfigDocumentsEveryKey: agent.yaml(5) is generated from the
// shipped configuration file, so that file must name every key the daemon
// accepts, and no key it would refuse.
func TestShippedConfigDocumentsEveryKey(t *testing.T) {
	src, err := os.ReadFile("../../packaging/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, keys, err := ParseConfig(string(src))
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, k := range keys {
		if !k.IsParent {
			documented = append(documented, k.Key)
		}
	}
	accepted := configKeys("", reflect.TypeFor[agent.Config]())
	for _, k := range accepted {
		if !slices.Contains(documented, k) {
			t.Errorf("key %s is not in packaging/agent.yaml: add it with its default and a comment", k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(accepted, k) {
			t.Errorf("packaging/agent.yaml documents %s, which the daemon does not accept", k)
		}
	}
}

func TestConfigPage(t *testing.T) {
	src := "# The intro.\n\nportal:\n  # url: https://p.example  # where it heartbeats\nstate_dir: /var/lib/x  # state_dir's folder\n"
	page := "# NAME\nagent.yaml \\- configuration\n\n# DESCRIPTION\n{{intro}}\n\n# KEYS\n{{keys}}\n"
	h := Header{Date: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Source: "pbx-agent 1.0", Manual: "pbx-agent manual"}
	p, err := ConfigPage(src, page, h)
	if err != nil {
		t.Fatal(err)
	}
	roff := string(p.Roff)
	for _, want := range []string{
		`.TH "AGENT.YAML" "5" "2026-03-01" "pbx-agent 1.0" "pbx-agent manual"`,
		"The intro.",
		`\fBportal.url\fP (unset; e.g. \fBhttps://p.example\fR)`,
		"where it heartbeats",
		// A top-level key has a heading of its own, not its section's.
		".SS state_dir",
		`\fBstate_dir\fP (default \fB/var/lib/x\fR)`,
		"state_dir's folder",
	} {
		if !strings.Contains(roff, want) {
			t.Errorf("page lacks %q:\n%s", want, roff)
		}
	}
	if p.File() != "agent.yaml.5" {
		t.Errorf("file = %q", p.File())
	}
	if _, err := ConfigPage(src, "# KEYS\n{{keys}}\n", h); err == nil || !strings.Contains(err.Error(), "{{intro}}") {
		t.Errorf("a page without {{intro}}: %v, want an error naming it", err)
	}
}
