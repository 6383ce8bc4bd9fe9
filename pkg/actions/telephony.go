// Package actions holds the executors of what the licence asks of the
// machine. Here: stopping and starting the PBX's telephony, through
// systemd's pbx-licence targets over D-Bus in production, or through
// configured commands run as child processes elsewhere; and the drop-ins
// that attach the telephony units to those targets.
package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/pbx-agent/pbx-agent/pkg/proc"
)

// The targets shipped in the .deb. Starting StoppedTarget stops the
// telephony units (its drop-in conflicts with them) and ActiveTarget;
// starting ActiveTarget starts them again (its drop-in wants them) and
// stops StoppedTarget.
const (
	ActiveTarget  = "pbx-licence-active.target"
	StoppedTarget = "pbx-licence-stopped.target"
)

// Units is the part of go-systemd's *dbus.Conn that the systemd executor
// uses: start a unit and wait for its job, read a unit's property.
type Units interface {
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	GetUnitPropertyContext(ctx context.Context, unit, property string) (*sddbus.Property, error)
	Close()
}

var _ Units = (*sddbus.Conn)(nil)

// DialSystemBus connects to systemd over the system bus. As the
// unprivileged pbx-agent user, polkit decides what it may start: exactly
// the helper units and targets (packaging/polkit).
//
// The connection outlives ctx: godbus closes a connection when the context
// it was made with ends, and the executor keeps it for later calls.
func DialSystemBus(ctx context.Context) (Units, error) {
	c, err := dialBus(ctx)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

func dialBus(ctx context.Context) (*sddbus.Conn, error) {
	c, err := sddbus.NewSystemConnectionContext(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd over the system bus: %w", err)
	}
	return c, nil
}

// SystemdTelephony stops telephony by starting StoppedTarget and lets it
// run again by starting ActiveTarget, over D-Bus, waiting for each job's
// result. It never starts a transient unit and never reloads systemd.
type SystemdTelephony struct {
	log *slog.Logger

	mu  sync.Mutex // one call at a time; guards bus
	bus bus[Units]
}

// NewSystemdTelephony returns the executor; dial is DialSystemBus but in
// tests. It connects at the first call, and again after a failure.
func NewSystemdTelephony(dial func(context.Context) (Units, error), log *slog.Logger) *SystemdTelephony {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SystemdTelephony{bus: newBus(dial), log: log}
}

// Stop starts StoppedTarget, which stops the telephony units.
func (s *SystemdTelephony) Stop(ctx context.Context, why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startUnit(ctx, StoppedTarget); err != nil {
		return err
	}
	s.log.Warn("telephony stopped by the licence", "unit", StoppedTarget, "why", why)
	return nil
}

// Start starts ActiveTarget, which starts the telephony units again, when
// it is not active: after a stop, or if something stopped it. When it is
// active there is nothing to restore, and nothing is started: a telephony
// unit an admin stopped by hand stays as it is.
func (s *SystemdTelephony) Start(ctx context.Context, why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, err := s.activeState(ctx, ActiveTarget)
	if err != nil {
		return err
	}
	if state == "active" {
		return nil
	}
	if err := s.startUnit(ctx, ActiveTarget); err != nil {
		return err
	}
	s.log.Info("telephony started again", "unit", ActiveTarget, "was", state, "why", why)
	return nil
}

// Stopped reports whether StoppedTarget is active: telephony held down.
// Something that starts a telephony unit by hand stops the target.
func (s *SystemdTelephony) Stopped(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, err := s.activeState(ctx, StoppedTarget)
	return state == "active", err
}

// jobTimeout bounds the wait for a job: stopping telephony units may take
// their own stop timeouts (90 s by default) and more.
const jobTimeout = 5 * time.Minute

// startUnit starts unit (mode replace) and waits for its job's result.
// Callers hold s.mu.
func (s *SystemdTelephony) startUnit(ctx context.Context, unit string) error {
	conn, err := s.bus.get(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, jobTimeout)
	defer cancel()
	done := make(chan string, 1) // go-systemd sends once and must not block
	if _, err := conn.StartUnitContext(ctx, unit, "replace", done); err != nil {
		s.bus.drop()
		return fmt.Errorf("starting %s: %w", unit, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("starting %s: the job ended %q (see journalctl -u %s)", unit, result, unit)
		}
		return nil
	case <-ctx.Done():
		s.bus.drop()
		return fmt.Errorf("starting %s: no job result: %w", unit, ctx.Err())
	}
}

// activeState reads unit's ActiveState. Callers hold s.mu.
func (s *SystemdTelephony) activeState(ctx context.Context, unit string) (string, error) {
	conn, err := s.bus.get(ctx)
	if err != nil {
		return "", err
	}
	p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		s.bus.drop()
		return "", fmt.Errorf("reading the state of %s: %w", unit, err)
	}
	state, ok := p.Value.Value().(string)
	if !ok {
		return "", fmt.Errorf("reading the state of %s: ActiveState is %s", unit, p.Value.String())
	}
	return state, nil
}

// Close closes the connection to the bus, if any.
func (s *SystemdTelephony) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bus.drop()
}

// CommandTelephony stops and starts telephony with configured programs,
// run without a shell in a process group of their own, killed at the
// timeout. The reason is in the environment as PBX_LICENCE_WHY.
type CommandTelephony struct {
	stop, start []string
	timeout     time.Duration
	log         *slog.Logger
}

// NewCommandTelephony returns the executor for the two commands.
func NewCommandTelephony(stop, start []string, timeout time.Duration, log *slog.Logger) (*CommandTelephony, error) {
	if len(stop) == 0 || len(start) == 0 {
		return nil, errors.New("telephony commands: both a stop and a start command are needed")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CommandTelephony{stop: stop, start: start, timeout: timeout, log: log}, nil
}

// Stop runs the stop command.
func (c *CommandTelephony) Stop(ctx context.Context, why string) error {
	if err := c.run(ctx, c.stop, why); err != nil {
		return fmt.Errorf("stopping telephony: %w", err)
	}
	c.log.Warn("telephony stopped by the licence", "command", c.stop[0], "why", why)
	return nil
}

// Start runs the start command.
func (c *CommandTelephony) Start(ctx context.Context, why string) error {
	if err := c.run(ctx, c.start, why); err != nil {
		return fmt.Errorf("starting telephony: %w", err)
	}
	c.log.Info("telephony let run", "command", c.start[0], "why", why)
	return nil
}

func (c *CommandTelephony) run(ctx context.Context, argv []string, why string) error {
	out, err := proc.Run(ctx, argv, proc.Options{Timeout: c.timeout, Env: []string{"PBX_LICENCE_WHY=" + oneLine(why)}})
	if len(out) > 0 {
		c.log.Debug("telephony command output", "command", argv[0], "output", proc.FirstLine(string(out)))
	}
	return err
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
