package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigCheck(t *testing.T) {
	newFixture(t) // a keyring, and the model set
	for _, tc := range []struct {
		name   string
		config string
		env    map[string]string
		code   int
		want   []string // lines of stdout, in order
	}{
		{
			name:   "fine",
			config: "portal:\n  url: https://portal.example.com\n",
			want:   []string{"OK"},
		},
		{
			name:   "two typos",
			config: "portal:\n  ulr: https://portal.example.com\nheartbeat:\n  intervall: 30s\n",
			code:   1,
			want: []string{
				"config heartbeat.intervall: unknown key: did you mean heartbeat.interval?",
				"config portal.ulr: unknown key: did you mean portal.url?",
				"config portal.url is empty: set it to the portal's URL",
			},
		},
		{
			name:   "a key in no section, a key of no setting",
			config: "portal:\n  url: https://portal.example.com\ninterval: 5s\ncolour: yes\n",
			code:   1,
			want: []string{
				"config colour: unknown key: remove it",
				"config interval: unknown key: did you mean heartbeat.interval or users.interval?",
			},
		},
		{
			name: "values of the wrong type and impossible values, once each",
			config: "portal:\n  url: https://portal.example.com\nusers:\n  interval: abc\nheartbeat:\n  interval: 5ms\n" +
				"admission:\n  max_reservations_per_uid: lots\nlog: [debug]\n",
			code: 1,
			want: []string{
				"config users.interval: abc is not valid here (time: invalid duration): want a duration such as 30s, 5m or 1h",
				"config admission.max_reservations_per_uid: lots is not valid here (",
				"): want a whole number",
				"config log: [debug] is not valid here (expected a map or struct, got \"slice\"): it is a section: put its keys under it (log.level)",
				"config heartbeat.interval: 5ms is outside 100ms to 1h (0 follows the portal)",
			},
		},
		{
			name:   "a fresh install: everything missing at once",
			config: "state_dir: /var/lib/pbx-agent\n",
			env:    map[string]string{"PBX_AGENT_PORTAL_KEYRING": t.TempDir()}, // empty
			code:   1,
			want:   []string{"config portal.url is empty: set it to the portal's URL", "config portal.keyring: "},
		},
		{
			name:   "not YAML",
			config: "portal: [\n",
			code:   1,
			want:   []string{"reading config ", "did not find expected node content"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			path := writeConfig(t, tc.config)
			r := run(t, "", "--config", path, "config", "check")
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			rest := r.stdout
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in this order):\n%s", w, r.stdout)
				}
				rest = rest[i+len(w):]
			}
			if lines := strings.Count(r.stdout, "\n"); tc.code != 0 && tc.name != "not YAML" && lines != len(uniqueLines(tc.want)) {
				t.Errorf("%d problems listed, want %d:\n%s", lines, len(uniqueLines(tc.want)), r.stdout)
			}
			if tc.code == 0 && (r.stdout != path+": OK\n" || r.stderr != "") {
				t.Errorf("stdout %q, stderr %q; want %q alone", r.stdout, r.stderr, path+": OK\n")
			}
			if tc.code != 0 && !strings.HasPrefix(r.stderr, "pbx-agent: "+path+": ") {
				t.Errorf("stderr %q, want the verdict", r.stderr)
			}
			oneLine(t, r)
		})
	}
}

// uniqueLines counts the problems of a case's wanted fragments: a
// fragment that starts with ")" continues the line before.
func uniqueLines(want []string) []string {
	var out []string
	for _, w := range want {
		if !strings.HasPrefix(w, ")") {
			out = append(out, w)
		}
	}
	return out
}

// The daemon refuses to start on the same problems, every one on its
// start-up error's one line.
func TestRunListsEveryConfigProblem(t *testing.T) {
	newFixture(t)
	path := writeConfig(t, "portal:\n  ulr: https://portal.example.com\nheartbeat:\n  intervall: 30s\n")
	r := run(t, "", "--config", path, "run")
	for _, want := range []string{"2 problems in the configuration (pbx-agent config check lists them): ",
		"config heartbeat.intervall: unknown key: did you mean heartbeat.interval?; config portal.ulr: unknown key: did you mean portal.url?"} {
		if r.code != exitError || !strings.Contains(r.stderr, want) {
			t.Errorf("run: exit %d, stderr %q; want 2 and %q", r.code, r.stderr, want)
		}
	}
	oneLine(t, r)
}

// A PBX_AGENT_* variable that sets no key would be ignored, its setting
// left at the default without a word: it is a problem like a misspelt
// key in the file. The test builds' PBX_AGENT_TEST_* are not keys.
func TestConfigCheckVariables(t *testing.T) {
	newFixture(t)
	t.Setenv("PBX_AGENT_PORTAL_ULR", "https://portal.example.com")
	t.Setenv("PBX_AGENT_COLOUR", "yes")
	t.Setenv("PBX_AGENT_TEST_ANYTHING", "1")
	t.Setenv("PBX_AGENT_PORTAL_URL", "https://portal.example.com")
	r := run(t, "", "--config", writeConfig(t, ""), "config", "check")
	want := "environment PBX_AGENT_COLOUR: sets no configuration key: unset it\n" +
		"environment PBX_AGENT_PORTAL_ULR: sets no configuration key: did you mean PBX_AGENT_PORTAL_URL?\n"
	if r.code != 1 || r.stdout != want {
		t.Errorf("exit %d, stdout:\n%s\nwant exit 1 and:\n%s", r.code, r.stdout, want)
	}
}
