package users

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
)

// benchUsers is the size of the user database the benchmarks count.
const benchUsers = 100_000

var benchDB struct {
	once sync.Once
	path string
	dir  string
}

// bigDB makes, once per run, a database of benchUsers users spread over
// the profiles.
func bigDB(b *testing.B) string {
	benchDB.once.Do(func() {
		dir, err := mkdirTemp()
		if err != nil {
			b.Fatal(err)
		}
		benchDB.dir, benchDB.path = dir, filepath.Join(dir, "users.db")
		makeDB(b, benchDB.path, true, map[string]int{
			"uc-premium": 40_000, "uc-business": 25_000, "uc-essential": 15_000,
			"pbx-basic": 15_000, "uc-wizyconf": 2_000, "pbx-service": 3_000,
		}).Close()
	})
	if benchDB.path == "" {
		b.Fatal("no benchmark database")
	}
	return benchDB.path
}

// BenchmarkSQLiteCount100k counts 100,000 users with the default query,
// opening the database read-only as the agent does every interval. Its
// baseline, measured first in the same run, is the bare SELECT COUNT(*) of
// the same table through the same driver: the least a count can cost. The
// count reports users counted per second and its time against the
// baseline (x-baseline).
func BenchmarkSQLiteCount100k(b *testing.B) {
	path := bigDB(b)
	var baseNs float64
	b.Run("baseline=bare-count", func(b *testing.B) {
		for b.Loop() {
			db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
			if err != nil {
				b.Fatal(err)
			}
			var n int
			if err := db.QueryRow("SELECT COUNT(*) FROM users").Scan(&n); err != nil || n != benchUsers {
				b.Fatal(n, err)
			}
			db.Close()
		}
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("count", func(b *testing.B) {
		benchCount(b, path)
		perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(benchUsers/(perOp/1e9), "users/s")
		if baseNs > 0 {
			b.ReportMetric(perOp/baseNs, "x-baseline")
		}
	})
}

// benchCount counts the benchUsers users of the database at path with the
// agent's source and default query, b.N times. Each count is a new source,
// so each queries the database: what a count costs when the WMS changed it.
func benchCount(b *testing.B, path string) {
	ctx := context.Background()
	for b.Loop() {
		s, err := NewSQLite(path, DefaultQuery)
		if err != nil {
			b.Fatal(err)
		}
		c, err := s.Count(ctx)
		if err != nil || c.Total() != benchUsers {
			b.Fatal(c, err)
		}
	}
}

// BenchmarkSQLiteCountUnchanged is the agent's count on an idle PBX: 1,000
// users in a WAL database that a WMS keeps open, counted again with
// nothing changed. Its baseline, measured first in the same run, is the
// same count querying the database, as every count did before counts
// were answered from the last query while the files stay unchanged.
func BenchmarkSQLiteCountUnchanged(b *testing.B) {
	path := filepath.Join(b.TempDir(), "users.db")
	wms := makeDB(b, path, true, map[string]int{"uc-premium": 600, "uc-business": 300, "pbx-basic": 100})
	defer wms.Close()
	ctx := context.Background()
	var baseNs float64
	b.Run("baseline=query", func(b *testing.B) {
		for b.Loop() {
			s, _ := NewSQLite(path, DefaultQuery)
			if c, err := s.Count(ctx); err != nil || c.Total() != 1000 {
				b.Fatal(c, err)
			}
		}
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("unchanged", func(b *testing.B) {
		s, _ := NewSQLite(path, DefaultQuery)
		for b.Loop() {
			if c, err := s.Count(ctx); err != nil || c.Total() != 1000 {
				b.Fatal(c, err)
			}
		}
		if perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N); baseNs > 0 {
			b.ReportMetric(perOp/baseNs, "x-baseline")
		}
	})
}
