package users

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// The WAL test runs this test binary again as two other users: a WMS that
// writes the database and keeps it open, and the agent that reads it. The
// role comes in the environment.
const roleEnv = "PBX_USERS_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		code := m.Run()
		if benchDB.dir != "" {
			os.RemoveAll(benchDB.dir)
		}
		os.Exit(code)
	case "writer":
		os.Exit(writerRole(os.Args[len(os.Args)-1]))
	case "reader":
		os.Exit(readerRole(os.Args[len(os.Args)-1]))
	}
	os.Exit(2)
}

// writerRole is the WMS: it creates the database in WAL mode, 0640, never
// checkpoints (so new users live in the -wal file only), and adds users of
// uc-premium as stdin asks ("add N"), answering "ok" once committed.
func writerRole(path string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "writer:", err); return 1 }
	syscall.Umask(0o027)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, s := range []string{"PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0",
		"CREATE TABLE users (id INTEGER PRIMARY KEY, profile TEXT NOT NULL)"} {
		if _, err := db.Exec(s); err != nil {
			return fail(err)
		}
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(in.Text(), "add "))
		if err != nil {
			return fail(err)
		}
		tx, err := db.Begin()
		if err != nil {
			return fail(err)
		}
		for range n {
			if _, err := tx.Exec("INSERT INTO users (profile) VALUES ('uc-premium')"); err != nil {
				return fail(err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fail(err)
		}
		fmt.Println("ok")
	}
	return 0
}

// readerRole is the agent: one source, kept, counting at each line of
// stdin and printing each count as a line of JSON, or the error.
func readerRole(path string) int {
	s, err := NewSQLite(path, DefaultQuery)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	in, out := bufio.NewScanner(os.Stdin), json.NewEncoder(os.Stdout)
	for in.Scan() {
		c, err := s.Count(context.Background())
		if err != nil {
			out.Encode(map[string]string{"error": err.Error()})
			continue
		}
		out.Encode(c)
	}
	return 0
}

// TestSQLiteWALOtherUsers has a WMS (one uid) write a WAL database while
// the agent (another uid, in the folder's group) counts it, with no right
// to write the folder or the WAL's files: SQLite reads the WAL without a
// writable -shm. It needs root to take the two uids.
func TestSQLiteWALOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run the WMS and the agent as two other users")
	}
	const wmsUID, agentUID, agentGID = 64101, 64102, 64100 // nobody's: numbers need no passwd entry

	// A folder the two users can reach, with a copy of this binary they
	// can run (the go tool's build folder is root's alone).
	base, err := os.MkdirTemp("", "pbx-users-wal-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "users.test")
	copyFile(t, self, bin, 0o755)

	// The WMS's folder, as the README tells integrators: the WMS's own,
	// group pbx-agent (here agentGID), setgid, not writable by the group.
	wms := filepath.Join(base, "wms")
	if err := os.Mkdir(wms, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(wms, wmsUID, agentGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(wms, 0o750|os.ModeSetgid); err != nil { // chmod 2750
		t.Fatal(err)
	}
	db := filepath.Join(wms, "users.db")

	writer := exec.Command(bin, db)
	writer.Env = append(os.Environ(), roleEnv+"=writer")
	writer.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: wmsUID, Gid: wmsUID}}
	stdin, err := writer.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := writer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	writer.Stderr = &stderr
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); writer.Wait() })
	replies := bufio.NewScanner(stdout)
	add := func(n int) {
		t.Helper()
		fmt.Fprintf(stdin, "add %d\n", n)
		if !replies.Scan() || replies.Text() != "ok" {
			t.Fatalf("the writer did not add %d users: %q %v; stderr: %s", n, replies.Text(), replies.Err(), stderr.String())
		}
	}
	// The agent: one process for the whole test, as the daemon keeps its
	// source (and what it last counted) from one count to the next.
	reader := exec.Command(bin, db)
	reader.Env = append(os.Environ(), roleEnv+"=reader")
	reader.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentUID, Groups: []uint32{agentGID}}}
	rin, err := reader.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	rout, err := reader.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var rerr strings.Builder
	reader.Stderr = &rerr
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rin.Close(); reader.Wait() })
	counts := bufio.NewScanner(rout)
	count := func() (license.Counts, error) {
		t.Helper()
		fmt.Fprintln(rin, "count")
		if !counts.Scan() {
			return nil, fmt.Errorf("the reader stopped: %v: %s", counts.Err(), rerr.String())
		}
		var failed struct{ Error string }
		if json.Unmarshal(counts.Bytes(), &failed) == nil && failed.Error != "" {
			return nil, errors.New(failed.Error)
		}
		var c license.Counts
		return c, json.Unmarshal(counts.Bytes(), &c)
	}

	add(3)
	// The files the WMS made: its own, in the folder's group, 0640: the
	// agent may read them and write none.
	for _, name := range []string{"users.db", "users.db-wal", "users.db-shm"} {
		fi, err := os.Stat(filepath.Join(wms, name))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != wmsUID || st.Gid != agentGID || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: uid %d gid %d mode %v; want %d, %d, 0640", name, st.Uid, st.Gid, fi.Mode().Perm(), wmsUID, agentGID)
		}
	}
	want := 3
	for _, n := range []int{0, 2, 1000, 1} {
		add(n)
		want += n
		for range 2 { // the second answered from the first, the files unchanged
			c, err := count()
			if err != nil || c[license.UCPremium] != want {
				t.Fatalf("the agent counted %v, %v; want %d uc-premium (the newest only in the -wal file)", c, err, want)
			}
		}
	}
	// The WMS closes the database: SQLite folds the WAL into it and removes
	// the -wal and -shm files, and the agent, which could not create them,
	// reads the database file alone.
	stdin.Close()
	if err := writer.Wait(); err != nil {
		t.Fatalf("writer: %v: %s", err, stderr.String())
	}
	if _, err := os.Stat(db + "-wal"); !os.IsNotExist(err) {
		t.Fatalf("the -wal file after the WMS closed the database: %v", err)
	}
	if c, err := count(); err != nil || c[license.UCPremium] != want {
		t.Fatalf("with the WMS stopped, the agent counted %v, %v; want %d uc-premium", c, err, want)
	}
	// Nothing the agent did changed the folder: no file of its own.
	entries, _ := os.ReadDir(wms)
	for _, e := range entries {
		fi, _ := e.Info()
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != wmsUID {
			t.Errorf("%s belongs to uid %d", e.Name(), st.Uid)
		}
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
