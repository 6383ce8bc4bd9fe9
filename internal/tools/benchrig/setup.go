package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver the agent reads users with
)

// rig holds what every measurement shares: the binaries, a work folder
// and the portal simulator.
type rig struct {
	bin     string   // folder with pbx-agent and pbx-portal-sim
	env     []string // extra environment of the agents
	work    string
	portal  *daemon
	simAddr string
	stops   []func() // undone in reverse by close
}

func (r *rig) agentBin() string { return filepath.Join(r.bin, "pbx-agent") }

func (r *rig) close() {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
}

// startPortal runs the simulator on loopback, telling agents a 60 s
// heartbeat.
func (r *rig) startPortal(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	r.simAddr = addr
	r.portal, err = startDaemon("pbx-portal-sim", filepath.Join(r.work, "portal.log"), nil,
		filepath.Join(r.bin, "pbx-portal-sim"), "serve", "--listen", addr, "--data", filepath.Join(r.work, "portal"), "--interval", "60s")
	if err != nil {
		return err
	}
	r.stops = append(r.stops, r.portal.stop)
	return poll(ctx, 15*time.Second, "portal simulator up", func() error {
		if err := r.portal.alive(); err != nil {
			return err
		}
		_, err := r.sim(ctx, "clock")
		return err
	})
}

// sim runs an admin command of the simulator and returns its stdout.
func (r *rig) sim(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "", filepath.Join(r.bin, "pbx-portal-sim"), append([]string{"--portal", "http://" + r.simAddr}, args...)...)
}

// run runs a program to its end and returns its stdout; a failure
// carries its stderr.
func run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// agent is one pbx-agent with its own folders, configuration and user
// database.
type agent struct {
	name   string
	dir    string
	config string
	socket string
	http   string         // the read-only TCP listener: status, metrics
	proxy  *countingProxy // between the agent and the portal
	d      *daemon
}

// newAgent writes the configuration of an agent that talks to the
// portal through a counting proxy of its own, with heartbeat interval
// every and a user database holding users.
func (r *rig) newAgent(name string, every time.Duration, users map[string]int) (*agent, error) {
	dir := filepath.Join(r.work, name)
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	db := filepath.Join(dir, "users.db")
	if err := seedUsers(db, users); err != nil {
		return nil, fmt.Errorf("user database of %s: %w", name, err)
	}
	proxy, err := newCountingProxy(r.simAddr)
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, proxy.close)
	a := &agent{name: name, dir: dir, config: filepath.Join(dir, "agent.yaml"),
		socket: filepath.Join(dir, "run", "agent.sock"), http: httpAddr, proxy: proxy}
	cfg := fmt.Sprintf(`portal:
  url: http://%s
  keyring: %s
state_dir: %s/state
runtime_dir: %s/run
listen:
  http: %s
  socket: %s
heartbeat:
  interval: %s
identity:
  model: WPBX-VM
  serial: bench-%s
users:
  sqlite:
    path: %s
`, proxy.addr(), filepath.Join(r.work, "portal", "keyring"), dir, dir, httpAddr, a.socket, every, name, db)
	return a, os.WriteFile(a.config, []byte(cfg), 0o600)
}

// start runs the agent's daemon and waits until its socket answers.
func (r *rig) start(ctx context.Context, a *agent) error {
	var err error
	a.d, err = startDaemon(a.name, filepath.Join(a.dir, "agent.log"), r.env, r.agentBin(), "--config", a.config, "run")
	if err != nil {
		return err
	}
	r.stops = append(r.stops, a.d.stop)
	return poll(ctx, 15*time.Second, a.name+" up", func() error {
		if err := a.d.alive(); err != nil {
			return err
		}
		_, err := r.cli(ctx, a, "", "status", "--json")
		if stateExit(err) {
			return nil
		}
		return err
	})
}

// stateExit reports whether a run of `pbx-agent status` reached the
// daemon: it exits 0 where the PBX may take new users and 10 to 19 in
// the other states (unactivated, before the activation); 2 when it could
// not ask.
func stateExit(err error) bool {
	var ee *exec.ExitError
	if err == nil {
		return true
	}
	if !errors.As(err, &ee) {
		return false
	}
	code := ee.ExitCode()
	return code >= 10 && code <= 19
}

func (r *rig) cli(ctx context.Context, a *agent, stdin string, args ...string) (string, error) {
	return run(ctx, stdin, r.agentBin(), append([]string{"--config", a.config}, args...)...)
}

// activate creates a PBX on the portal with the licences given
// (profile=count) and activates the agent with its key.
func (r *rig) activate(ctx context.Context, a *agent, licences ...string) error {
	args := []string{"pbx", "create", "--name", a.name + ".bench", "--model", "WPBX-VM", "--term", "monthly"}
	for _, l := range licences {
		args = append(args, "--users", l)
	}
	key, err := r.sim(ctx, args...)
	if err != nil {
		return err
	}
	if _, err := r.cli(ctx, a, key, "activate"); err != nil {
		return err
	}
	return poll(ctx, 15*time.Second, a.name+" active", func() error {
		out, err := r.cli(ctx, a, "", "status", "--json")
		if err != nil {
			return err
		}
		var st struct{ State string }
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if st.State != "active" {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
}

// seedUsers makes a WMS-like user table: one row per user, with its
// profile, as the agent's default query counts them.
func seedUsers(path string, counts map[string]int) error {
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath())
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, profile TEXT NOT NULL)"); err != nil {
		return err
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for profile, n := range counts {
		for i := range n {
			if _, err := tx.Exec("INSERT INTO users (name, profile) VALUES (?, ?)", fmt.Sprintf("%s %d", profile, i+1), profile); err != nil {
				tx.Rollback()
				return err
			}
		}
	}
	return tx.Commit()
}
