// Command screenshots renders the status page of every case of
// internal/statusfixture (each licence state, over-use, a suspension, a
// re-bind) in headless Chromium, as a desktop and a phone show it:
//
//	screenshots -out dist/screenshots [-chromium /usr/bin/chromium] [-sizes 1000x2000,390x2400]
//
// Each case is served by the local API's own server (the page, its
// headers and its Content-Security-Policy as an admin's browser gets
// them) on a loopback port of its own, and written to
// OUT/STATE-WIDTHpx.png. Chromium is Debian's chromium package; each run
// has a fresh profile, removed afterwards, and reaches nothing but the
// loopback server.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/internal/statusfixture"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "screenshots:", err)
		os.Exit(1)
	}
}

// size is a browser window, in CSS pixels.
type size struct{ width, height int }

func parseSizes(s string) ([]size, error) {
	var out []size
	for _, part := range strings.Split(s, ",") {
		w, h, ok := strings.Cut(strings.TrimSpace(part), "x")
		wi, err1 := strconv.Atoi(w)
		hi, err2 := strconv.Atoi(h)
		if !ok || err1 != nil || err2 != nil || wi < 200 || hi < 200 || wi > 4000 || hi > 10000 {
			return nil, fmt.Errorf("-sizes %q: want WIDTHxHEIGHT pairs, each 200 to 4000 by 200 to 10000, e.g. 1000x2000,390x2400", s)
		}
		out = append(out, size{wi, hi})
	}
	return out, nil
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("screenshots", flag.ContinueOnError)
	out := fs.String("out", "dist/screenshots", "the `FOLDER` the PNGs are written to")
	chromium := fs.String("chromium", "/usr/bin/chromium", "the Chromium `PROGRAM` (Debian's chromium package)")
	sizesFlag := fs.String("sizes", "1000x2000,390x2400", "window `SIZES`, WIDTHxHEIGHT in CSS pixels, comma-separated")
	only := fs.String("state", "", "render only the case of this `NAME` (e.g. stopped)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		return err
	}
	if _, err := os.Stat(*chromium); err != nil {
		return fmt.Errorf("no Chromium at %s (%v): install Debian's chromium package (apt-get install chromium) or give -chromium", *chromium, err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	n := 0
	for _, c := range statusfixture.Cases() {
		if *only != "" && c.Name != *only {
			continue
		}
		url, shutdown, err := serve(ctx, c.Status)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		for _, sz := range sizes {
			file := filepath.Join(*out, fmt.Sprintf("%s-%dpx.png", c.Name, sz.width))
			if err := shoot(ctx, *chromium, url, file, sz); err != nil {
				shutdown()
				return fmt.Errorf("%s at %d px: %w", c.Name, sz.width, err)
			}
			fmt.Println(file)
			n++
		}
		shutdown()
	}
	if n == 0 {
		return fmt.Errorf("-state %q: no such case", *only)
	}
	return nil
}

// serve starts the local API's server with st as the daemon's status on a
// loopback port, read-only as the TCP listener is, and returns its page's
// URL and how to stop it.
func serve(ctx context.Context, st apitype.Status) (url string, stop func(), err error) {
	s, err := localapi.New(localapi.Config{Backend: fixed{st}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(ctx, ln, localapi.TCP); err != nil {
			fmt.Fprintln(os.Stderr, "screenshots: serving the page:", err)
		}
	}()
	return "http://" + ln.Addr().String() + "/", func() { cancel(); <-done }, nil
}

// shoot has Chromium render url in a window of sz and write file, then
// checks that file is a PNG of that width.
func shoot(ctx context.Context, chromium, url, file string, sz size) error {
	profile, err := os.MkdirTemp("", "screenshots-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	os.Remove(file) // a stale file must not pass for this run's
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--user-data-dir="+profile,
		fmt.Sprintf("--window-size=%d,%d", sz.width, sz.height), "--screenshot="+file, url)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", chromium, err, tail(logs.String(), 20))
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("chromium wrote no screenshot: %w\n%s", err, tail(logs.String(), 20))
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		return fmt.Errorf("%s is not a PNG: %w", file, err)
	}
	if cfg.Width != sz.width {
		return fmt.Errorf("%s is %d px wide, asked for %d", file, cfg.Width, sz.width)
	}
	return nil
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// fixed is a daemon that only shows a status: the page's one need.
type fixed struct{ st apitype.Status }

var errShown = errors.New("a screenshot server only shows a status")

func (b fixed) Status() apitype.Status                          { return b.st }
func (fixed) Activate(context.Context, string) error            { return errShown }
func (fixed) Refresh(context.Context) error                     { return errShown }
func (fixed) Audit(context.Context, int) ([]audit.Event, error) { return nil, errShown }
func (fixed) CloseSSH(context.Context) error                    { return errShown }
func (fixed) Admit(context.Context, apitype.Admission) apitype.AdmissionAnswer {
	return apitype.AdmissionAnswer{Reason: errShown.Error()}
}

var _ localapi.Backend = fixed{}
