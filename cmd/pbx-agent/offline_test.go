package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestOfflineVerbs(t *testing.T) {
	f := newFixture(t)
	fb, sock := daemon(t)
	valid := f.key(t, nil)
	dir := t.TempDir()
	const request = "-----BEGIN PBX OFFLINE ACTIVATION REQUEST-----\nabc\n-----END PBX OFFLINE ACTIVATION REQUEST-----\n"
	fb.SetOfflineFile(apitype.OfflineFile{File: request}, nil)

	r := run(t, valid, "--socket", sock, "activate", "--offline")
	wantResult(t, r, 0, request, "carry the activation request to the portal")
	if keys := fb.OfflineKeys(); len(keys) != 1 || keys[0] != valid {
		t.Fatalf("the daemon was asked with keys %q", keys)
	}

	out := filepath.Join(dir, "request.txt")
	fb.SetOfflineFile(apitype.OfflineFile{File: request, Again: true}, nil)
	r = run(t, valid, "--socket", sock, "activate", "--offline", "--out", out)
	wantResult(t, r, 0, "", "wrote "+out+": the request written before, not answered yet; carry")
	if b, err := os.ReadFile(out); err != nil || string(b) != request {
		t.Fatalf("%s holds %q, %v", out, b, err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("the request, which holds the key, is mode %v", fi.Mode().Perm())
	}

	expired := f.key(t, func(k *license.Key) { k.ExpiresAt = time.Now().Add(-time.Hour) })
	r = run(t, expired, "--socket", sock, "activate", "--offline")
	wantResult(t, r, 2, "", "refused by this appliance: PBX key expired")

	lic := filepath.Join(dir, "licence.txt")
	if err := os.WriteFile(lic, []byte("-----BEGIN PBX OFFLINE LICENCE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	horizon := time.Date(2026, 12, 27, 12, 0, 0, 0, time.UTC)
	st := activeStatus()
	st.Mode, st.Offline = apitype.ModeAirGapped, &apitype.OfflineStatus{Horizon: &horizon}
	fb.SetStatus(st)
	r = run(t, "", "--socket", sock, "activate", "--licence-file", lic)
	wantResult(t, r, 0, "Installed the licence file of PBX acme.example (pbx-42): active; valid until 2026-12-27T12:00:00Z\n", "")
	if files := fb.LicenceFiles(); len(files) != 1 || files[0] != "-----BEGIN PBX OFFLINE LICENCE-----\n" {
		t.Fatalf("the daemon got files %q", files)
	}

	refused := &license.Error{Doc: "offline licence file", Kind: license.ErrInvalid, Detail: "this file is older than the one installed (revision 2 < 3)"}
	fb.SetInstallErr(fmt.Errorf("installing: %w", refused))
	r = run(t, "", "--socket", sock, "activate", "--licence-file", lic)
	wantResult(t, r, 2, "", "pbx-agent: offline licence file invalid content: this file is older than the one installed (revision 2 < 3)")

	r = run(t, "", "--socket", sock, "activate", "--licence-file", filepath.Join(dir, "missing.txt"))
	wantResult(t, r, 2, "", "reading the licence file")

	const report = "-----BEGIN PBX OFFLINE USAGE REPORT-----\n"
	fb.SetOfflineFile(apitype.OfflineFile{File: report}, nil)
	r = run(t, "", "--socket", sock, "report", "--offline")
	wantResult(t, r, 0, report, "carry the usage report to the portal")
	fb.SetOfflineFile(apitype.OfflineFile{}, apitype.ErrNotActivated)
	r = run(t, "", "--socket", sock, "report", "--offline")
	wantResult(t, r, 2, "", "not activated")

	for _, args := range [][]string{
		{"report"},
		{"activate", "--licence-file", lic, "--offline"},
		{"activate", "--out", out},
	} {
		r := run(t, valid, append([]string{"--socket", sock}, args...)...)
		if r.code != 2 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 with one line", args, r.code, r.stdout, r.stderr)
		}
	}
}
