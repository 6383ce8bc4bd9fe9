package actions

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"golang.org/x/sys/unix"
)

// SSHUnitPattern matches the support sshd units: pbx-agent-sshd@<ttl>.service.
const SSHUnitPattern = "pbx-agent-sshd@*.service"

// SSHUnitPort is the port the shipped unit's sshd listens on.
const SSHUnitPort = 2222

// SSHTunnelUnitPattern matches the tunnel-mode units,
// pbx-agent-sshd-tunnel@<ttl>.service: sshd on 127.0.0.1 alone.
const SSHTunnelUnitPattern = "pbx-agent-sshd-tunnel@*.service"

// SSHTunnelUnitPort is the port the shipped tunnel-mode unit's sshd
// listens on, on 127.0.0.1: privileged, so no local user can hold it.
const SSHTunnelUnitPort = 222

// Prefixes of the two templates' unit names, before the TTL.
const (
	sshUnitPrefix       = "pbx-agent-sshd@"
	sshTunnelUnitPrefix = "pbx-agent-sshd-tunnel@"
)

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
//
// The unit is static and run by root: its account (AllowUsers) and
// addresses (ListenAddress) are UnitSSHPolicy, which the agent cannot
// change, so a compromised agent cannot widen them. Open refuses a
// configuration that asks for others rather than pretend to apply it.
type SystemdSSH struct {
	keysDir  string   // <runtime_dir>/ssh, the unit's ConditionPathExists
	hostKeys []string // the system sshd's public host keys
	policy   SSHPolicy
	log      *slog.Logger

	mu    sync.Mutex // one call at a time; guards the fields below
	bus   bus[SSHUnits]
	now   func() time.Time // the clock Until is told on; SetClock
	mono  func() time.Duration
	until unitUntil // the end of the running unit, once computed
}

// unitUntil is the end of one run of a unit on the licence clock, fixed
// when first seen so that it does not move between reads.
type unitUntil struct {
	unit  string
	start uint64 // ActiveEnterTimestampMonotonic
	until time.Time
}

// NewSystemdSSH returns the executor. keysDir must be the folder the unit
// reads (/run/pbx-agent/ssh); hostKeyGlob finds the public host keys the
// unit's sshd presents (/etc/ssh/ssh_host_*_key.pub).
// policy is the configured one, which Open checks against the unit's.
func NewSystemdSSH(dial func(context.Context) (SSHUnits, error), keysDir, hostKeyGlob string, policy SSHPolicy, log *slog.Logger) *SystemdSSH {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys, _ := filepath.Glob(hostKeyGlob)
	return &SystemdSSH{bus: newBus(dial), keysDir: keysDir, hostKeys: keys, policy: policy, log: log,
		now: time.Now, mono: monotonic}
}

// SetClock sets the clock the access's end is told on: the licence clock.
// The unit's TTL runs on elapsed time (timeout(1)).
func (s *SystemdSSH) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// monotonic reads CLOCK_MONOTONIC, the clock of systemd's
// *TimestampMonotonic properties.
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return -1
	}
	return time.Duration(ts.Nano())
}

// Open writes the keys, closes any open access, and starts the unit for
// req.TTL, checking that the job succeeded and the unit runs.
func (s *SystemdSSH) Open(ctx context.Context, req SSHRequest) (SSHState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix, port := sshUnitPrefix, SSHUnitPort
	if req.Loopback {
		prefix, port = sshTunnelUnitPrefix, SSHTunnelUnitPort
	}
	if req.Port != port {
		return SSHState{}, fmt.Errorf("the support sshd unit %s*.service listens on port %d only, not %d", prefix, port, req.Port)
	}
	unitPolicy := UnitSSHPolicy()
	switch {
	case req.Loopback && s.policy.User != unitPolicy.User:
		return SSHState{}, fmt.Errorf("the tunnel-mode sshd unit lets in %s alone, not %s: set ssh.user to the unit's value",
			unitPolicy.User, s.policy.User)
	case !req.Loopback && (s.policy.User != unitPolicy.User || !slices.Equal(s.policy.Listen, unitPolicy.Listen)):
		return SSHState{}, fmt.Errorf("the support sshd unit lets in %s alone on %s, not %s on %s: set ssh.user and ssh.listen to the unit's values",
			unitPolicy.User, strings.Join(unitPolicy.Listen, " and "), s.policy.User, strings.Join(s.policy.Listen, " and "))
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
	unit := prefix + strconv.FormatInt(ttl, 10) + ".service"
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

// Close stops every support sshd unit, of both modes, ending its sessions.
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
	unit := units[0]
	st := SSHState{Open: true, Port: SSHUnitPort, HostKeys: Fingerprints(s.hostKeys)}
	if strings.HasPrefix(unit, sshTunnelUnitPrefix) {
		st.Port, st.Loopback = SSHTunnelUnitPort, true
	}
	ttl, ok := unitTTL(unit)
	if !ok {
		return st, nil
	}
	conn, err := s.bus.get(ctx)
	if err != nil {
		return SSHState{}, err
	}
	// The start on the monotonic clock, not the wall clock: the time left
	// is then right whatever the local clock was set to, and the end is
	// told on the licence clock from it.
	p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveEnterTimestampMonotonic")
	if err != nil {
		s.bus.drop()
		return SSHState{}, fmt.Errorf("reading the start time of %s: %w", unit, err)
	}
	usec, ok := p.Value.Value().(uint64)
	if !ok || usec == 0 || usec > math.MaxInt64/1000 {
		return st, nil
	}
	if s.until.unit != unit || s.until.start != usec {
		left := time.Duration(usec)*time.Microsecond + ttl - s.mono()
		s.until = unitUntil{unit: unit, start: usec, until: s.now().Round(0).Add(left)}
	}
	st.Until = s.until.until
	return st, nil
}

// unitMaxTTL is the longest instance the unit template takes, in seconds.
const unitMaxTTL = 99999

// unitTTL reads the TTL of a unit's instance, of either template.
func unitTTL(unit string) (time.Duration, bool) {
	inst, ok := strings.CutPrefix(unit, sshUnitPrefix)
	if !ok {
		inst, ok = strings.CutPrefix(unit, sshTunnelUnitPrefix)
	}
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
	list, err := conn.ListUnitsByPatternsContext(ctx, []string{"active", "activating", "reloading"},
		[]string{SSHUnitPattern, SSHTunnelUnitPattern})
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
