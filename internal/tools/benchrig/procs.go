package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// daemon is a program the rig started and must stop.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string // where its stdout and stderr go
}

// startDaemon starts argv with its output in logPath. env adds to the
// rig's environment.
func startDaemon(name, logPath string, env []string, argv ...string) (*daemon, error) {
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child holds its own copy
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); close(d.done) }()
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// alive reports an error if the daemon has exited.
func (d *daemon) alive() error {
	select {
	case <-d.done:
		return fmt.Errorf("%s exited (%v); its log: %s", d.name, d.cmd.ProcessState, d.log)
	default:
		return nil
	}
}

// stop ends the daemon with SIGTERM, as systemd would, then SIGKILL after
// 10 s.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// poll calls cond every 50 ms until it returns nil, ctx ends, or within
// passes; the error says what was awaited and the last failure.
func poll(ctx context.Context, within time.Duration, what string, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %v: %w", what, within, err)
		case <-t.C:
		}
	}
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitUntil sleeps until t or the end of ctx: the rig's measuring
// windows are spans of wall time by definition.
func waitUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
