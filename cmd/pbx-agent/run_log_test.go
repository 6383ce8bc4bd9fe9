package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// Without a journal stream on stderr the daemon logs slog's text: to a
// buffer, to a file that JOURNAL_STREAM does not name, or with it unset.
func TestLogHandlerIsTextOffTheJournal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, tc := range map[string]struct {
		w      any
		stream string
	}{
		"a buffer":                    {&bytes.Buffer{}, "8:1234"},
		"a file JOURNAL_STREAM skips": {f, "1:1"},
		"no JOURNAL_STREAM":           {f, ""},
	} {
		var h slog.Handler
		switch w := tc.w.(type) {
		case *bytes.Buffer:
			h = logHandler(w, tc.stream, slog.LevelInfo)
		case *os.File:
			h = logHandler(w, tc.stream, slog.LevelInfo)
		}
		if _, ok := h.(*slog.TextHandler); !ok {
			t.Errorf("%s: handler %T, want text", name, h)
		}
	}
}
