package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2027, 1, 31, 10, 0, 0, 0, time.UTC)

func openLog(t *testing.T, opts Options) (*Log, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l, dir
}

func mustRead(t *testing.T, dir string) []Event {
	t.Helper()
	evs, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestAppendAndRead(t *testing.T) {
	l, dir := openLog(t, Options{})
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("Open made %v, %v; want an empty 0600 file", fi, err)
	}
	events := []Event{
		{Time: t0, Kind: "activated", Fields: map[string]any{"pbx": "pbx-42", "revision": 1}},
		{Time: t0.Add(time.Minute), Kind: "state.changed", Fields: map[string]any{"from": "active", "to": "stopping", "why": "every licence at zero"}},
		{Time: t0.Add(2 * time.Minute).In(time.FixedZone("CET", 3600)), Kind: "deleted"},
	}
	for _, e := range events {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); len(lines) != 3 ||
		lines[0] != `{"time":"2027-01-31T10:00:00Z","kind":"activated","fields":{"pbx":"pbx-42","revision":1}}` ||
		lines[2] != `{"time":"2027-01-31T10:02:00Z","kind":"deleted"}` {
		t.Errorf("audit.log is not one JSON object a line, in UTC:\n%s", b)
	}
	got := mustRead(t, dir)
	if len(got) != 3 || got[1].Kind != "state.changed" || got[1].Fields["to"] != "stopping" ||
		!got[2].Time.Equal(t0.Add(2*time.Minute)) || got[0].Fields["revision"] != float64(1) {
		t.Errorf("Read = %+v", got)
	}
	if err := l.Append(Event{Time: t0}); err == nil {
		t.Error("an event without a kind was written")
	}
}

func TestReadWithoutLog(t *testing.T) {
	if evs, err := Read(t.TempDir()); err != nil || len(evs) != 0 {
		t.Errorf("Read of an empty folder = %v, %v", evs, err)
	}
}

func TestRotation(t *testing.T) {
	l, dir := openLog(t, Options{MaxSize: 1000})
	for i := range 100 {
		if err := l.Append(Event{Time: t0, Kind: "tick", Fields: map[string]any{"n": i}}); err != nil {
			t.Fatal(err)
		}
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 2 {
		t.Fatalf("files %v; want audit.log and audit.log.1", names)
	}
	for _, n := range names {
		fi, _ := os.Stat(n)
		if fi.Size() > 1000 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %d bytes, mode %v; want at most 1000, 0600", n, fi.Size(), fi.Mode().Perm())
		}
	}
	evs := mustRead(t, dir)
	if len(evs) == 0 || len(evs) >= 100 || evs[len(evs)-1].Fields["n"] != float64(99) {
		t.Fatalf("after rotation: %d events, last %+v", len(evs), evs[len(evs)-1])
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Fields["n"].(float64) != evs[i-1].Fields["n"].(float64)+1 {
			t.Fatalf("events out of order or missing at %d: %v then %v", i, evs[i-1].Fields, evs[i].Fields)
		}
	}
}

// TestTornLine: a power cut in the middle of a write leaves a partial last
// line; the next event starts on a line of its own and Read flags the
// partial one.
func TestTornLine(t *testing.T) {
	l, dir := openLog(t, Options{})
	if err := l.Append(Event{Time: t0, Kind: "first"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2027-01-31T10:00:00Z","ki`)
	f.Close()
	if err := l.Append(Event{Time: t0, Kind: "after"}); err != nil {
		t.Fatal(err)
	}
	evs := mustRead(t, dir)
	if len(evs) != 3 || evs[0].Kind != "first" || evs[1].Kind != KindUnreadable || evs[1].Fields["line"] != 2 || evs[2].Kind != "after" {
		t.Errorf("Read = %+v", evs)
	}
}

func TestLongFieldsAreCut(t *testing.T) {
	l, dir := openLog(t, Options{})
	long := strings.Repeat("é", MaxFieldLen) // two bytes a rune
	if err := l.Append(Event{Time: t0, Kind: "licence.refused", Fields: map[string]any{"error": long, "revision": 3}}); err != nil {
		t.Fatal(err)
	}
	evs := mustRead(t, dir)
	s, _ := evs[0].Fields["error"].(string)
	if len(s) > MaxFieldLen || !strings.HasSuffix(s, "…") || !strings.HasPrefix(s, "éé") {
		t.Errorf("cut field: %d bytes, %q…", len(s), s[:10])
	}
}

// TestConcurrentAppends: lines never interleave.
func TestConcurrentAppends(t *testing.T) {
	l, dir := openLog(t, Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				if err := l.Append(Event{Time: t0, Kind: "tick", Fields: map[string]any{"id": fmt.Sprintf("%d-%d", g, i)}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	evs := mustRead(t, dir)
	seen := map[any]bool{}
	for _, e := range evs {
		if e.Kind != "tick" {
			t.Fatalf("damaged line: %+v", e)
		}
		seen[e.Fields["id"]] = true
	}
	if len(seen) != 160 {
		t.Errorf("%d distinct events, want 160", len(seen))
	}
}

func TestOpenRefusesAFolderThatCannotHoldTheLog(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), Options{}); err == nil {
		t.Error("Open of a missing folder succeeded")
	}
}
