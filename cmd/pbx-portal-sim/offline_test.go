package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// runIn runs the CLI with stdin.
func runIn(stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := execute(context.Background(), args, &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func TestCLIOfflineExchange(t *testing.T) {
	url, dir := startServe(t)
	code, key, errs := runIn("", "--portal", url, "pbx", "create", "--name", "air.example", "--users", "uc-premium=10")
	if code != 0 {
		t.Fatalf("create: %s", errs)
	}
	dev, err := protocol.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	req, err := offline.SignRequest(dev, offline.Request{Time: time.Now(), Nonce: "n-1", Key: strings.TrimSpace(key),
		DeviceKey: dev.Public(), Fingerprint: "fp-1", Model: license.ModelVM, AgentVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runIn(offline.Armour(offline.KindRequest, nil, req), "--portal", url, "pbx", "offline-activate", "air.example")
	if code != 0 || !strings.HasPrefix(out, "-----BEGIN "+offline.KindLicence+"-----\n") || !strings.Contains(errs, "revision 1, valid until") {
		t.Fatalf("offline-activate: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	kr, err := license.LoadKeyring(filepath.Join(dir, "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	compact, err := offline.Unarmour(out, offline.KindLicence)
	if err != nil {
		t.Fatal(err)
	}
	l, err := offline.ParseLicence(compact, kr)
	if err != nil || l.Device != dev.KeyID() || l.Nonce != "n-1" {
		t.Fatalf("the file printed: %+v, %v", l, err)
	}

	rep, err := offline.SignReport(dev, offline.Report{Time: time.Now(), Nonce: "n-2", PBXID: l.PBXID, Revision: 1,
		Digest: protocol.Digest(l.License), Link: "never-issued", Seq: 4, State: "active", AgentVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"nothing on stdin", "", []string{"offline-activate", "air.example"}, "no request on standard input"},
		{"a report with a missing link", rep, []string{"offline-renew", "air.example"}, "the report links to never-issued (sequence 4), which the portal never issued"},
		{"a licence file where a report belongs", out, []string{"offline-renew", "air.example"}, `"PBX OFFLINE LICENCE" block, not a "PBX OFFLINE USAGE REPORT"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runIn(tc.stdin, append([]string{"--portal", url, "pbx"}, tc.args...)...)
			if code != 2 || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 with one line saying %q", code, out, errs, tc.want)
			}
		})
	}
}
