// Package state persists one JSON document so that a crash or a power cut
// at any moment leaves either the old or the new document loadable, and so
// that the document's format can evolve across upgrades.
//
// Files in Options.Dir (mode 0700; every file mode 0600):
//
//	Name          the current document
//	Name.prev     the previous good document: Save rotates Name here first
//	Name.corrupt  the last current file that failed to load, kept for forensics
//	Name.tmp-*    a Save in progress; Open removes those left by a crash
//
// Each file holds one envelope, written on one line:
//
//	{"schema":2,"saved_at":"2025-06-09T10:00:00.123Z","sha256":"<hex>","data":{...}}
//
// schema versions the document inside data; sha256 is the hex SHA-256 of the
// bytes of data exactly as they appear in the file. The checksum catches bit
// rot that still parses as JSON. The envelope itself is not versioned, so it
// must never change incompatibly: a newer build is recognised by its schema.
//
// A File assumes it is the only writer of its files: one owner per piece of
// state.
package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
)

var (
	// ErrNotExist means there is no saved state at all: a first start.
	// errors.Is(err, fs.ErrNotExist) also holds.
	ErrNotExist error = notExistError{}

	// ErrCorrupt means neither the current file nor the previous good copy
	// can be loaded. The operator has to restore or remove them.
	ErrCorrupt = errors.New("state: no usable state file")

	// ErrNewerSchema means the state was written by a newer build, which
	// this one cannot read. Nothing is touched, so reinstalling that build
	// finds its state intact.
	ErrNewerSchema = errors.New("state: written by a newer pbx-agent")
)

type notExistError struct{}

func (notExistError) Error() string { return "state: no saved state" }

// Is makes ErrNotExist match fs.ErrNotExist, so callers that only know the
// standard library's sentinel still recognise a first start.
func (notExistError) Is(target error) bool { return target == fs.ErrNotExist }

// Migration turns the data of one schema into the data of the next one.
// It gets and returns only the document, not the envelope.
type Migration func(old json.RawMessage) (json.RawMessage, error)

// Options configures Open.
type Options struct {
	// Dir holds the files. Open creates it, or tightens it, to mode 0700.
	Dir string
	// Name is the file name of the current document, such as "state.json".
	// It must not contain a path separator.
	Name string
	// Version is the schema this build writes. Files with an older schema
	// are migrated on load; files with a newer one are refused.
	Version int
	// Migrations[N] migrates schema N to N+1. A file that needs a missing
	// step fails to load with an error naming the step.
	Migrations map[int]Migration
	// Logger receives warnings about recoveries. Nil discards them.
	Logger *slog.Logger
}

// LoadInfo describes where a loaded document came from.
type LoadInfo struct {
	// Path is the file the document was read from: Name, or Name.prev after
	// a recovery.
	Path string
	// Schema is the schema found on disk, before any migration.
	Schema int
	// Migrated is true if the document was migrated to Options.Version. The
	// file keeps its old schema until the next Save.
	Migrated bool
	// Recovered is true if the current file was missing or unusable and the
	// previous good copy was loaded instead; RecoveredReason says why.
	Recovered       bool
	RecoveredReason string
	// SavedAt is when the loaded file was saved, as it records.
	SavedAt time.Time
}

// File is one persisted document of type T. Its methods are safe for
// concurrent use.
type File[T any] struct {
	dir, name                   string
	path, prevPath, corruptPath string
	version                     int
	migrations                  map[int]Migration
	log                         *slog.Logger
	mu                          sync.Mutex
	// currentGood records that the file at path is known to be loadable
	// (this process loaded or saved it), so Save may rotate it to .prev
	// without reading it first.
	currentGood bool
}

// Open validates opts, prepares Dir and removes temp files left by an
// interrupted Save. It does not read the document; call Load for that.
func Open[T any](opts Options) (*File[T], error) {
	if opts.Dir == "" {
		return nil, errors.New("state: Options.Dir is empty")
	}
	if err := validName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Version < 1 {
		return nil, fmt.Errorf("state: Options.Version is %d, must be at least 1", opts.Version)
	}
	migrations := make(map[int]Migration, len(opts.Migrations))
	for from, m := range opts.Migrations {
		if from < 1 || from >= opts.Version {
			return nil, fmt.Errorf("state: migration from schema %d is outside 1..%d", from, opts.Version-1)
		}
		if m == nil {
			return nil, fmt.Errorf("state: migration from schema %d is nil", from)
		}
		migrations[from] = m
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	if err := prepareDir(opts.Dir, log); err != nil {
		return nil, err
	}
	path := filepath.Join(opts.Dir, opts.Name)
	f := &File[T]{
		dir:         opts.Dir,
		name:        opts.Name,
		path:        path,
		prevPath:    path + ".prev",
		corruptPath: path + ".corrupt",
		version:     opts.Version,
		migrations:  migrations,
		log:         log,
	}
	f.removeStaleTemps()
	return f, nil
}

func validName(name string) error {
	switch {
	case name == "":
		return errors.New("state: Options.Name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("state: Options.Name %q is not a file name", name)
	case strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator):
		return fmt.Errorf("state: Options.Name %q contains a path separator", name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("state: Options.Name %q contains a NUL byte", name)
	}
	return nil
}

// prepareDir creates dir with mode 0700, or tightens an existing one: the
// state can hold keys and licences that other local users must not read.
func prepareDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state: creating directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state: %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&^0o700 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("state: tightening directory mode: %w", err)
		}
		log.Warn("state: directory was open to other users; tightened it to 0700",
			"dir", dir, "mode", fmt.Sprintf("%#o", perm))
	}
	return nil
}

// removeStaleTemps deletes Name.tmp-* files: a crash during Save leaves its
// temp file behind, and nothing else ever reads it. Failures only cost disk
// space, so they are logged, not returned.
func (f *File[T]) removeStaleTemps() {
	des, err := os.ReadDir(f.dir)
	if err != nil {
		f.log.Warn("state: cannot list directory for stale temp files", "dir", f.dir, "err", err)
		return
	}
	prefix := f.name + ".tmp-"
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), prefix) || !de.Type().IsRegular() {
			continue
		}
		p := filepath.Join(f.dir, de.Name())
		if err := os.Remove(p); err != nil {
			f.log.Warn("state: cannot remove stale temp file", "path", p, "err", err)
			continue
		}
		f.log.Info("state: removed a temp file left by an interrupted save", "path", p)
	}
}

// Path returns the path of the current document.
func (f *File[T]) Path() string { return f.path }

// Save writes v as the new current document. The old current file, if any,
// becomes Name.prev.
//
// The sequence is: write and fsync Name.tmp-*, rename Name to Name.prev,
// rename the temp file to Name, fsync the directory. A crash before the
// second rename leaves Name as it was, or leaves only Name.prev, which Load
// then uses; after it, Name is complete. So every crash loads the old or the
// new document.
//
// Save never rotates an unusable current file over Name.prev (it moves it to
// Name.corrupt instead), and refuses with ErrNewerSchema to replace a file
// written by a newer build.
func (f *File[T]) Save(v T) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state: encoding %s: %w", f.name, err)
	}
	file := encodeEnvelope(f.version, time.Now().UTC(), data)

	f.mu.Lock()
	defer f.mu.Unlock()

	tmp, err := atomicfile.WriteTemp(f.dir, f.name+".tmp-*", file, 0o600)
	if err != nil {
		return fmt.Errorf("state: saving %s: %w", f.name, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(tmp)
		}
	}()

	if err := f.rotate(); err != nil {
		return err
	}
	// From here until the rename below, path is absent or unknown.
	f.currentGood = false
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("state: saving %s: %w", f.name, err)
	}
	renamed = true
	f.currentGood = true
	if err := atomicfile.SyncDir(f.dir); err != nil {
		return fmt.Errorf("state: saving %s: %w", f.name, err)
	}
	return nil
}

// rotate moves the current file out of the way before the new one takes its
// name: to Name.prev if it is good, to Name.corrupt if not, so a corrupt file
// never replaces the last good copy.
func (f *File[T]) rotate() error {
	if !f.currentGood {
		// Only a Save that follows no successful Load or Save gets here;
		// it pays for one read to protect .prev.
		_, _, err := f.read(f.path)
		var bad *badFileError
		switch {
		case errors.Is(err, errMissing):
			return nil
		case errors.Is(err, ErrNewerSchema):
			// Two Saves would push the newer build's state out of
			// .prev too; refuse, as Load did.
			return err
		case errors.As(err, &bad):
			if err := os.Rename(f.path, f.corruptPath); err != nil {
				return fmt.Errorf("state: moving unusable %s aside: %w", f.name, err)
			}
			f.log.Warn("state: current file is unusable; moved it aside instead of keeping it as the previous copy",
				"reason", bad.reason, "path", f.path, "moved_to", f.corruptPath, "prev", f.prevPath)
			return nil
		}
	}
	if err := os.Rename(f.path, f.prevPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: keeping previous copy of %s: %w", f.name, err)
	}
	return nil
}

// Load reads the current document, migrating it to Options.Version if it is
// older.
//
// If the current file is missing or unusable (empty, truncated, not JSON,
// failing its checksum, or not decoding into T), Load falls back to
// Name.prev, logs a warning, reports it in LoadInfo, and moves the bad file
// to Name.corrupt so the next Save cannot rotate it over the good copy.
//
// Errors: ErrNotExist when neither file exists; ErrCorrupt when neither is
// usable; ErrNewerSchema when the file to load was written by a newer build
// (no fallback then, and no file is moved); a plain error when a migration
// is missing or fails.
func (f *File[T]) Load() (T, LoadInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var zero T

	v, info, err := f.read(f.path)
	if err == nil {
		f.currentGood = true
		return v, info, nil
	}
	f.currentGood = false
	curReason, ok := unusableReason(err)
	if !ok {
		return zero, LoadInfo{}, err
	}

	pv, pinfo, perr := f.read(f.prevPath)
	if perr != nil {
		prevReason, ok := unusableReason(perr)
		if !ok {
			return zero, LoadInfo{}, perr
		}
		if errors.Is(err, errMissing) && errors.Is(perr, errMissing) {
			return zero, LoadInfo{}, fmt.Errorf("%w: neither %s nor %s exists", ErrNotExist, f.path, f.prevPath)
		}
		return zero, LoadInfo{}, fmt.Errorf(
			"%w in %s: %s: %s; %s: %s; restore both files from a backup, or move them aside to start afresh",
			ErrCorrupt, f.dir, f.name, curReason, filepath.Base(f.prevPath), prevReason)
	}

	pinfo.Recovered = true
	pinfo.RecoveredReason = f.name + ": " + curReason
	attrs := []any{"reason", curReason, "path", f.path, "prev", f.prevPath}
	if !errors.Is(err, errMissing) {
		// Keep the bad file for forensics, out of Save's way. If this
		// fails, Save checks the file again and retries.
		if err := os.Rename(f.path, f.corruptPath); err != nil {
			attrs = append(attrs, "move_err", err)
		} else {
			attrs = append(attrs, "moved_to", f.corruptPath)
			if err := atomicfile.SyncDir(f.dir); err != nil {
				attrs = append(attrs, "sync_err", err)
			}
		}
	}
	f.log.Warn("state: current file unusable; loaded the previous good copy", attrs...)
	return pv, pinfo, nil
}

// errMissing reports a file that does not exist.
var errMissing = errors.New("missing")

// badFileError reports a file that exists but cannot be used: Load falls
// back from it, Save moves it aside.
type badFileError struct{ reason string }

func (e *badFileError) Error() string { return e.reason }

func bad(format string, args ...any) error {
	return &badFileError{reason: fmt.Sprintf(format, args...)}
}

// unusableReason says why a file cannot be used, and whether that is a
// reason to fall back (false for errors such as ErrNewerSchema that must
// stop the load).
func unusableReason(err error) (string, bool) {
	var b *badFileError
	switch {
	case errors.Is(err, errMissing):
		return "missing", true
	case errors.As(err, &b):
		return b.reason, true
	}
	return "", false
}

// envelope is the on-disk wrapper around the document.
type envelope struct {
	Schema  int             `json:"schema"`
	SavedAt time.Time       `json:"saved_at"`
	SHA256  string          `json:"sha256"`
	Data    json.RawMessage `json:"data"`
}

// encodeEnvelope builds the file by hand rather than with json.Marshal so
// the data bytes in the file are exactly the bytes that were hashed.
func encodeEnvelope(schema int, savedAt time.Time, data []byte) []byte {
	sum := sha256.Sum256(data)
	b := make([]byte, 0, len(data)+160)
	b = append(b, `{"schema":`...)
	b = strconv.AppendInt(b, int64(schema), 10)
	b = append(b, `,"saved_at":"`...)
	b = savedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","sha256":"`...)
	b = hex.AppendEncode(b, sum[:])
	b = append(b, `","data":`...)
	b = append(b, data...)
	b = append(b, "}\n"...)
	return b
}

// read loads one file. Its errors are errMissing, *badFileError, or an
// error that must stop Load (newer schema, failed migration, I/O trouble
// other than reading the content).
func (f *File[T]) read(path string) (T, LoadInfo, error) {
	var zero T
	b, err := readRegular(path)
	if err != nil {
		return zero, LoadInfo{}, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return zero, LoadInfo{}, bad("empty file")
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return zero, LoadInfo{}, bad("not a valid state envelope: %v", err)
	}
	// Checked before the checksum: a newer build may write things this one
	// does not understand, and its file must not be mistaken for corrupt
	// and moved away.
	if env.Schema > f.version {
		return zero, LoadInfo{}, fmt.Errorf(
			"%w (schema %d, this build reads up to %d): %s; install that version again or restore a backup",
			ErrNewerSchema, env.Schema, f.version, path)
	}
	if env.Schema < 1 {
		return zero, LoadInfo{}, bad("missing or invalid schema %d", env.Schema)
	}
	if env.Data == nil {
		return zero, LoadInfo{}, bad("no data")
	}
	want, err := hex.DecodeString(env.SHA256)
	if err != nil || len(want) != sha256.Size {
		return zero, LoadInfo{}, bad("missing or invalid sha256 %q", abbrev(env.SHA256))
	}
	if got := sha256.Sum256(env.Data); !bytes.Equal(got[:], want) {
		return zero, LoadInfo{}, bad("checksum mismatch: data hashes to %s, file records %s",
			abbrev(hex.EncodeToString(got[:])), abbrev(env.SHA256))
	}

	info := LoadInfo{Path: path, Schema: env.Schema, SavedAt: env.SavedAt}
	data := env.Data
	for s := env.Schema; s < f.version; s++ {
		m := f.migrations[s]
		if m == nil {
			return zero, LoadInfo{}, fmt.Errorf(
				"state: %s has schema %d, but this build has no migration from schema %d to %d (it reads up to %d); install a version that can migrate it, or restore a backup",
				path, env.Schema, s, s+1, f.version)
		}
		if data, err = m(data); err != nil {
			return zero, LoadInfo{}, fmt.Errorf("state: migrating %s from schema %d to %d: %w", path, s, s+1, err)
		}
		info.Migrated = true
	}

	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		if info.Migrated {
			// The checksum held, so the migration produced this: a bug
			// to fix in the build, not a file to throw away.
			return zero, LoadInfo{}, fmt.Errorf("state: decoding %s after migrating it from schema %d: %w", path, env.Schema, err)
		}
		return zero, LoadInfo{}, bad("data does not decode: %v", err)
	}
	return v, info, nil
}

// abbrev shortens a hex digest for messages; a corrupt file can hold
// anything in its place.
func abbrev(s string) string {
	const n = 16
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// readRegular reads path without following a symlink at its last element:
// the state file is only ever a regular file written by Save, and anything
// else there is treated as unusable rather than followed elsewhere.
func readRegular(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errMissing
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, bad("not a regular file (%v)", fi.Mode().Type())
	}
	fd, err := openNoFollow(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errMissing
	case isSymlinkErr(err):
		return nil, bad("not a regular file (symlink)")
	case err != nil:
		return nil, fmt.Errorf("state: %w", err)
	}
	defer fd.Close()
	// Re-check on the open file: the name may have been swapped since the
	// Lstat.
	fi, err = fd.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, bad("not a regular file")
	}
	var buf bytes.Buffer
	buf.Grow(int(fi.Size()) + bytes.MinRead)
	if _, err := buf.ReadFrom(fd); err != nil {
		// A read error on an open regular file is a bad sector or similar:
		// the content is lost, so the previous copy is the way out.
		return nil, bad("reading: %v", err)
	}
	return buf.Bytes(), nil
}
