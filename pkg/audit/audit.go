// Package audit keeps an append-only, size-capped log of events as JSON
// lines in a folder: audit.log, and audit.log.1 for the lines before it.
//
// Each event is written with one write(2) on a file opened O_APPEND and
// fsynced before Append returns, so an event Append reported is on disk. A
// power cut can at worst leave a torn last line, which the next Append
// moves past and Read reports as unreadable. When audit.log would grow past
// the cap, it is renamed to audit.log.1 (replacing the previous one) and a
// new audit.log begins: the log never takes more than twice the cap.
//
// The package keeps no state between calls besides the lock of a Log, so
// the files can be read while the log is written.
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
)

// File names in the log's folder.
const (
	FileName    = "audit.log"
	OldFileName = FileName + ".1"
)

// DefaultMaxSize caps audit.log; the rotated audit.log.1 holds as much again.
const DefaultMaxSize = 1 << 20

// MaxFieldLen bounds a string field: longer ones are cut, so one event
// (a portal's error message, say) cannot crowd out the others.
const MaxFieldLen = 1024

// KindUnreadable marks a line Read could not decode; its fields name the
// file and the line number.
const KindUnreadable = "audit.unreadable"

// Event is one line of the log.
type Event struct {
	Time   time.Time      `json:"time,omitzero"` // the caller's clock; for pbx-agent, the licence clock
	Kind   string         `json:"kind"`
	Fields map[string]any `json:"fields,omitempty"`
}

// Log appends events to the log in one folder. Its methods are safe for
// concurrent use; two Logs on the same folder in one process are not.
type Log struct {
	dir     string
	maxSize int64

	mu sync.Mutex
}

// Options configures Open.
type Options struct {
	MaxSize int64 // the cap of audit.log in bytes; zero is DefaultMaxSize
}

// Open returns the log in dir, which must exist. It creates audit.log
// (mode 0600) if missing, so a folder that cannot hold the log is an error
// at start rather than at the first event.
func Open(dir string, opts Options) (*Log, error) {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	l := &Log{dir: dir, maxSize: opts.MaxSize}
	f, created, err := l.open()
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if created {
		if err := atomicfile.SyncDir(dir); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
	}
	return l, nil
}

// Path is the file events are appended to.
func (l *Log) Path() string { return filepath.Join(l.dir, FileName) }

func (l *Log) open() (f *os.File, created bool, err error) {
	path := l.Path()
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
		created = true
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit log: %w", err)
	}
	// O_CREATE applies the umask; the log is 0600 whatever it is.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("audit log: %w", err)
	}
	return f, created, nil
}

// Append writes e as one line and fsyncs it. Long string fields are cut to
// MaxFieldLen bytes.
func (l *Log) Append(e Event) error {
	line, err := encode(e)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()

	f, created, err := l.open()
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	size := fi.Size()
	if size > 0 && size+int64(len(line)) > l.maxSize {
		f.Close()
		f = nil
		if err := l.rotate(); err != nil {
			return err
		}
		if f, _, err = l.open(); err != nil {
			return err
		}
		created, size = true, 0
	}
	if size > 0 && !endsWithNewline(f, size) {
		// A torn line from a power cut: start this event on a line of its own.
		line = append([]byte{'\n'}, line...)
	}
	if _, err := f.Write(line); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if created {
		if err := atomicfile.SyncDir(l.dir); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
	}
	return nil
}

// rotate moves audit.log to audit.log.1, replacing it, and makes the rename
// durable.
func (l *Log) rotate() error {
	if err := os.Rename(l.Path(), filepath.Join(l.dir, OldFileName)); err != nil {
		return fmt.Errorf("audit log: rotating: %w", err)
	}
	if err := atomicfile.SyncDir(l.dir); err != nil {
		return fmt.Errorf("audit log: rotating: %w", err)
	}
	return nil
}

func endsWithNewline(f *os.File, size int64) bool {
	// The file is open for writing only: read the last byte through a
	// second descriptor.
	r, err := os.Open(f.Name())
	if err != nil {
		return true // cannot tell; do not add a blank line
	}
	defer r.Close()
	b := make([]byte, 1)
	if _, err := r.ReadAt(b, size-1); err != nil {
		return true
	}
	return b[0] == '\n'
}

func encode(e Event) ([]byte, error) {
	if e.Kind == "" {
		return nil, errors.New("audit log: an event needs a kind")
	}
	e.Time = e.Time.UTC()
	if len(e.Fields) > 0 {
		fields := make(map[string]any, len(e.Fields))
		for k, v := range e.Fields {
			if s, ok := v.(string); ok {
				v = cut(s, MaxFieldLen)
			}
			fields[k] = v
		}
		e.Fields = fields
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("audit log: encoding a %s event: %w", e.Kind, err)
	}
	return append(b, '\n'), nil
}

// cut shortens s to at most n bytes on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	s = s[:n-len(mark)]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + mark
}

// Read returns every event of the log in dir, oldest first: audit.log.1,
// then audit.log. A line that does not decode becomes a KindUnreadable
// event in its place. A folder without a log has no events.
func Read(dir string) ([]Event, error) {
	var out []Event
	for _, name := range []string{OldFileName, FileName} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the audit log: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 0, 64<<10), len(b)+1)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var e Event
			if err := json.Unmarshal(line, &e); err != nil || e.Kind == "" {
				e = Event{Kind: KindUnreadable, Fields: map[string]any{"file": name, "line": n}}
			}
			out = append(out, e)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading the audit log %s: %w", name, err)
		}
	}
	return out, nil
}
