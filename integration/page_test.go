package integration

import (
	"context"
	"fmt"
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

// Window sizes the page is checked at: a desktop browser, and a phone.
const (
	desktop = "1000,1100"
	phone   = "390,1400"
)

// render loads url in headless Chromium, saves a screenshot as name.png and
// returns the page's DOM as text. It renders at the desktop size, and again
// at a phone's width as name-phone.png.
func render(t *testing.T, browser, url, name string) string {
	t.Helper()
	dom := renderAt(t, browser, url, name, desktop)
	renderAt(t, browser, url, name+"-phone", phone)
	return dom
}

func renderAt(t *testing.T, browser, url, name, size string) string {
	t.Helper()
	shot := filepath.Join(artifacts(t), name+".png")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--window-size=" + size}
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
	// The portal refuses decreases on the last day of a month.
	if now, err := time.Parse(time.RFC3339, strings.TrimSpace(p.admin("clock"))); err == nil && now.AddDate(0, 0, 1).Day() == 1 {
		p.admin("clock", "advance", "1d")
	}
	key := p.admin("pbx", "create", "--name", "page.example", "--users", "uc-premium=10", "--users", "pbx-basic=3", "--users", "uc-wizyconf=1")
	a := newAppliance(t, "page", p, "200ms")
	// The WMS's users, as a users.source command reports them.
	counts := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(counts, []byte(`{"profiles": {"uc-premium": 8, "pbx-basic": 2}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(a.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "users:\n  source: command\n  interval: 200ms\n  command:\n    argv: [/bin/cat, %s]\n", counts)
	f.Close()
	a.start()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: %s", r.stderr)
	}
	a.waitState("active", 5*time.Second)
	url := "http://" + a.http + "/"

	t.Run("active", func(t *testing.T) {
		dom := render(t, browser, url, "status-active")
		for _, want := range []string{"page.example", "active", "Licensed by the portal", "UC-Premium", "8 of 10", "2 free", "PBX-BASIC", "2 of 3", "Offline grace ends"} {
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
	t.Run("overuse", func(t *testing.T) {
		// A decrease below the users counted: 8 UC-Premium users for 5.
		p.admin("pbx", "licenses", "page.example", "uc-premium=5")
		eventually(t, 10*time.Second, "over-use reported", func() (bool, string) {
			st := a.status()
			return st.License != nil && st.License.Overuse["uc-premium"] == 3, fmt.Sprint(st.License)
		})
		dom := render(t, browser, url, "status-overuse")
		for _, want := range []string{"active", "More users than licences", "UC-Premium: 3 users without a licence",
			"8 of 5", "3 over the licence", "PBX-BASIC", "2 of 3"} {
			if !strings.Contains(dom, want) {
				t.Errorf("over-use page lacks %q", want)
			}
		}
		p.admin("pbx", "licenses", "page.example", "uc-premium=10")
		eventually(t, 10*time.Second, "over-use over", func() (bool, string) {
			st := a.status()
			return st.License != nil && len(st.License.Overuse) == 0, fmt.Sprint(st.License)
		})
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
