package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium finds Debian's headless browser. Outside CI a machine without
// it skips the test; in CI (.ci/run installs it) its absence fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (.ci/run installs Debian's chromium)")
	}
	t.Skip("chromium is not installed: apt-get install chromium")
	return ""
}

// artifacts is where screenshots are kept for people to look at.
func artifacts(t *testing.T) string {
	dir := os.Getenv("PBX_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "dist", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// render loads url in headless Chromium, saves a screenshot as name.png and
// returns the page's DOM as text.
func render(t *testing.T, browser, url, name string) string {
	t.Helper()
	shot := filepath.Join(artifacts(t), name+".png")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--window-size=1000,1100"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, browser, append(args, "--screenshot="+shot, url)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium screenshot: %v\n%s", err, out)
	}
	dom, err := exec.CommandContext(ctx, browser, append(args, "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
		t.Errorf("screenshot %s: %v (a blank page is a few KiB)", shot, err)
	}
	t.Logf("screenshot: %s", shot)
	return string(dom)
}

// TestStatusPageInChromium renders the status page of a real agent in each
// state an admin should recognise at a glance, and keeps the screenshots.
func TestStatusPageInChromium(t *testing.T) {
	browser := chromium(t)
	top := t
	data, addr := t.TempDir(), freeAddr(t)
	serveFlags := []string{"--interval", "1s", "--heartbeat-tolerance", "2s"}
	p := startPortal(t, data, addr, serveFlags...)
	key := p.admin("pbx", "create", "--name", "page.example", "--users", "uc-premium=10", "--users", "pbx-basic=3", "--users", "uc-wizyconf=1")
	a := newAppliance(t, "page", p, "200ms")
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: %s", r.stderr)
	}
	a.waitState("active", 5*time.Second)
	url := "http://" + a.http + "/"

	t.Run("active", func(t *testing.T) {
		dom := render(t, browser, url, "status-active")
		for _, want := range []string{"page.example", "active", "Licensed by the portal", "UC-Premium", "0 of 10", "PBX-BASIC", "Offline grace ends"} {
			if !strings.Contains(dom, want) {
				t.Errorf("active page lacks %q", want)
			}
		}
	})
	t.Run("stopping", func(t *testing.T) {
		p.admin("pbx", "licenses", "page.example", "uc-premium=0", "pbx-basic=0", "uc-wizyconf=0")
		a.waitState("stopping", 5*time.Second)
		dom := render(t, browser, url, "status-stopping")
		for _, want := range []string{"stopping", "Telephony stops", "PBX deleted", "Every licence is at zero", " days)"} {
			if !strings.Contains(dom, want) {
				t.Errorf("stopping page lacks %q", want)
			}
		}
		p.admin("pbx", "licenses", "page.example", "uc-premium=10", "pbx-basic=3")
		a.waitState("active", 5*time.Second)
	})
	t.Run("offline", func(t *testing.T) {
		p.proc.stop(t)
		a.waitState("offline", 10*time.Second)
		dom := render(t, browser, url, "status-offline")
		for _, want := range []string{"offline", "has not been reached", "Last error", "Offline grace ends"} {
			if !strings.Contains(dom, want) {
				t.Errorf("offline page lacks %q", want)
			}
		}
		p = startPortal(top, data, addr, serveFlags...)
	})
}
