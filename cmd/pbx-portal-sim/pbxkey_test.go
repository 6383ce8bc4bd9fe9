package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// `pbx key` and `pbx rebind` print a new key alone on stdout, so
// `> key` captures it; each replaces the PBX's current key.
func TestCLIIssuesANewKey(t *testing.T) {
	url, dir := startServe(t)
	portal := []string{"--portal", url}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, nil, append(portal, args...)...)
	}
	var kr *license.Keyring // exported once serve is up
	// keyOf checks that out is one key alone, valid on the portal's clock,
	// and that the portal now knows it as the PBX's key.
	keyOf := func(what, out string, now time.Time) *license.Key {
		t.Helper()
		if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "eyJ") {
			t.Fatalf("%s must print the key alone: %q", what, out)
		}
		k, err := license.ParseKey(out, kr, license.KeyCheck{Now: now})
		if err != nil {
			t.Fatalf("%s: the key does not verify: %v", what, err)
		}
		if _, shown, _ := cli("pbx", "show", "acme.example"); !strings.Contains(shown, "key:") || !strings.Contains(shown, k.ID+",") {
			t.Errorf("%s: pbx show does not name key %s:\n%s", what, k.ID, shown)
		}
		return k
	}

	_, created, _ := cli("pbx", "create", "--name", "acme.example", "--users", "uc-premium=10")
	var err error
	kr, err = license.LoadKeyring(filepath.Join(dir, "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	first := keyOf("pbx create", created, realNow)
	cli("clock", "advance", "40d")
	now := realNow.Add(40 * 24 * time.Hour)

	code, out, errs := cli("pbx", "key", "acme.example")
	if code != 0 || errs != "" {
		t.Fatalf("pbx key: exit %d, stderr %q", code, errs)
	}
	k := keyOf("pbx key", out, now)
	if k.ID == first.ID || !k.ExpiresAt.Equal(now.Add(30*24*time.Hour)) || k.PBX.ID != first.PBX.ID {
		t.Errorf("pbx key after 40 days = %+v; want a new key of %s valid 30 days", k, first.PBX.ID)
	}
	if _, out, _ := cli("pbx", "key", "--key-ttl", "2h", "acme.example"); !keyOf("pbx key --key-ttl 2h", out, now).ExpiresAt.Equal(now.Add(2 * time.Hour)) {
		t.Errorf("--key-ttl 2h not honoured")
	}

	code, out, errs = cli("pbx", "rebind", "acme.example")
	if code != 0 || !strings.HasPrefix(errs, "acme.example: not bound to any appliance") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("pbx rebind: exit %d, stderr %q", code, errs)
	}
	keyOf("pbx rebind", out, now)

	cli("pbx", "delete", "acme.example")
	for _, args := range [][]string{
		{"pbx", "key", "acme.example"}, // deleted
		{"pbx", "key", first.PBX.ID},   // deleted, by id
		{"pbx", "key", "nobody.example"},
		{"pbx", "key"},
		{"pbx", "key", "acme.example", "--key-ttl", "-1h"},
		{"pbx", "rebind", "acme.example"},
	} {
		code, out, errs := cli(args...)
		if code != 2 || out != "" || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "pbx-portal-sim: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2, no key, one line", args, code, out, errs)
		}
	}
	if _, _, errs := cli("pbx", "key", "acme.example"); !strings.Contains(errs, "deleted") || !strings.Contains(errs, "create a new PBX") {
		t.Errorf("pbx key of a deleted PBX: %q; want it to say so and what to do", errs)
	}
}
