package users

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/proc"
)

// Command counts users by running a program, with no shell, that prints an
// Answer on stdout and exits 0. It runs in a process group of its own,
// killed as a whole at the timeout.
type Command struct {
	argv    []string
	timeout time.Duration
}

// NewCommand returns the source that runs argv (argv[0] a path or a name
// looked up in PATH) for at most timeout.
func NewCommand(argv []string, timeout time.Duration) (*Command, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("users.command.argv: empty: name the program and its arguments")
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("users.command.timeout: %v: must be positive", timeout)
	}
	return &Command{argv: append([]string(nil), argv...), timeout: timeout}, nil
}

func (c *Command) String() string { return "command " + c.argv[0] }

// Count runs the command and parses its output.
func (c *Command) Count(ctx context.Context) (license.Counts, error) {
	out, err := proc.Run(ctx, c.argv, proc.Options{Timeout: c.timeout, Limit: MaxAnswerBytes})
	if err != nil {
		return nil, fmt.Errorf("users source command: %w", err)
	}
	counts, err := ParseAnswer(out)
	if err != nil {
		return nil, fmt.Errorf("users source %s: %w", c, err)
	}
	return counts, nil
}

var _ Source = (*Command)(nil)
