package main

import (
	"strings"
	"testing"
)

// TestKeyNeverEchoedFromArgv gives a real PBX key on the command line in
// the ways an admin would (an argument, a flag that does not exist, a
// flag's value, quoted, wrapped over lines, to the wrong verb): the key
// is not used, and no piece of it is printed, while the error says how to
// pass it.
func TestKeyNeverEchoedFromArgv(t *testing.T) {
	f := newFixture(t)
	key := f.key(t, nil)
	wrapped := key[:50] + "\n" + key[50:100] + "\n" + key[100:]
	for _, args := range [][]string{
		{"activate", key},
		{key},
		{"key", "inspect", key},
		{"activate", "--key", key},
		{"activate", "--key=" + key},
		{"activate", "--key-file", key},
		{"activate", `"` + key + `"`},
		{"activate", wrapped},
		{"check", "uc-premium", key},
		{"--config", key, "status"},
	} {
		r := run(t, "", args...)
		name := strings.ReplaceAll(strings.Join(args, " "), key, "KEY")
		if r.code != exitError || !strings.Contains(r.stderr, "--key-file FILE") || !strings.Contains(r.stderr, "standard input") {
			t.Errorf("%s: exit %d, stderr %q; want 2 and how to pass the key", name, r.code, r.stderr)
		}
		out := r.stdout + r.stderr
		for i := 0; i+16 <= len(key); i += 8 {
			if piece := key[i : i+16]; strings.Contains(out, piece) {
				t.Fatalf("%s: the output repeats the key (%q):\n%s", name, piece, out)
			}
		}
		oneLine(t, r)
	}
}

func TestLooksLikeKey(t *testing.T) {
	for _, s := range []string{"uc-premium", "7.02.20250609.3", "/etc/pbx-agent/agent.yaml", "eyJhbGciOiJFZERTQSJ9", "--config",
		"eyJ this is a sentence that is long enough, not a key"} {
		if looksLikeKey(s) {
			t.Errorf("looksLikeKey(%q) = true", s)
		}
	}
	if !looksLikeKey(newFixture(t).key(t, nil)) {
		t.Error("a PBX key does not look like one")
	}
}
