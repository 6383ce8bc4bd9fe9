package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// fixture is a portal keyring on disk and a signer trusted by it.
type fixture struct {
	keyring string
	signer  *license.Signer
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	s, err := license.GenerateSigner("portal-1")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "portal-keys")
	if err := license.WriteKeyringFile(dir, s.KeyID(), s.Public()); err != nil {
		t.Fatal(err)
	}
	// Isolate from the machine: no installed config, no inherited variables.
	t.Setenv("PBX_AGENT_PORTAL_KEYRING", dir)
	t.Setenv("PBX_AGENT_IDENTITY_MODEL", "WPBX-VM")
	return fixture{keyring: dir, signer: s}
}

func (f fixture) key(t *testing.T, edit func(*license.Key)) string {
	t.Helper()
	now := time.Now().UTC()
	k := license.Key{
		Version: license.KeyVersion, ID: "key-1",
		PBX:  license.PBX{ID: "pbx-42", Name: "acme.example", Model: license.ModelVM},
		Term: license.Monthly, Counts: license.Counts{license.UCPremium: 10, license.PBXBasic: 3},
		IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(30 * 24 * time.Hour),
	}
	if edit != nil {
		edit(&k)
	}
	s, err := f.signer.Sign(license.TypeKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	if !slices.Contains(args, "--config") {
		// An empty file of its own keeps the machine's config out of the test.
		empty := filepath.Join(t.TempDir(), "empty.yaml")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", empty}, args...)
	}
	code := execute(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestVersion(t *testing.T) {
	r := run(t, "", "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "pbx-agent ") || !strings.Contains(r.stdout, "go1.") {
		t.Errorf("version = %+v", r)
	}
}

func TestKeyInspect(t *testing.T) {
	f := newFixture(t)
	valid := f.key(t, nil)
	parts := strings.Split(valid, ".")
	other, err := license.GenerateSigner("portal-9")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Sign(license.TypeKey, license.Key{Version: 1, ID: "k", PBX: license.PBX{ID: "pbx-9", Model: license.ModelVM},
		Term: license.Monthly, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	wrapped := filepath.Join(t.TempDir(), "key.txt")
	var b strings.Builder
	b.WriteString(`"`)
	for s := valid; s != ""; {
		n := min(64, len(s))
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	b.WriteString(`"`)
	if err := os.WriteFile(wrapped, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		stdin      string
		args       []string
		env        map[string]string
		wantCode   int
		wantStdout []string
		wantStderr string
	}{
		{name: "valid from stdin", stdin: valid + "\n", wantStdout: []string{"pbx-42 (acme.example)", "PBX-BASIC 3, UC-Premium 10", "valid, portal key portal-1", "Verdict      valid",
			"Activate by  ", "(in 30 days): the last time this key can activate the PBX; the licence's term is the portal's"}},
		{name: "wrapped and quoted from a file", args: []string{"--key-file", wrapped}, wantStdout: []string{"pbx-42", "Term         monthly"}},
		{name: "truncated", stdin: valid[:len(valid)/2], wantCode: 2, wantStderr: "pbx-agent: PBX key truncated: it stops inside its content"},
		{name: "altered", stdin: parts[0] + "." + parts[1][:20] + "x" + parts[1][21:] + "." + parts[2], wantCode: 2,
			wantStdout: []string{"UNVERIFIED", "INVALID"}, wantStderr: "pbx-agent: PBX key bad signature"},
		{name: "foreign portal", stdin: foreign, wantCode: 2, wantStdout: []string{"UNVERIFIED", "pbx-9", "NOT TRUSTED"}, wantStderr: `portal key "portal-9" is not in`},
		{name: "expired", stdin: f.key(t, func(k *license.Key) { k.ExpiresAt = time.Now().Add(-48 * time.Hour) }), wantCode: 2,
			wantStdout: []string{"(2 days ago): too late to activate with this key: copy a new PBX key from the portal", "NOT VALID: expired"}, wantStderr: "PBX key expired"},
		{name: "wrong model", stdin: valid, env: map[string]string{"PBX_AGENT_IDENTITY_MODEL": "WPBX-HW"}, wantCode: 2,
			wantStdout: []string{"this appliance: WPBX-HW, identity.model"}, wantStderr: "it is for a WPBX-VM, but this appliance is a WPBX-HW"},
		{name: "not a key", stdin: "hello", wantCode: 2, wantStderr: "pbx-agent: input not a PBX key"},
		{name: "missing key file", args: []string{"--key-file", "/nonexistent/key"}, wantCode: 2, wantStderr: "reading key: open /nonexistent/key"},
		{name: "missing keyring", stdin: valid, env: map[string]string{"PBX_AGENT_PORTAL_KEYRING": "/nonexistent"}, wantCode: 2, wantStderr: "reading portal keyring"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r := run(t, tt.stdin, append([]string{"key", "inspect"}, tt.args...)...)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", r.code, tt.wantCode, r.stderr)
			}
			for _, want := range tt.wantStdout {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
				}
			}
			if tt.wantStderr == "" && r.stderr != "" || !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", r.stderr, tt.wantStderr)
			}
			if strings.Count(r.stderr, "\n") > 1 {
				t.Errorf("stderr has more than one line: %q", r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, parts[2][:16]) {
				t.Error("output leaks the key")
			}
		})
	}
}

func TestConfigSources(t *testing.T) {
	f := newFixture(t)
	valid := f.key(t, nil)
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	t.Run("file", func(t *testing.T) {
		t.Setenv("PBX_AGENT_PORTAL_KEYRING", "")
		os.Unsetenv("PBX_AGENT_PORTAL_KEYRING")
		cfg := write("file.yaml", "portal:\n  keyring: "+f.keyring+"\n")
		if r := run(t, valid, "--config", cfg, "key", "inspect"); r.code != 0 {
			t.Errorf("keyring from the file: %+v", r)
		}
	})
	t.Run("environment overrides file", func(t *testing.T) {
		cfg := write("wrong.yaml", "portal:\n  keyring: /nonexistent\n")
		if r := run(t, valid, "--config", cfg, "key", "inspect"); r.code != 0 {
			t.Errorf("keyring from PBX_AGENT_PORTAL_KEYRING: %+v", r)
		}
	})
	t.Run("unknown key named", func(t *testing.T) {
		cfg := write("typo.yaml", "portal:\n  keyrnig: /x\n")
		r := run(t, valid, "--config", cfg, "key", "inspect")
		if r.code != 2 || !strings.Contains(r.stderr, "keyrnig") {
			t.Errorf("a misspelt key must be named: %+v", r)
		}
	})
	t.Run("invalid value named", func(t *testing.T) {
		cfg := write("bad.yaml", "heartbeat:\n  interval: 10ms\nssh:\n  port: 70000\n")
		r := run(t, valid, "--config", cfg, "key", "inspect")
		if r.code != 2 || !strings.Contains(r.stderr, "heartbeat.interval") || !strings.Contains(r.stderr, "ssh.port") {
			t.Errorf("invalid values must be named: %+v", r)
		}
	})
	t.Run("explicit missing file", func(t *testing.T) {
		r := run(t, valid, "--config", filepath.Join(dir, "missing.yaml"), "key", "inspect")
		if r.code != 2 || !strings.Contains(r.stderr, "missing.yaml") {
			t.Errorf("a missing --config file must be an error: %+v", r)
		}
	})
}

// TestPackagedConfigIsTheDefault keeps the shipped, commented agent.yaml
// true: it must load strictly and say exactly what the defaults are.
func TestPackagedConfigIsTheDefault(t *testing.T) {
	a := &app{}
	root := newRootCmd(a)
	if err := root.ParseFlags([]string{"--config", "../../packaging/agent.yaml"}); err != nil {
		t.Fatal(err)
	}
	got, err := a.config()
	if err != nil {
		t.Fatal(err)
	}
	if want := agent.DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("packaging/agent.yaml differs from agent.DefaultConfig():\n got %+v\nwant %+v", got, want)
	}
}
