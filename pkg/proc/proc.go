// Package proc runs the outside programs the agent is configured with (a
// user-count command, telephony stop and start commands, the over-use
// hook): never through a shell, in a process group of their own that is
// killed as a whole at a timeout, with their output bounded.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Options bound a run.
type Options struct {
	Stdin   []byte        // nil: /dev/null
	Env     []string      // added to the agent's environment
	Timeout time.Duration // required
	Limit   int           // bytes of stdout kept; beyond is an error. Zero: 64 KiB
}

// Run runs argv (argv[0] a path, or a name looked up in PATH) and returns
// its stdout. A non-zero exit is an error carrying the first line of its
// stderr; so is a run past the timeout, whose whole process group is
// killed, and output beyond the limit.
func Run(ctx context.Context, argv []string, o Options) ([]byte, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("no program to run")
	}
	if o.Timeout <= 0 {
		return nil, errors.New("no timeout")
	}
	if o.Limit <= 0 {
		o.Limit = 64 << 10
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole group: a script's children go with it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if o.Stdin != nil {
		cmd.Stdin = bytes.NewReader(o.Stdin)
	}
	if o.Env != nil {
		cmd.Env = append(cmd.Environ(), o.Env...)
	}
	stdout := &bounded{limit: o.Limit}
	stderr := &bounded{limit: 4 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	switch {
	case stdout.over:
		return nil, fmt.Errorf("%s: printed more than %d KiB", argv[0], o.Limit>>10)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("%s: no answer within %v: killed", argv[0], o.Timeout)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		if msg := FirstLine(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%s: %w: %s", argv[0], err, msg)
		}
		return nil, fmt.Errorf("%s: %w", argv[0], err)
	}
	return stdout.Bytes(), nil
}

// FirstLine is the first line of s, trimmed and bounded, for errors.
func FirstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// errTooMuch stops the copy of a program's output past the limit: its
// pipe closes, and a program still writing gets SIGPIPE.
var errTooMuch = errors.New("output over the limit")

// bounded keeps the first limit bytes written and refuses more. The
// buffer is a field, not embedded, so that io.Copy cannot go around Write
// through bytes.Buffer's ReadFrom.
type bounded struct {
	buf   bytes.Buffer
	limit int
	over  bool
}

func (b *bounded) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); len(p) > room {
		b.over = true
		n, _ := b.buf.Write(p[:max(room, 0)])
		return n, errTooMuch
	}
	return b.buf.Write(p)
}

func (b *bounded) Bytes() []byte  { return b.buf.Bytes() }
func (b *bounded) String() string { return b.buf.String() }
