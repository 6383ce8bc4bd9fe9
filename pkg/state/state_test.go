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
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type doc struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

const name = "state.json"

func newDoc(seq int) doc {
	return doc{Seq: seq, Pad: strings.Repeat("abcdefgh", 16) + fmt.Sprint(seq)}
}

// open opens a File[doc] in dir with version 1, logging into the returned
// buffer so tests can check warnings.
func open(t *testing.T, dir string) (*File[doc], *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	f, err := Open[doc](Options{Dir: dir, Name: name, Version: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return f, &logs
}

func save(t *testing.T, f *File[doc], v doc) {
	t.Helper()
	if err := f.Save(v); err != nil {
		t.Fatalf("Save(%d): %v", v.Seq, err)
	}
}

// snapshot maps each file name in dir to its content, to prove a call
// changed nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			m[de.Name()] = "<" + de.Type().String() + ">"
			continue
		}
		m[de.Name()] = string(b)
	}
	return m
}

// readDoc decodes the document in a state file without going through File,
// checking the envelope on the way.
func readDoc(t *testing.T, path string) doc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	sum := sha256.Sum256(env.Data)
	if env.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("%s: checksum mismatch", path)
	}
	var d doc
	if err := json.Unmarshal(env.Data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

// writeEnvelope writes a file with a correct checksum around data.
func writeEnvelope(t *testing.T, path string, schema int, data string) {
	t.Helper()
	if err := os.WriteFile(path, encodeEnvelope(schema, time.Now().UTC(), []byte(data)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		saves []doc
	}{
		{name: "one save", saves: []doc{newDoc(1)}},
		{name: "three saves", saves: []doc{newDoc(1), newDoc(2), newDoc(3)}},
		{name: "html and unicode", saves: []doc{{Seq: 1, Pad: `<a href="x">&amp;</a> é 日本 \ "`}}},
		{name: "zero value", saves: []doc{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f, _ := open(t, dir)
			before := time.Now()
			for _, d := range tt.saves {
				save(t, f, d)
			}
			want := tt.saves[len(tt.saves)-1]

			// A fresh File, as after a restart.
			g, _ := open(t, dir)
			got, info, err := g.Load()
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got != want {
				t.Errorf("Load = %+v, want %+v", got, want)
			}
			if info.Path != filepath.Join(dir, name) || info.Schema != 1 || info.Migrated || info.Recovered {
				t.Errorf("LoadInfo = %+v, want the current file, schema 1, not migrated or recovered", info)
			}
			if info.SavedAt.Location() != time.UTC || info.SavedAt.Before(before.Add(-time.Second)) {
				t.Errorf("SavedAt = %v, want a recent UTC time", info.SavedAt)
			}
			if len(tt.saves) > 1 {
				if prev := readDoc(t, filepath.Join(dir, name+".prev")); prev != tt.saves[len(tt.saves)-2] {
					t.Errorf(".prev holds %+v, want %+v", prev, tt.saves[len(tt.saves)-2])
				}
			}
		})
	}
}

func TestEnvelopeFormat(t *testing.T) {
	dir := t.TempDir()
	f, _ := open(t, dir)
	save(t, f, doc{Seq: 7, Pad: "p"})
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	keys := strings.Join(slices.Sorted(maps.Keys(raw)), ",")
	if keys != "data,saved_at,schema,sha256" {
		t.Errorf("envelope keys = %s", keys)
	}
	if string(raw["schema"]) != "1" || string(raw["data"]) != `{"seq":7,"pad":"p"}` {
		t.Errorf("schema = %s, data = %s", raw["schema"], raw["data"])
	}
	var savedAt string
	if err := json.Unmarshal(raw["saved_at"], &savedAt); err != nil {
		t.Fatal(err)
	}
	if ts, err := time.Parse(time.RFC3339Nano, savedAt); err != nil || !strings.HasSuffix(savedAt, "Z") || ts.IsZero() {
		t.Errorf("saved_at = %q (%v), want RFC 3339 UTC", savedAt, err)
	}
	sum := sha256.Sum256(raw["data"])
	if want := `"` + hex.EncodeToString(sum[:]) + `"`; string(raw["sha256"]) != want {
		t.Errorf("sha256 = %s, want %s", raw["sha256"], want)
	}
}

func TestFreshStart(t *testing.T) {
	f, _ := open(t, filepath.Join(t.TempDir(), "new"))
	_, _, err := f.Load()
	if !errors.Is(err, ErrNotExist) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load = %v, want ErrNotExist that is also fs.ErrNotExist", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Errorf("a fresh start reports ErrCorrupt: %v", err)
	}
	// A first Save then works as usual.
	save(t, f, newDoc(1))
	if got, _, err := f.Load(); err != nil || got != newDoc(1) {
		t.Errorf("Load after first Save = %+v, %v", got, err)
	}
}

// Each case starts from current = doc 2, .prev = doc 1, breaks the current
// file and expects Load to return doc 1.
func TestFallbackToPrev(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, path string)
		reason  string // expected in RecoveredReason and the log
	}{
		{
			name:    "empty current",
			corrupt: func(t *testing.T, p string) { mustWrite(t, p, "") },
			reason:  "empty file",
		},
		{
			name:    "whitespace only",
			corrupt: func(t *testing.T, p string) { mustWrite(t, p, "\n\n") },
			reason:  "empty file",
		},
		{
			name: "truncated current",
			corrupt: func(t *testing.T, p string) {
				b := mustRead(t, p)
				mustWrite(t, p, string(b[:len(b)/2]))
			},
			reason: "not a valid state envelope",
		},
		{
			name: "bit flip in data",
			corrupt: func(t *testing.T, p string) {
				b := mustRead(t, p)
				i := bytes.Index(b, []byte("abcdefgh"))
				b[i+1] ^= 0x01 // 'b' becomes 'c': still valid JSON
				mustWrite(t, p, string(b))
			},
			reason: "checksum mismatch",
		},
		{
			name:    "not JSON",
			corrupt: func(t *testing.T, p string) { mustWrite(t, p, "\x00\x00garbage") },
			reason:  "not a valid state envelope",
		},
		{
			name:    "schema missing",
			corrupt: func(t *testing.T, p string) { mustWrite(t, p, `{"data":{}}`) },
			reason:  "missing or invalid schema 0",
		},
		{
			name:    "sha256 missing",
			corrupt: func(t *testing.T, p string) { mustWrite(t, p, `{"schema":1,"data":{"seq":2}}`) },
			reason:  "missing or invalid sha256",
		},
		{
			name:    "data does not decode into T",
			corrupt: func(t *testing.T, p string) { writeEnvelope(t, p, 1, `{"seq":"two"}`) },
			reason:  "data does not decode",
		},
		{
			name: "symlink to a valid file is not followed",
			corrupt: func(t *testing.T, p string) {
				elsewhere := filepath.Join(t.TempDir(), "elsewhere")
				writeEnvelope(t, elsewhere, 1, `{"seq":99}`)
				mustRemove(t, p)
				if err := os.Symlink(elsewhere, p); err != nil {
					t.Fatal(err)
				}
			},
			reason: "not a regular file",
		},
		{
			name:    "missing current (crash between the renames)",
			corrupt: func(t *testing.T, p string) { mustRemove(t, p) },
			reason:  "missing",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			w, _ := open(t, dir)
			save(t, w, newDoc(1))
			save(t, w, newDoc(2))
			tt.corrupt(t, path)
			broken, brokenErr := os.Lstat(path)
			var brokenBytes []byte
			if brokenErr == nil && broken.Mode().IsRegular() {
				brokenBytes = mustRead(t, path)
			}

			f, logs := open(t, dir)
			got, info, err := f.Load()
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got != newDoc(1) {
				t.Errorf("Load = %+v, want the .prev document", got)
			}
			if !info.Recovered || info.Path != path+".prev" || !strings.Contains(info.RecoveredReason, tt.reason) {
				t.Errorf("LoadInfo = %+v, want recovered from .prev because %q", info, tt.reason)
			}
			log := logs.String()
			if !strings.Contains(log, "level=WARN") || !strings.Contains(log, tt.reason) ||
				!strings.Contains(log, path) || !strings.Contains(log, path+".prev") {
				t.Errorf("log does not warn with the reason and both paths:\n%s", log)
			}

			// The bad file is set aside, byte for byte, and the current name is free.
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("current file still present after fallback (err %v)", err)
			}
			if brokenErr == nil {
				fi, err := os.Lstat(path + ".corrupt")
				if err != nil {
					t.Fatalf(".corrupt: %v", err)
				}
				if brokenBytes != nil && string(mustRead(t, path+".corrupt")) != string(brokenBytes) {
					t.Error(".corrupt does not hold the bad file's bytes")
				}
				if fi.Mode().Type() != broken.Mode().Type() {
					t.Errorf(".corrupt has type %v, want %v", fi.Mode().Type(), broken.Mode().Type())
				}
			}

			// Nothing is lost: the next Save keeps the recovered state as .prev.
			save(t, f, newDoc(3))
			if prev := readDoc(t, path+".prev"); prev != newDoc(1) {
				t.Errorf(".prev after Save = %+v, want the recovered %+v", prev, newDoc(1))
			}
			if cur := readDoc(t, path); cur != newDoc(3) {
				t.Errorf("current after Save = %+v, want %+v", cur, newDoc(3))
			}
			if got, info, err := f.Load(); err != nil || got != newDoc(3) || info.Recovered {
				t.Errorf("Load after Save = %+v, %+v, %v", got, info, err)
			}
		})
	}
}

func TestNothingUsable(t *testing.T) {
	tests := []struct {
		name      string
		cur, prev *string // nil: file absent
		want      []string
	}{
		{name: "both corrupt", cur: ptr("garbage"), prev: ptr(""), want: []string{"not a valid state envelope", "empty file"}},
		{name: "current missing, prev corrupt", prev: ptr("{"), want: []string{name + ": missing", "not a valid state envelope"}},
		{name: "current corrupt, prev missing", cur: ptr("{}"), want: []string{"missing or invalid schema", ".prev: missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			if tt.cur != nil {
				mustWrite(t, path, *tt.cur)
			}
			if tt.prev != nil {
				mustWrite(t, path+".prev", *tt.prev)
			}
			before := snapshot(t, dir)

			f, _ := open(t, dir)
			_, _, err := f.Load()
			if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotExist) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
			msg := err.Error()
			for _, s := range append(tt.want, dir, name, name+".prev", "backup") {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not mention %q", msg, s)
				}
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("files changed: %q -> %q", before, after)
			}
		})
	}
}

func TestNewerSchema(t *testing.T) {
	tests := []struct {
		name      string
		cur, prev func(t *testing.T, path string)
		wantPath  string
	}{
		{
			name:     "current newer, prev valid: no fallback",
			cur:      func(t *testing.T, p string) { writeEnvelope(t, p, 3, `{"seq":2,"new":true}`) },
			prev:     func(t *testing.T, p string) { writeEnvelope(t, p, 2, `{"seq":1}`) },
			wantPath: name,
		},
		{
			name:     "current newer with a bad checksum is still newer",
			cur:      func(t *testing.T, p string) { mustWrite(t, p, `{"schema":9,"sha256":"future","data":{}}`) },
			prev:     func(t *testing.T, p string) { writeEnvelope(t, p, 2, `{"seq":1}`) },
			wantPath: name,
		},
		{
			name:     "current corrupt, prev newer",
			cur:      func(t *testing.T, p string) { mustWrite(t, p, "") },
			prev:     func(t *testing.T, p string) { writeEnvelope(t, p, 3, `{"seq":1}`) },
			wantPath: name + ".prev",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			tt.cur(t, path)
			tt.prev(t, path+".prev")
			before := snapshot(t, dir)

			f, err := Open[doc](Options{Dir: dir, Name: name, Version: 2, Migrations: map[int]Migration{1: identity}})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = f.Load()
			if !errors.Is(err, ErrNewerSchema) {
				t.Fatalf("Load = %v, want ErrNewerSchema", err)
			}
			for _, s := range []string{"newer pbx-agent", "this build reads up to 2", "install that version again or restore a backup", tt.wantPath} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("files changed: %q -> %q", before, after)
			}
		})
	}
}

func identity(old json.RawMessage) (json.RawMessage, error) { return old, nil }

// Three generations of one document, as a future pbx-agent might evolve it.
type (
	docV1 struct {
		Name string `json:"name"`
	}
	docV2 struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	docV3 struct {
		FullName string `json:"full_name"`
		Count    int    `json:"count"`
	}
)

// migrations1to3 counts the steps it runs, so tests see which ones ran.
func migrations1to3(calls *[]int) map[int]Migration {
	return map[int]Migration{
		1: func(old json.RawMessage) (json.RawMessage, error) { // add count
			*calls = append(*calls, 1)
			var v docV1
			if err := json.Unmarshal(old, &v); err != nil {
				return nil, err
			}
			return json.Marshal(docV2{Name: v.Name, Count: 1})
		},
		2: func(old json.RawMessage) (json.RawMessage, error) { // rename name
			*calls = append(*calls, 2)
			var v docV2
			if err := json.Unmarshal(old, &v); err != nil {
				return nil, err
			}
			return json.Marshal(docV3{FullName: v.Name, Count: v.Count})
		},
	}
}

func TestMigration(t *testing.T) {
	tests := []struct {
		name      string
		write     func(t *testing.T, dir string) // the file an older build left
		want      docV3
		schema    int
		wantCalls []int
	}{
		{
			name: "v1 through v2 to v3",
			write: func(t *testing.T, dir string) {
				f, err := Open[docV1](Options{Dir: dir, Name: name, Version: 1})
				if err != nil {
					t.Fatal(err)
				}
				if err := f.Save(docV1{Name: "pbx"}); err != nil {
					t.Fatal(err)
				}
			},
			want:      docV3{FullName: "pbx", Count: 1},
			schema:    1,
			wantCalls: []int{1, 2},
		},
		{
			name: "v2 to v3",
			write: func(t *testing.T, dir string) {
				f, err := Open[docV2](Options{Dir: dir, Name: name, Version: 2, Migrations: map[int]Migration{1: identity}})
				if err != nil {
					t.Fatal(err)
				}
				if err := f.Save(docV2{Name: "pbx", Count: 5}); err != nil {
					t.Fatal(err)
				}
			},
			want:      docV3{FullName: "pbx", Count: 5},
			schema:    2,
			wantCalls: []int{2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			tt.write(t, dir)
			onDisk := mustRead(t, path)

			var calls []int
			f, err := Open[docV3](Options{Dir: dir, Name: name, Version: 3, Migrations: migrations1to3(&calls)})
			if err != nil {
				t.Fatal(err)
			}
			got, info, err := f.Load()
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got != tt.want || !info.Migrated || info.Schema != tt.schema || info.Recovered {
				t.Errorf("Load = %+v, %+v; want %+v migrated from schema %d", got, info, tt.want, tt.schema)
			}
			if fmt.Sprint(calls) != fmt.Sprint(tt.wantCalls) {
				t.Errorf("migrations ran %v, want %v", calls, tt.wantCalls)
			}
			if !bytes.Equal(mustRead(t, path), onDisk) {
				t.Error("Load rewrote the file; it must wait for the next Save")
			}

			// The next Save writes schema 3 and keeps the old file as .prev.
			if err := f.Save(got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustRead(t, path+".prev"), onDisk) {
				t.Error(".prev is not the pre-migration file")
			}
			calls = nil
			got, info, err = f.Load()
			if err != nil || got != tt.want || info.Migrated || info.Schema != 3 || len(calls) != 0 {
				t.Errorf("Load after Save = %+v, %+v, %v (migrations %v); want schema 3 unmigrated", got, info, err, calls)
			}
		})
	}
}

func TestMigrationFailure(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name       string
		migrations map[int]Migration
		want       string
		wantErr    error
	}{
		{
			name:       "missing step",
			migrations: map[int]Migration{2: identity},
			want:       "no migration from schema 1 to 2",
		},
		{
			name: "step fails",
			migrations: map[int]Migration{
				1: identity,
				2: func(json.RawMessage) (json.RawMessage, error) { return nil, errBoom },
			},
			want:    "migrating",
			wantErr: errBoom,
		},
		{
			name: "step produces data that does not decode",
			migrations: map[int]Migration{
				1: identity,
				2: func(json.RawMessage) (json.RawMessage, error) { return json.RawMessage(`{"count":"x"}`), nil },
			},
			want: "after migrating it from schema 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			writeEnvelope(t, path, 1, `{"name":"pbx"}`)
			writeEnvelope(t, path+".prev", 1, `{"name":"old"}`)
			before := snapshot(t, dir)

			f, err := Open[docV3](Options{Dir: dir, Name: name, Version: 3, Migrations: tt.migrations})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = f.Load()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Load = %v, want an error naming %s and %q", err, path, tt.want)
			}
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotExist) || errors.Is(err, ErrNewerSchema) {
				t.Errorf("a migration failure looks like another condition: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErr)
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("files changed: %q -> %q", before, after)
			}
		})
	}
}

func TestModes(t *testing.T) {
	tests := []struct {
		name     string
		existing os.FileMode // 0: the folder does not exist yet
		warn     bool
	}{
		{name: "new folder"},
		{name: "existing 0700", existing: 0o700},
		{name: "existing 0755 is tightened", existing: 0o755, warn: true},
		{name: "existing 0701 is tightened", existing: 0o701, warn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a", "state")
			if tt.existing != 0 {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			f, logs := open(t, dir)
			if got := mode(t, dir); got != 0o700 {
				t.Errorf("folder mode = %#o, want 0700", got)
			}
			if warned := strings.Contains(logs.String(), "level=WARN"); warned != tt.warn {
				t.Errorf("warned = %v, want %v; log:\n%s", warned, tt.warn, logs)
			}
			save(t, f, newDoc(1))
			save(t, f, newDoc(2))
			for _, p := range []string{f.Path(), f.Path() + ".prev"} {
				if got := mode(t, p); got != 0o600 {
					t.Errorf("%s mode = %#o, want 0600", filepath.Base(p), got)
				}
			}
		})
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpenValidation(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	mustWrite(t, notDir, "x")
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "no dir", opts: Options{Name: name, Version: 1}, want: "Dir is empty"},
		{name: "no name", opts: Options{Dir: dir, Version: 1}, want: "Name is empty"},
		{name: "name with slash", opts: Options{Dir: dir, Name: "a/b", Version: 1}, want: "path separator"},
		{name: "name dot dot", opts: Options{Dir: dir, Name: "..", Version: 1}, want: "not a file name"},
		{name: "version 0", opts: Options{Dir: dir, Name: name}, want: "at least 1"},
		{name: "migration from current version", opts: Options{Dir: dir, Name: name, Version: 2, Migrations: map[int]Migration{2: identity}}, want: "outside 1..1"},
		{name: "migration from 0", opts: Options{Dir: dir, Name: name, Version: 2, Migrations: map[int]Migration{0: identity}}, want: "outside"},
		{name: "nil migration", opts: Options{Dir: dir, Name: name, Version: 2, Migrations: map[int]Migration{1: nil}}, want: "is nil"},
		{name: "dir is a file", opts: Options{Dir: notDir, Name: name, Version: 1}, want: "state: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open[doc](tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "state: ") {
				t.Errorf("Open = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// A Save without a prior Load must not rotate a corrupt current file over
// the good .prev.
func TestSaveOverCorruptWithoutLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	w, _ := open(t, dir)
	save(t, w, newDoc(1))
	save(t, w, newDoc(2))
	mustWrite(t, path, "rotten")

	f, logs := open(t, dir)
	save(t, f, newDoc(3))
	if prev := readDoc(t, path+".prev"); prev != newDoc(1) {
		t.Errorf(".prev = %+v, want the last good %+v", prev, newDoc(1))
	}
	if got := string(mustRead(t, path+".corrupt")); got != "rotten" {
		t.Errorf(".corrupt = %q", got)
	}
	if !strings.Contains(logs.String(), "moved it aside") {
		t.Errorf("no warning logged:\n%s", logs)
	}
}

func TestOpenRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, name+".tmp-12345")
	other := filepath.Join(dir, "other.json.tmp-1")
	mustWrite(t, stale, "half a save")
	mustWrite(t, other, "not ours")
	open(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temp file survived Open: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("Open removed another file's temp: %v", err)
	}
}

func TestSaveEncodeError(t *testing.T) {
	dir := t.TempDir()
	f, err := Open[map[string]any](Options{Dir: dir, Name: name, Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Save(map[string]any{"f": func() {}}); err == nil || !strings.HasPrefix(err.Error(), "state: encoding") {
		t.Errorf("Save = %v, want an encoding error", err)
	}
	if names := snapshot(t, dir); len(names) != 0 {
		t.Errorf("files left behind: %q", names)
	}
}

func TestConcurrentUse(t *testing.T) {
	f, _ := open(t, t.TempDir())
	save(t, f, newDoc(0))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5 {
				if err := f.Save(newDoc(g*100 + i)); err != nil {
					t.Error(err)
				}
				if _, _, err := f.Load(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if _, info, err := f.Load(); err != nil || info.Recovered {
		t.Errorf("Load = %+v, %v", info, err)
	}
}

func BenchmarkSave(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			f, err := Open[doc](Options{Dir: b.TempDir(), Name: name, Version: 1})
			if err != nil {
				b.Fatal(err)
			}
			d := doc{Pad: strings.Repeat("x", size)}
			b.SetBytes(int64(size))
			for b.Loop() {
				d.Seq++
				if err := f.Save(d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// A Save that ignores Load's ErrNewerSchema must not overwrite the newer
// build's state either.
func TestSaveRefusesOverNewerSchema(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	writeEnvelope(t, path, 5, `{"seq":9}`)
	before := snapshot(t, dir)
	f, _ := open(t, dir)
	if err := f.Save(newDoc(1)); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("Save = %v, want ErrNewerSchema", err)
	}
	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Errorf("files changed: %q -> %q", before, after)
	}
}
