// Command seedusers makes or extends a WMS-like SQLite user database for
// the demo and the appliance rig, with the driver the agent reads it with:
//
//	seedusers -db users.db [-wal] [-hold] uc-premium=3 pbx-basic=1
//
// It creates the users table (id, name, profile) when missing and adds
// the users asked for. With -wal the database is in WAL mode and left
// uncheckpointed, so new users live in the -wal file as under a running
// WMS; with -hold it then keeps the database open until killed, as a WMS
// does, so the -wal and -shm files stay for other writers and readers.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/pbx-agent/pbx-agent/pkg/license"

	_ "modernc.org/sqlite"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "seedusers:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("seedusers", flag.ContinueOnError)
	path := fs.String("db", "", "the database `FILE`")
	wal := fs.Bool("wal", false, "WAL mode, no automatic checkpoint")
	hold := fs.Bool("hold", false, "keep the database open until killed")
	mode := fs.String("mode", "0640", "file mode of a new database (its -wal and -shm files get the same)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("-db is required")
	}
	perm, err := strconv.ParseUint(*mode, 8, 32)
	if err != nil {
		return fmt.Errorf("-mode %q: %w", *mode, err)
	}
	add := license.Counts{}
	for _, a := range fs.Args() {
		name, n, ok := strings.Cut(a, "=")
		p, err := license.ParseProfile(name)
		count, cerr := strconv.Atoi(n)
		if !ok || err != nil || cerr != nil || count < 0 {
			return fmt.Errorf("%q: want profile=count, e.g. uc-premium=3", a)
		}
		add[p] += count
	}
	// SQLite makes the database 0644 less the umask, and its -wal and
	// -shm files with the database's mode.
	syscall.Umask(int(0o777 &^ perm))
	_, statErr := os.Stat(*path)
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: *path}).EscapedPath()+"?_busy_timeout=5000")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	stmts := []string{"CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, profile TEXT NOT NULL)"}
	if *wal {
		stmts = append([]string{"PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0"}, stmts...)
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	if os.IsNotExist(statErr) {
		if err := os.Chmod(*path, os.FileMode(perm)); err != nil {
			return err
		}
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for _, info := range license.Profiles() {
		for i := range add[info.ID] {
			if _, err := tx.Exec("INSERT INTO users (name, profile) VALUES (?, ?)", fmt.Sprintf("%s user %d", info.Name, i+1), string(info.ID)); err != nil {
				tx.Rollback()
				return err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if *hold {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
	}
	return nil
}
