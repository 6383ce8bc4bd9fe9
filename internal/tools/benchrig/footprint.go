package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// peer is a program pbx-agent is compared with, run as a plain process.
type peer struct {
	name string
	d    *daemon
	bin  string
	note string // how it was run, when the report must say
	// metrics is its /metrics URL, if it has one.
	metrics string
}

// footprint is what one program used in the idle window.
type footprint struct {
	name       string
	bin        string
	binSize    int64
	start, end usage
	window     time.Duration
	note       string
}

func (f footprint) cpu() time.Duration { return f.end.CPU - f.start.CPU }

// startNodeExporter runs Debian's prometheus-node-exporter with its
// default collectors on a free loopback port.
func (r *rig) startNodeExporter(path string) (*peer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	d, err := startDaemon("node_exporter", filepath.Join(r.work, "node_exporter.log"), nil,
		path, "--web.listen-address="+addr)
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, d.stop)
	return &peer{name: "node_exporter", d: d, bin: path, metrics: "http://" + addr + "/metrics"}, nil
}

// startMender runs Debian's mender-client as `mender daemon`, pointed at
// a loopback port where nothing listens, with Mender's default polling
// intervals. Mender reads its artifact name and its identity script from
// fixed paths (/etc/mender, /usr/share/mender/identity) that Debian's
// package leaves empty; without them it idles in an error loop and never
// tries the server. As root the rig gives it both in a private mount
// namespace (unshare(1) then bind mounts), so the machine's own files are
// untouched; otherwise it runs without, which the report says.
func (r *rig) startMender(path string) (*peer, error) {
	dir := filepath.Join(r.work, "mender")
	for _, d := range []string{"etc", "identity", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	unreachable, err := freeAddr()
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		"mender.conf": fmt.Sprintf(`{"ServerURL": "https://%s", "UpdatePollIntervalSeconds": 1800,
 "InventoryPollIntervalSeconds": 28800, "RetryPollIntervalSeconds": 300}`, unreachable),
		"etc/artifact_info":               "artifact_name=bench\n",
		"identity/mender-device-identity": "#!/bin/sh\necho mac=02:00:00:00:00:01\n",
		"data/device_type":                "device_type=bench\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o700); err != nil {
			return nil, err
		}
	}
	argv := []string{path, "--config", filepath.Join(dir, "mender.conf"), "--fallback-config", filepath.Join(dir, "none.conf"),
		"--data", filepath.Join(dir, "data"), "--no-syslog", "daemon"}
	var note string
	if os.Geteuid() == 0 {
		// unshare and sh exec in turn, so the pid stays Mender's.
		script := `mount --bind "$1" /etc/mender && mount --bind "$2" /usr/share/mender/identity && shift 2 && exec "$@"`
		argv = append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
			filepath.Join(dir, "etc"), filepath.Join(dir, "identity")}, argv...)
	} else {
		note = "no identity, not root: it never dials"
	}
	d, err := startDaemon("mender", filepath.Join(r.work, "mender.log"), nil, argv...)
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, d.stop)
	return &peer{name: "mender-client", d: d, bin: path, note: note}, nil
}

// measureIdle snapshots each program, waits window with one scrape of
// each /metrics halfway, and snapshots again: all of them in the same
// span of time, so that the machine's load is the same for each.
func measureIdle(ctx context.Context, window time.Duration, scrape func(url string) error, progs []*peer) ([]footprint, error) {
	fps := make([]footprint, len(progs))
	for i, p := range progs {
		if err := p.d.alive(); err != nil {
			return nil, err
		}
		u, err := readUsage(p.d.pid())
		if err != nil {
			return nil, err
		}
		fps[i] = footprint{name: p.name, bin: p.bin, start: u, window: window, note: p.note}
		if st, err := os.Stat(p.bin); err == nil {
			fps[i].binSize = st.Size()
		}
	}
	began := time.Now()
	if err := waitUntil(ctx, began.Add(window/2)); err != nil {
		return nil, err
	}
	for _, p := range progs {
		if p.metrics != "" {
			if err := scrape(p.metrics); err != nil {
				return nil, fmt.Errorf("scraping %s: %w", p.name, err)
			}
		}
	}
	if err := waitUntil(ctx, began.Add(window)); err != nil {
		return nil, err
	}
	for i, p := range progs {
		if err := p.d.alive(); err != nil {
			return nil, err
		}
		u, err := readUsage(p.d.pid())
		if err != nil {
			return nil, err
		}
		fps[i].end = u
		fps[i].window = time.Since(began)
	}
	return fps, nil
}
