package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fuzzDoc is schema 2. Schema 1 data is any JSON value, which migration 1
// wraps under "v1", so every schema-1 file with a valid checksum decodes.
type fuzzDoc struct {
	Seq  int             `json:"seq"`
	Name string          `json:"name"`
	V1   json.RawMessage `json:"v1,omitempty"`
}

func wrapV1(old json.RawMessage) (json.RawMessage, error) {
	return json.Marshal(fuzzDoc{V1: old})
}

// FuzzLoad puts arbitrary bytes in the current file, next to a valid .prev.
// Load must not panic, and must return either the decoded current file, the
// .prev document (having moved the bad file aside), or ErrNewerSchema with
// both files untouched.
func FuzzLoad(f *testing.F) {
	prevDoc := fuzzDoc{Seq: 1, Name: "prev"}
	prevData, err := json.Marshal(prevDoc)
	if err != nil {
		f.Fatal(err)
	}
	prevFile := encodeEnvelope(2, time.Date(2025, 6, 9, 10, 0, 0, 0, time.UTC), prevData)

	f.Fuzz(func(t *testing.T, cur []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "s.json")
		if err := os.WriteFile(path+".prev", prevFile, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, cur, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := Open[fuzzDoc](Options{Dir: dir, Name: "s.json", Version: 2, Migrations: map[int]Migration{1: wrapV1}})
		if err != nil {
			t.Fatal(err)
		}

		got, info, err := st.Load()
		switch {
		case errors.Is(err, ErrNewerSchema):
			if b, _ := os.ReadFile(path); !bytes.Equal(b, cur) {
				t.Error("current file changed after ErrNewerSchema")
			}
			if _, err := os.Stat(path + ".corrupt"); !errors.Is(err, fs.ErrNotExist) {
				t.Error("a file was moved aside after ErrNewerSchema")
			}
		case err != nil:
			t.Fatalf("Load: %v", err)
		case info.Recovered:
			if info.Path != path+".prev" || got.Seq != prevDoc.Seq || got.Name != prevDoc.Name || got.V1 != nil {
				t.Fatalf("recovered %+v from %s, want %+v from .prev", got, info.Path, prevDoc)
			}
			if b, err := os.ReadFile(path + ".corrupt"); err != nil || !bytes.Equal(b, cur) {
				t.Fatalf(".corrupt does not hold the bad bytes (%v)", err)
			}
		default:
			// A valid decode: it must survive a Save and Load unchanged.
			if info.Path != path {
				t.Fatalf("loaded from %s without a recovery", info.Path)
			}
			want, _ := json.Marshal(got)
			if err := st.Save(got); err != nil {
				t.Fatalf("Save: %v", err)
			}
			again, _, err := st.Load()
			if err != nil {
				t.Fatalf("Load after Save: %v", err)
			}
			if b, _ := json.Marshal(again); !bytes.Equal(b, want) {
				t.Fatalf("round trip changed %s into %s", want, b)
			}
		}
	})
}
