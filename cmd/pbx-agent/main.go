// Command pbx-agent is the licence agent of a PBX: the daemon (`run`), the
// admin verbs, and the root helpers that its systemd units run.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes shared by the verbs (DESIGN.md section 4).
const (
	exitOK    = 0
	exitError = 2 // any error; for key verbs, an invalid key
)

// codedError carries a verb's exit code with the error to print.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// quietExit ends a verb with a code and nothing more on stderr: the verb
// has printed what it had to say (status's state codes).
type quietExit int

func (e quietExit) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs the CLI and returns the process exit code. Errors become one
// line on stderr.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if keyInArgs(args) { // argv.go: before cobra, whose errors repeat arguments
		fmt.Fprintf(stderr, "pbx-agent: %v\n", errKeyOnCommandLine)
		return exitError
	}
	root := newRootCmd(&app{stdin: stdin, stdout: stdout, stderr: stderr})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil || errors.Is(err, context.Canceled) {
		return exitOK
	}
	var quiet quietExit
	if errors.As(err, &quiet) {
		return int(quiet)
	}
	fmt.Fprintf(stderr, "pbx-agent: %v\n", err)
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitError
}
