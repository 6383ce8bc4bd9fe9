package actions

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// SSHUnitPattern matches the support sshd units: pbx-agent-sshd@<ttl>.service.
const SSHUnitPattern = "pbx-agent-sshd@*.service"

// SSHUnitPort is the port the shipped unit's sshd listens on.
const SSHUnitPort = 2222

// SSHUnits is the part of go-systemd's *dbus.Conn that SystemdSSH uses:
// Units, and stopping and listing units.
type SSHUnits interface {
	Units
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	ListUnitsByPatternsContext(ctx context.Context, states, patterns []string) ([]sddbus.UnitStatus, error)
}

var _ SSHUnits = (*sddbus.Conn)(nil)

// DialSSHUnits connects to systemd over the system bus for SystemdSSH, as
// DialSystemBus does.
func DialSSHUnits(ctx context.Context) (SSHUnits, error) {
	c, err := dialBus(ctx)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// SystemdSSH opens support access by starting pbx-agent-sshd@<ttl>.service
// over D-Bus. The unit copies the keys the agent writes, root-owned, for its
// sshd alone; it ends itself at the TTL (timeout(1) in the unit), even with
// the agent dead, and stopping it ends every session (UsePAM=no keeps them
// in its control group).
type SystemdSSH struct {
	keysDir  string   // <runtime_dir>/ssh, the unit's ConditionPathExists
	hostKeys []string // the system sshd's public host keys
	log      *slog.Logger

	mu  sync.Mutex // one call at a time; guards bus
	bus bus[SSHUnits]
}

// NewSystemdSSH returns the executor. keysDir must be the folder the unit
// reads (/run/pbx-agent/ssh); hostKeyGlob finds the public host keys the
// unit's sshd presents (/etc/ssh/ssh_host_*_key.pub).
func NewSystemdSSH(dial func(context.Context) (SSHUnits, error), keysDir, hostKeyGlob string, log *slog.Logger) *SystemdSSH {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys, _ := filepath.Glob(hostKeyGlob)
	return &SystemdSSH{bus: newBus(dial), keysDir: keysDir, hostKeys: keys, log: log}
}

// Open writes the keys, closes any open access, and starts the unit for
// req.TTL, checking that the job succeeded and the unit runs.
func (s *SystemdSSH) Open(ctx context.Context, req SSHRequest) (SSHState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Port != SSHUnitPort {
		return SSHState{}, fmt.Errorf("the support sshd unit listens on port %d only, not %d", SSHUnitPort, req.Port)
	}
	if err := checkTTL(req.TTL); err != nil {
		return SSHState{}, err
	}
	ttl := int64(req.TTL / time.Second)
	if _, err := writeAuthorizedKeys(s.keysDir, req.Keys); err != nil {
		return SSHState{}, err
	}
	if err := s.stopAllLocked(ctx); err != nil {
		return SSHState{}, err
	}
	unit := "pbx-agent-sshd@" + strconv.FormatInt(ttl, 10) + ".service"
	if err := s.jobLocked(ctx, "starting", unit, func(conn SSHUnits, ch chan<- string) (int, error) {
		return conn.StartUnitContext(ctx, unit, "replace", ch)
	}); err != nil {
		return SSHState{}, err
	}
	st, err := s.stateLocked(ctx)
	if err != nil {
		return SSHState{}, err
	}
	if !st.Open {
		// The job succeeds when a condition fails (no key file): the unit
		// is then not running.
		return SSHState{}, fmt.Errorf("%s started but is not running (see journalctl -u %s)", unit, unit)
	}
	return st, nil
}

// Close stops every support sshd unit, ending its sessions.
func (s *SystemdSSH) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopAllLocked(ctx)
}

// State reads the units: open while one is active, until its start plus
// the TTL of its instance.
func (s *SystemdSSH) State(ctx context.Context) (SSHState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stateLocked(ctx)
}

func (s *SystemdSSH) stateLocked(ctx context.Context) (SSHState, error) {
	units, err := s.activeUnitsLocked(ctx)
	if err != nil || len(units) == 0 {
		return SSHState{}, err
	}
	st := SSHState{Open: true, Port: SSHUnitPort, HostKeys: Fingerprints(s.hostKeys)}
	unit := units[0]
	ttl, ok := unitTTL(unit)
	if !ok {
		return st, nil
	}
	conn, err := s.bus.get(ctx)
	if err != nil {
		return SSHState{}, err
	}
	p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveEnterTimestamp")
	if err != nil {
		s.bus.drop()
		return SSHState{}, fmt.Errorf("reading the start time of %s: %w", unit, err)
	}
	if usec, ok := p.Value.Value().(uint64); ok && usec > 0 {
		st.Until = time.UnixMicro(int64(usec)).Add(ttl)
	}
	return st, nil
}

// unitMaxTTL is the longest instance the unit template takes, in seconds.
const unitMaxTTL = 99999

// unitTTL reads the TTL of a unit's instance.
func unitTTL(unit string) (time.Duration, bool) {
	inst, ok := strings.CutPrefix(unit, "pbx-agent-sshd@")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(inst, ".service"), 10, 64)
	if err != nil || n < 1 || n > unitMaxTTL {
		return 0, false // beyond the unit's range, n seconds may not fit a Duration
	}
	return time.Duration(n) * time.Second, true
}

func (s *SystemdSSH) activeUnitsLocked(ctx context.Context) ([]string, error) {
	conn, err := s.bus.get(ctx)
	if err != nil {
		return nil, err
	}
	list, err := conn.ListUnitsByPatternsContext(ctx, []string{"active", "activating", "reloading"}, []string{SSHUnitPattern})
	if err != nil {
		s.bus.drop()
		return nil, fmt.Errorf("listing the support sshd units: %w", err)
	}
	var out []string
	for _, u := range list {
		out = append(out, u.Name)
	}
	return out, nil
}

func (s *SystemdSSH) stopAllLocked(ctx context.Context) error {
	units, err := s.activeUnitsLocked(ctx)
	if err != nil {
		return err
	}
	for _, unit := range units {
		if err := s.jobLocked(ctx, "stopping", unit, func(conn SSHUnits, ch chan<- string) (int, error) {
			return conn.StopUnitContext(ctx, unit, "replace", ch)
		}); err != nil {
			return err
		}
		s.log.Info("support SSH access closed", "unit", unit)
	}
	return nil
}

// jobLocked runs one unit job and waits for its result.
func (s *SystemdSSH) jobLocked(ctx context.Context, verb, unit string, start func(SSHUnits, chan<- string) (int, error)) error {
	conn, err := s.bus.get(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, jobTimeout)
	defer cancel()
	done := make(chan string, 1)
	if _, err := start(conn, done); err != nil {
		s.bus.drop()
		return fmt.Errorf("%s %s: %w", verb, unit, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("%s %s: the job ended %q (see journalctl -u %s)", verb, unit, result, unit)
		}
		return nil
	case <-ctx.Done():
		s.bus.drop()
		return fmt.Errorf("%s %s: no job result: %w", verb, unit, ctx.Err())
	}
}
