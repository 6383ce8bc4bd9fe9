package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const source = `# Changes

Introduction, not part of an entry.

## Unreleased

- Something new for admins, described at enough length that the line has to
  wrap within the eighty columns of a Debian changelog.

## 0.2.0 (2026-11-01)

- A change.

## 0.1.0 (2026-10-01)

* The first release.
`

func TestRender(t *testing.T) {
	releases, unreleased, err := parse(strings.NewReader(source))
	if err != nil {
		t.Fatal(err)
	}
	built := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	t.Run("a development build starts with the unreleased changes", func(t *testing.T) {
		got := render("0.2.0+git3.gabcdef12", "A <a@example.invalid>", built, releases, unreleased)
		want := `pbx-agent (0.2.0+git3.gabcdef12) unstable; urgency=medium

  * Something new for admins, described at enough length that the line has to
    wrap within the eighty columns of a Debian changelog.

 -- A <a@example.invalid>  Sat, 05 Dec 2026 10:00:00 +0000

pbx-agent (0.2.0) unstable; urgency=medium

  * A change.

 -- A <a@example.invalid>  Sun, 01 Nov 2026 00:00:00 +0000

pbx-agent (0.1.0) unstable; urgency=medium

  * The first release.

 -- A <a@example.invalid>  Thu, 01 Oct 2026 00:00:00 +0000
`
		if got != want {
			t.Errorf("got:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("a release build starts at its release", func(t *testing.T) {
		got := render("0.2.0", "A <a@example.invalid>", built, releases, unreleased)
		if !strings.HasPrefix(got, "pbx-agent (0.2.0) unstable") || strings.Contains(got, "Something new") {
			t.Errorf("got:\n%s", got)
		}
	})
	t.Run("nothing unreleased says so", func(t *testing.T) {
		got := render("0.2.0+git1.g12345678", "A <a@example.invalid>", built, releases, nil)
		if !strings.Contains(got, "no change for admins since 0.2.0") {
			t.Errorf("got:\n%s", got)
		}
	})
}

func TestParseRefuses(t *testing.T) {
	for name, src := range map[string]string{
		"a heading without a date":   "## 0.1.0\n- x\n",
		"prose in a section":         "## Unreleased\nSome prose.\n",
		"a release with no change":   "## 0.1.0 (2026-10-01)\n",
		"unreleased below a release": "## 0.1.0 (2026-10-01)\n- x\n## Unreleased\n- y\n",
		"an impossible date":         "## 0.1.0 (2026-02-30)\n- x\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := parse(strings.NewReader(src)); err == nil {
				t.Errorf("parse accepted %q", src)
			}
		})
	}
}

// TestShippedChangelogParses converts packaging/changelog.md and has dpkg
// read the result, as it reads the package's changelog.
func TestShippedChangelogParses(t *testing.T) {
	if _, err := exec.LookPath("dpkg-parsechangelog"); err != nil {
		t.Skip("dpkg-parsechangelog is not installed (apt-get install dpkg-dev)")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1796464800") // 2026-12-05 10:00 UTC
	out := filepath.Join(t.TempDir(), "changelog")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := run("0.1.0~git300.gabcdef12", defaultMaintainer, "../../../packaging/changelog.md", f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := exec.Command("dpkg-parsechangelog", "-l", out, "--all", "-S", "Version").CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-parsechangelog: %v\n%s", err, got)
	}
	if first := strings.Fields(string(got)); len(first) == 0 || first[0] != "0.1.0~git300.gabcdef12" {
		t.Errorf("dpkg-parsechangelog reads versions %q, want the build's first", got)
	}
	date, err := exec.Command("dpkg-parsechangelog", "-l", out, "-S", "Date").CombinedOutput()
	if err != nil || strings.TrimSpace(string(date)) != "Sat, 05 Dec 2026 10:00:00 +0000" {
		t.Errorf("entry date %q (%v), want SOURCE_DATE_EPOCH's", date, err)
	}
	b, _ := os.ReadFile(out)
	for i, line := range strings.Split(string(b), "\n") {
		if len(line) > 80 && !strings.HasPrefix(line, " -- ") { // the trailer is not wrapped
			t.Errorf("line %d is %d columns: %q", i+1, len(line), line)
		}
	}
}
