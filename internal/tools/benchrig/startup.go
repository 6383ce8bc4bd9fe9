package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// startups execs the agent n times with its activated state and times
// each from exec to the READY=1 it sends to a NOTIFY_SOCKET the rig owns,
// as systemd would see it (Type=notify). Each run is stopped once ready.
func (r *rig) startups(ctx context.Context, a *agent, n int) ([]time.Duration, error) {
	path := filepath.Join(r.work, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var out []time.Duration
	for i := range n {
		cmd := exec.Command(r.agentBin(), "--config", a.config, "run")
		logf, err := os.OpenFile(filepath.Join(a.dir, "startup.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = append(append(os.Environ(), r.env...), "NOTIFY_SOCKET="+path)
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, err
		}
		logf.Close()
		d, err := awaitReady(ctx, conn, cmd.Process.Pid, 15*time.Second)
		if err == nil {
			out = append(out, d.Sub(t0))
		}
		cmd.Process.Signal(syscall.SIGTERM)
		werr := cmd.Wait()
		if err != nil {
			return nil, fmt.Errorf("start %d of %d: %w (exit: %v; log %s)", i+1, n, err, werr, filepath.Join(a.dir, "startup.log"))
		}
	}
	return out, nil
}

// awaitReady reads notifications until one carries READY=1, and returns
// when it arrived.
func awaitReady(ctx context.Context, conn *net.UnixConn, pid int, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetReadDeadline(deadline)
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return time.Time{}, fmt.Errorf("no READY=1 from pid %d: %w", pid, err)
		}
		at := time.Now()
		for line := range bytes.SplitSeq(buf[:n], []byte("\n")) {
			if string(line) == "READY=1" {
				return at, nil
			}
		}
	}
}

// execToExit times n runs of argv from exec to exit: the floor of any
// start of the same binary (the loader, Go's runtime, the CLI's set-up).
func execToExit(ctx context.Context, n int, argv ...string) ([]time.Duration, error) {
	var out []time.Duration
	for range n {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%v: %w", argv, err)
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}
