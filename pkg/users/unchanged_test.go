package users

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// TestSQLiteSeesEveryCommit changes the database between counts in ways
// that keep its size: a count answered from the last query must still
// see each of them, in rollback mode and in WAL mode.
func TestSQLiteSeesEveryCommit(t *testing.T) {
	for _, wal := range []bool{false, true} {
		t.Run("wal="+strconv.FormatBool(wal), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.db")
			db := makeDB(t, path, wal, map[string]int{"uc-premium": 3, "pbx-basic": 2})
			defer db.Close()
			s, _ := NewSQLite(path, DefaultQuery)
			expect := func(what string, want license.Counts) {
				t.Helper()
				for range 2 { // the second from the last query, if the files agree
					got, err := s.Count(context.Background())
					if err != nil || !maps.Equal(got, want) {
						t.Fatalf("%s: counted %v, %v; want %v", what, got, err, want)
					}
				}
			}
			// exec commits q, then puts the files' modification times
			// back: as two commits within one tick of the kernel's
			// coarse clock leave them.
			exec := func(q string) {
				t.Helper()
				times := map[string]time.Time{}
				for _, p := range []string{path, path + "-wal"} {
					if fi, err := os.Stat(p); err == nil {
						times[p] = fi.ModTime()
					}
				}
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
				for p, mt := range times {
					if err := os.Chtimes(p, mt, mt); err != nil {
						t.Fatal(err)
					}
				}
			}
			expect("at first", license.Counts{license.UCPremium: 3, license.PBXBasic: 2})
			// An upgrade: one row rewritten in place, no page added.
			exec("UPDATE users SET profile = 'uc-premium' WHERE id = (SELECT MIN(id) FROM users WHERE profile = 'pbx-basic')")
			expect("after an upgrade", license.Counts{license.UCPremium: 4, license.PBXBasic: 1})
			exec("UPDATE users SET profile = 'pbx-basic' WHERE id = (SELECT MIN(id) FROM users WHERE profile = 'uc-premium')")
			expect("after a downgrade", license.Counts{license.UCPremium: 3, license.PBXBasic: 2})
			if wal {
				// A checkpoint that resets the -wal file, then commits
				// written again from its start.
				exec("PRAGMA wal_checkpoint(RESTART)")
				exec("DELETE FROM users WHERE profile = 'pbx-basic'")
				expect("after a reset of the WAL", license.Counts{license.UCPremium: 3})
				exec("PRAGMA wal_checkpoint(TRUNCATE)")
				insert(t, db, map[string]int{"uc-business": 1})
				expect("after the WAL was truncated", license.Counts{license.UCPremium: 3, license.UCBusiness: 1})
			}
		})
	}
}

// TestSQLiteReplacedOrMoved: a database replaced by another file, moved
// away and brought back is counted anew each time.
func TestSQLiteReplacedOrMoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.db")
	makeDB(t, path, false, map[string]int{"uc-premium": 3}).Close()
	other := filepath.Join(dir, "other.db")
	makeDB(t, other, false, map[string]int{"uc-premium": 7}).Close()
	s, _ := NewSQLite(path, DefaultQuery)
	count := func() (int, error) {
		c, err := s.Count(context.Background())
		return c[license.UCPremium], err
	}
	if n, err := count(); err != nil || n != 3 {
		t.Fatalf("at first: %d, %v", n, err)
	}
	if err := os.Rename(path, path+".away"); err != nil {
		t.Fatal(err)
	}
	if n, err := count(); err == nil {
		t.Fatalf("moved away: counted %d, want an error", n)
	}
	if err := os.Rename(other, path); err != nil { // another database, same name
		t.Fatal(err)
	}
	if n, err := count(); err != nil || n != 7 {
		t.Fatalf("replaced: %d, %v; want 7", n, err)
	}
	if err := os.Rename(path+".away", path); err != nil {
		t.Fatal(err)
	}
	if n, err := count(); err != nil || n != 3 {
		t.Fatalf("brought back: %d, %v; want 3", n, err)
	}
}

// TestSQLiteReuseIsBounded: with its files unchanged, the database is
// queried again after maxReused counts answered from the last query. The
// query answers a random count, so a count that queried shows.
func TestSQLiteReuseIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	makeDB(t, path, false, nil).Close()
	s, _ := NewSQLite(path, "SELECT 'uc-premium', abs(random()) % 1000000000")
	var seen []int
	for range maxReused + 2 {
		c, err := s.Count(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, c[license.UCPremium])
	}
	for i := 1; i <= maxReused; i++ {
		if seen[i] != seen[0] {
			t.Fatalf("count %d queried again with the files unchanged: %v", i, seen)
		}
	}
	if seen[maxReused+1] == seen[0] {
		t.Errorf("count %d still answered from the first query: %v", maxReused+1, seen)
	}
}
