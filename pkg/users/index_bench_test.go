package users

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkSQLiteCount100kIndexed shows what an index on the profile
// column does to the agent's count of 100,000 users: the default query
// groups by profile, which without an index scans and sorts the table.
// Its baseline, measured first in the same run, is the count of the same
// users without the index; the WMS owns its schema, so this is advice to
// integrators, not something the agent can do (it opens the database
// read-only).
func BenchmarkSQLiteCount100kIndexed(b *testing.B) {
	plain := bigDB(b)
	indexed := filepath.Join(b.TempDir(), "users.db")
	data, err := os.ReadFile(plain)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(indexed, data, 0o600); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+indexed)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec("CREATE INDEX users_profile ON users(profile)"); err != nil {
		b.Fatal(err)
	}
	db.Close()

	b.Run("baseline=no-index", func(b *testing.B) { benchCount(b, plain) })
	b.Run("index-on-profile", func(b *testing.B) { benchCount(b, indexed) })
}
