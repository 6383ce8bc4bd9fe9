package users

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestParseAnswer(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    license.Counts
		wantErr string
	}{
		{name: "ids", in: `{"profiles": {"uc-premium": 8, "pbx-basic": 2}}`, want: license.Counts{license.UCPremium: 8, license.PBXBasic: 2}},
		{name: "display names add up", in: `{"profiles": {"UC-Premium": 3, "uc-premium": 1}}`, want: license.Counts{license.UCPremium: 4}},
		{name: "empty profiles", in: `{"profiles": {}}`, want: license.Counts{}},
		{name: "trailing space", in: "{\"profiles\": {\"pbx-service\": 0}}\n", want: license.Counts{license.PBXService: 0}},
		{name: "empty", in: "", wantErr: "answer: empty"},
		{name: "not JSON", in: "uc-premium=3", wantErr: "answer: not {"},
		{name: "no profiles", in: `{}`, wantErr: `no "profiles" object`},
		{name: "null profiles", in: `{"profiles": null}`, wantErr: `no "profiles" object`},
		{name: "unknown field", in: `{"profiles": {}, "extra": 1}`, wantErr: `unknown field "extra"`},
		{name: "unknown profile", in: `{"profiles": {"uc-gold": 1}}`, wantErr: `unknown profile "uc-gold"`},
		{name: "negative", in: `{"profiles": {"uc-premium": -1}}`, wantErr: "not a whole number from 0"},
		{name: "fraction", in: `{"profiles": {"uc-premium": 1.5}}`, wantErr: "not a whole number from 0"},
		{name: "huge", in: `{"profiles": {"uc-premium": 1e30}}`, wantErr: "not a whole number from 0"},
		{name: "string count", in: `{"profiles": {"uc-premium": "many"}}`, wantErr: "answer: not {"},
		{name: "two values", in: `{"profiles": {}} {"profiles": {}}`, wantErr: "more than one JSON value"},
		{name: "an array", in: `[1, 2]`, wantErr: "answer: not {"},
		{name: "too large", in: `{"profiles": {"uc-premium": 1` + strings.Repeat(" ", MaxAnswerBytes) + `}}`, wantErr: "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAnswer([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseAnswer = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{`{"profiles": {"uc-premium": 8}}`, `{"profiles": {}}`, `{}`, `[`, `{"profiles": {"UC-Premium": 1e3}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseAnswer(b)
		if err != nil {
			return
		}
		if verr := c.Validate(); verr != nil {
			t.Fatalf("accepted %q as %v, which does not validate: %v", b, c, verr)
		}
	})
}

// makeDB creates a SQLite database at path with a users table and the
// given users per profile name, through the same driver the agent reads
// with.
func makeDB(t testing.TB, path string, wal bool, users map[string]int) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	stmts := []string{"CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, profile TEXT)"}
	if wal {
		stmts = append([]string{"PRAGMA journal_mode=WAL"}, stmts...)
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	insert(t, db, users)
	return db
}

func insert(t testing.TB, db *sql.DB, users map[string]int) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	st, err := tx.Prepare("INSERT INTO users (name, profile) VALUES (?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	for p, n := range users {
		for i := range n {
			var profile any = p
			if p == "NULL" {
				profile = nil
			}
			if _, err := st.Exec(fmt.Sprintf("%s-%d", p, i), profile); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := filepath.Join(dir, "users.db")
	makeDB(t, good, false, map[string]int{"uc-premium": 3, "UC-Premium": 1, "pbx-basic": 2}).Close()
	nulls := filepath.Join(dir, "nulls.db")
	makeDB(t, nulls, false, map[string]int{"uc-premium": 1, "NULL": 1}).Close()
	unknown := filepath.Join(dir, "unknown.db")
	makeDB(t, unknown, false, map[string]int{"uc-gold": 1}).Close()
	notDB := filepath.Join(dir, "not.db")
	if err := os.WriteFile(notDB, []byte("this is not a database, but long enough to look like one's header......"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    string
		query   string
		want    license.Counts
		wantErr string
	}{
		{name: "default query; spellings add up", path: good, query: DefaultQuery,
			want: license.Counts{license.UCPremium: 4, license.PBXBasic: 2}},
		{name: "a query of its own", path: good, query: "SELECT 'uc-essential', 7",
			want: license.Counts{license.UCEssential: 7}},
		{name: "no rows", path: good, query: "SELECT profile, COUNT(*) FROM users WHERE 0 GROUP BY profile", want: license.Counts{}},
		{name: "missing file", path: filepath.Join(dir, "missing.db"), query: DefaultQuery, wantErr: "unable to open database file"},
		{name: "not a database", path: notDB, query: DefaultQuery, wantErr: "not a database"},
		{name: "no such table", path: good, query: "SELECT profile, COUNT(*) FROM accounts GROUP BY profile", wantErr: "no such table: accounts"},
		{name: "three columns", path: good, query: "SELECT profile, COUNT(*), 1 FROM users GROUP BY profile", wantErr: "yields 3 columns"},
		{name: "NULL profile", path: nulls, query: DefaultQuery, wantErr: "the profile is NULL"},
		{name: "unknown profile", path: unknown, query: DefaultQuery, wantErr: `unknown profile "uc-gold"`},
		{name: "text count", path: good, query: "SELECT 'uc-premium', 'many'", wantErr: "row 1"},
		{name: "fractional count", path: good, query: "SELECT 'uc-premium', 1.5", wantErr: "row 1"},
		{name: "negative count", path: good, query: "SELECT 'uc-premium', -1", wantErr: "not a whole number"},
		{name: "NULL count", path: good, query: "SELECT 'uc-premium', NULL", wantErr: "not a whole number"},
		{name: "read-only: a write is refused", path: good, query: "DELETE FROM users RETURNING profile, 1", wantErr: "readonly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSQLite(tt.path, tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Count(ctx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "users source sqlite "+tt.path+": ") {
					t.Errorf("err = %q: does not name the source", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Count = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	t.Run("the database is untouched", func(t *testing.T) {
		s, _ := NewSQLite(good, DefaultQuery)
		if got, err := s.Count(ctx); err != nil || got[license.UCPremium] != 4 {
			t.Fatalf("after a refused write: %v, %v", got, err)
		}
	})
	t.Run("a path with odd characters", func(t *testing.T) {
		odd := filepath.Join(dir, "odd dir?#%", "users.db")
		if err := os.MkdirAll(filepath.Dir(odd), 0o755); err != nil {
			t.Fatal(err)
		}
		makeDB(t, odd, false, map[string]int{"pbx-service": 1}).Close()
		s, _ := NewSQLite(odd, DefaultQuery)
		if got, err := s.Count(ctx); err != nil || got[license.PBXService] != 1 {
			t.Fatalf("Count = %v, %v", got, err)
		}
	})
	t.Run("config errors", func(t *testing.T) {
		if _, err := NewSQLite("", DefaultQuery); err == nil {
			t.Error("empty path accepted")
		}
		if _, err := NewSQLite(good, " "); err == nil {
			t.Error("empty query accepted")
		}
	})
}

func TestSQLiteWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	writer := makeDB(t, path, true, map[string]int{"uc-premium": 3})
	defer writer.Close()
	if _, err := writer.Exec("PRAGMA wal_autocheckpoint=0"); err != nil {
		t.Fatal(err)
	}
	s, _ := NewSQLite(path, DefaultQuery)
	for i, want := range []int{3, 5, 6} {
		if i > 0 {
			insert(t, writer, map[string]int{"uc-premium": want - 3 - (i-1)*2})
		}
		got, err := s.Count(context.Background())
		if err != nil || got[license.UCPremium] != want {
			t.Fatalf("count %d: %v, %v; want %d uc-premium", i, got, err, want)
		}
	}
}

func TestCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		argv    []string
		timeout time.Duration
		want    license.Counts
		wantErr string
	}{
		{name: "answer", argv: []string{script("ok", `echo '{"profiles": {"uc-premium": 8}}'`)}, want: license.Counts{license.UCPremium: 8}},
		{name: "arguments, no shell", argv: []string{"/bin/echo", `{"profiles": {"pbx-basic": 2}}`, "$(reboot)"}, wantErr: "more than one JSON value"},
		{name: "arguments passed as they are", argv: []string{"/bin/echo", `{"profiles": {"pbx-basic": 2}}`}, want: license.Counts{license.PBXBasic: 2}},
		{name: "exit status", argv: []string{script("fail", "echo 'database locked' >&2; exit 3")}, wantErr: "exit status 3: database locked"},
		{name: "malformed", argv: []string{script("bad", "echo uc-premium=3")}, wantErr: "answer: not {"},
		{name: "timeout kills the group", argv: []string{script("slow", "sleep 30 & sleep 30; echo '{}'")}, timeout: 200 * time.Millisecond, wantErr: "no answer within 200ms"},
		{name: "too much", argv: []string{script("chatty", "yes")}, wantErr: "printed more than"},
		{name: "missing", argv: []string{filepath.Join(dir, "missing")}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			c, err := NewCommand(tt.argv, timeout)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, err := c.Count(ctx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("took %v: the process group was not killed", d)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Count = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := NewCommand(nil, time.Second); err == nil {
		t.Error("empty argv accepted")
	}
}

func TestHTTP(t *testing.T) {
	var mu sync.Mutex
	answer, status := "", http.StatusOK
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			<-release
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		mu.Lock()
		a, st := answer, status
		mu.Unlock()
		w.WriteHeader(st)
		fmt.Fprint(w, a)
	}))
	defer srv.Close()
	defer close(release)

	tests := []struct {
		name, path, answer string
		status             int
		want               license.Counts
		wantErr            string
	}{
		{name: "answer", path: "/users", answer: `{"profiles": {"uc-business": 4}}`, status: 200, want: license.Counts{license.UCBusiness: 4}},
		{name: "status", path: "/users", answer: "down", status: 503, wantErr: "answered 503 Service Unavailable"},
		{name: "malformed", path: "/users", answer: `{"profiles": {"uc-business": "4"`, status: 200, wantErr: "answer: not {"},
		{name: "redirect", path: "/redirect", status: 200, wantErr: "answered 302 Found"},
		{name: "timeout", path: "/slow", status: 200, wantErr: "no answer within 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			answer, status = tt.answer, tt.status
			mu.Unlock()
			h, err := NewHTTP(srv.URL+tt.path+"?token=secret", 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(h.String(), "secret") {
				t.Errorf("String() = %q shows the query", h)
			}
			got, err := h.Count(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Count = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	t.Run("a refused connection shows no token", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		h, _ := NewHTTP("http://"+addr+"/users?token=secret", time.Second)
		_, err = h.Count(context.Background())
		if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("err = %v", err)
		}
	})
	for _, bad := range []string{"", "ftp://x/y", "http://", ":"} {
		if _, err := NewHTTP(bad, time.Second); err == nil {
			t.Errorf("NewHTTP(%q) accepted", bad)
		}
	}
}

// mkdirTemp is a folder for data shared by benchmarks, removed by TestMain.
func mkdirTemp() (string, error) { return os.MkdirTemp("", "pbx-users-bench-") }
