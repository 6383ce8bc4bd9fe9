package users

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"modernc.org/sqlite" // the "sqlite" driver: pure Go, no cgo

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// DefaultQuery counts the users of a WMS database with a users table
// holding a profile column.
const DefaultQuery = "SELECT profile, COUNT(*) FROM users GROUP BY profile"

// busyTimeoutMS is how long a count waits for a writer's lock. In WAL mode
// readers never wait on writers; in rollback mode they wait this long.
const busyTimeoutMS = 5000

// SQLite result codes (the low byte of an extended code) met opening a
// WAL database read-only.
const (
	sqliteReadonly = 8
	sqliteCantOpen = 14
)

// SQLite counts users with a query on the WMS's SQLite database, opened
// read-only (mode=ro): the agent never writes to it, and a read-only mount
// (the daemon's unit makes the system read-only) is fine.
//
// A database in WAL mode is read through its -wal and -shm files, which
// the WMS creates when it opens the database: the agent's user must be
// able to read them. With the WMS's folder group pbx-agent and setgid
// (chmod 2750), and the database 0640, the files the WMS creates there get
// group pbx-agent and mode 0640 (SQLite gives the -wal and -shm files the
// database's mode). The agent cannot write the -shm file, so SQLite reads
// the WAL without shared memory: correctly, a little slower.
// `immutable=1` would read without the WAL's files but ignore the WAL, and
// so miss the newest users: it is used only when there is no -wal file
// (the WMS closed the database, which folds the WAL into the database and
// removes it), when SQLite cannot open a WAL database read-only without
// creating the file, and the count is kept only if the database did not
// change while it was read.
//
// Each count that queries opens the database afresh, so a database
// replaced or created after the agent started is found, and the agent
// holds no file of the WMS's open between counts (the WMS keeps removing
// its -wal file when it closes the database).
//
// A count whose files have not changed since the last query is answered
// from that query (see unchanged): an idle PBX then costs two stat calls
// per count instead of opening the database and reading every user.
type SQLite struct {
	path  string
	query string

	mu   sync.Mutex // guards last
	last lastQuery
}

// lastQuery is the answer of the last query and the files it read.
type lastQuery struct {
	files  [2]fileSig // the database and its -wal file
	counts license.Counts
	reused int // counts answered from it since
}

// maxReused bounds the counts answered from one query: whatever the files
// say, every (maxReused+1)th count queries the database again, so a
// change the files' signatures missed is seen within that many counts (5
// minutes at the default 10 s interval).
const maxReused = 29

// fileSig is what a committed write changes in a file: which file it is,
// its size, its modification time and its first 32 bytes. A file that
// does not exist has the zero signature.
type fileSig struct {
	dev, ino uint64
	size     int64
	mtime    int64 // nanoseconds
	head     [32]byte
}

// sigOf signs the file at path; ok is false when it could not be read for
// another reason than not existing, and then nothing can be concluded.
func sigOf(path string) (sig fileSig, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return fileSig{}, errors.Is(err, fs.ErrNotExist)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fileSig{}, false
	}
	sig = fileSig{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano()}
	if _, err := f.ReadAt(sig.head[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return fileSig{}, false
	}
	return sig, true
}

// files signs the database and its -wal file. Every commit changes one of
// them: in rollback mode it rewrites the database file and increments the
// change counter in its header; in WAL mode it appends to the -wal file
// or, after a checkpoint reset it, writes it again from the start under
// new salts in its header; the WMS closing the database removes the -wal
// file; a database replaced is another inode. Only two commits in WAL
// mode within one reset of the -wal file, not growing it, and within one
// tick of the kernel's coarse clock, with a count between them, leave
// both signatures as they were: maxReused bounds how long that goes
// unseen. ok is false when either file could not be read.
func (s *SQLite) files() (sigs [2]fileSig, ok bool) {
	db, okDB := sigOf(s.path)
	wal, okWAL := sigOf(s.path + "-wal")
	return [2]fileSig{db, wal}, okDB && okWAL && db != (fileSig{})
}

// NewSQLite returns the source for the database at path and a query that
// yields rows of (profile, count).
func NewSQLite(path, query string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("users.sqlite.path: empty")
	}
	if strings.TrimSpace(query) == "" {
		return nil, errors.New("users.sqlite.query: empty")
	}
	return &SQLite{path: path, query: query}, nil
}

func (s *SQLite) String() string { return "sqlite " + s.path }

// dsn is the database's URI: read-only, query-only, with a busy timeout;
// with immutable, without locks or the WAL's files.
func (s *SQLite) dsn(immutable bool) string {
	u := url.URL{Path: s.path}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", fmt.Sprint(busyTimeoutMS))
	q.Set("_query_only", "1")
	if immutable {
		q.Set("immutable", "1")
	}
	return "file:" + u.EscapedPath() + "?" + q.Encode()
}

// Count runs the query. Its rows are (profile, count): the profile an id
// or display name, the count a whole number; rows of one profile add up.
// NULL profiles and unknown profiles are errors, as are other columns.
//
// When neither the database file nor its -wal file changed since the last
// query (see files), the answer is that query's, up to maxReused times in
// a row.
func (s *SQLite) Count(ctx context.Context) (license.Counts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before, ok := s.files()
	if ok && s.last.counts != nil && s.last.files == before && s.last.reused < maxReused {
		s.last.reused++
		return maps.Clone(s.last.counts), nil
	}
	s.last = lastQuery{}
	c, err := s.countWith(ctx, s.dsn(false))
	if err != nil && s.closedWAL(err) {
		c, err = s.countClosed(ctx, err)
	}
	if err != nil {
		return nil, fmt.Errorf("users source %s: %w", s, err)
	}
	// Kept only if the files did not change while the query ran: a commit
	// meanwhile may or may not be in the answer.
	if after, ok2 := s.files(); ok && ok2 && after == before {
		s.last = lastQuery{files: before, counts: maps.Clone(c)}
	}
	return c, nil
}

// closedWAL reports whether err is SQLite refusing to open a WAL database
// read-only because it would have to create the WAL's files, which are
// absent: the WMS has closed the database.
func (s *SQLite) closedWAL(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	if code := se.Code() & 0xff; code != sqliteReadonly && code != sqliteCantOpen {
		return false
	}
	_, werr := os.Stat(s.path + "-wal")
	return errors.Is(werr, fs.ErrNotExist)
}

// countClosed reads a WAL database the WMS has closed as immutable: all of
// it is in the database file then. A writer that opens it meanwhile shows
// as a -wal file or a changed database file, and the count is dropped for
// the first error, first.
func (s *SQLite) countClosed(ctx context.Context, first error) (license.Counts, error) {
	before, err := os.Stat(s.path)
	if err != nil {
		return nil, first
	}
	c, err := s.countWith(ctx, s.dsn(true))
	if err != nil {
		return nil, err
	}
	after, err := os.Stat(s.path)
	_, werr := os.Stat(s.path + "-wal")
	if err != nil || !errors.Is(werr, fs.ErrNotExist) || !sameFile(before, after) {
		return nil, fmt.Errorf("%w (and the database changed while read without the WAL: counted again next time)", first)
	}
	return c, nil
}

func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func (s *SQLite) countWith(ctx context.Context, dsn string) (license.Counts, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(time.Minute)
	rows, err := db.QueryContext(ctx, s.query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if len(cols) != 2 {
		return nil, fmt.Errorf("users.sqlite.query yields %d columns (%s): want 2, profile and count", len(cols), strings.Join(cols, ", "))
	}
	c := license.Counts{}
	n := 0
	for rows.Next() {
		n++
		var profile sql.NullString
		var count sql.NullInt64
		if err := rows.Scan(&profile, &count); err != nil {
			return nil, fmt.Errorf("row %d: %w", n, err)
		}
		switch {
		case !profile.Valid:
			return nil, fmt.Errorf("row %d: the profile is NULL: give every user a profile, or leave such users out in users.sqlite.query", n)
		case !count.Valid || count.Int64 < 0:
			return nil, fmt.Errorf("row %d: profile %q: the count is not a whole number, zero or more", n, profile.String)
		}
		if err := add(c, profile.String, count.Int64); err != nil {
			return nil, fmt.Errorf("row %d: %w", n, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

var _ Source = (*SQLite)(nil)
