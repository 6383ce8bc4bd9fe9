package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestPBXCreateIssuesAVerifiableKey(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	var keys []string
	for range 2 { // the second run reuses the signing key made by the first
		var out, errb bytes.Buffer
		code := execute(context.Background(), []string{"pbx", "create", "--data", data, "--name", "acme.example",
			"--model", "wpbx-hw", "--term", "yearly", "--users", "uc-premium=10,pbx-basic=3", "--users", "UC-Wizyconf=1"}, &out, &errb)
		if code != 0 {
			t.Fatalf("pbx create: exit %d: %s", code, errb.String())
		}
		if strings.Count(out.String(), "\n") != 1 {
			t.Fatalf("stdout must hold the key alone: %q", out.String())
		}
		keys = append(keys, strings.TrimSpace(out.String()))
	}
	kr, err := license.LoadKeyring(filepath.Join(data, keyringDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range keys {
		k, err := license.ParseKey(raw, kr, license.KeyCheck{Now: time.Now(), Model: license.ModelHW})
		if err != nil {
			t.Fatalf("issued key does not verify: %v", err)
		}
		if k.PBX.Name != "acme.example" || k.Term != license.Yearly || k.Counts.String() != "pbx-basic=3 uc-premium=10 uc-wizyconf=1" {
			t.Errorf("issued key = %+v", k)
		}
	}
	fi, err := os.Stat(filepath.Join(data, signingKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("signing key file: %v, %v; want mode 0600", fi, err)
	}
}

func TestPBXCreateRefusesBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--name", "a", "--users", "uc-gold=1"},
		{"--name", "a", "--users", "uc-premium"},
		{"--name", "a", "--users", "uc-premium=-1"},
		{"--name", "a", "--model", "WPBX-CLOUD"},
		{"--name", "a", "--term", "weekly"},
		{"--users", "uc-premium=1"},
	} {
		var out, errb bytes.Buffer
		args = append([]string{"pbx", "create", "--data", t.TempDir()}, args...)
		if code := execute(context.Background(), args, &out, &errb); code != 2 || out.Len() != 0 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 with a reason and no key", args, code, out.String(), errb.String())
		}
	}
}
