package journallog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

// entry is what a Sender was handed.
type entry struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

// recorder collects the entries, or fails every send with err.
type recorder struct {
	entries []entry
	err     error
}

func (r *recorder) send(msg string, pri journal.Priority, fields map[string]string) error {
	if r.err != nil {
		return r.err
	}
	r.entries = append(r.entries, entry{msg, pri, fields})
	return nil
}

func TestLevelsArePriorities(t *testing.T) {
	rec := &recorder{}
	log := slog.New(New(rec.send, Options{Level: slog.LevelDebug}))
	log.Debug("d")
	log.Info("i")
	log.Warn("w")
	log.Error("e")
	log.Log(context.Background(), slog.LevelError+4, "above error")
	log.Log(context.Background(), slog.LevelWarn+1, "between warn and error")
	want := []journal.Priority{journal.PriDebug, journal.PriInfo, journal.PriWarning, journal.PriErr, journal.PriErr, journal.PriWarning}
	if len(rec.entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(rec.entries), len(want))
	}
	for i, e := range rec.entries {
		if e.pri != want[i] {
			t.Errorf("%q: priority %d, want %d", e.msg, e.pri, want[i])
		}
	}
}

func TestLevelFilter(t *testing.T) {
	rec := &recorder{}
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	log := slog.New(New(rec.send, Options{Level: level}))
	log.Info("hidden")
	log.Warn("shown")
	level.Set(slog.LevelInfo) // a reload lowers it
	log.Info("shown too")
	if len(rec.entries) != 2 || rec.entries[0].msg != "shown" || rec.entries[1].msg != "shown too" {
		t.Errorf("entries %+v", rec.entries)
	}
}

// The message is the text line less the time and level; every attribute
// is a field of its own, groups prefixing their names.
func TestMessageAndFields(t *testing.T) {
	rec := &recorder{}
	log := slog.New(New(rec.send, Options{Identifier: "pbx-agent"})).With("component", "metrics")
	log.WithGroup("users").Error("counting users failed", "source", "sqlite /var/lib/wms/users.db",
		"err", errors.New("unable to open database file"), slog.Group("count", "uc-premium", 3))
	if len(rec.entries) != 1 {
		t.Fatalf("%d entries", len(rec.entries))
	}
	e := rec.entries[0]
	wantMsg := `counting users failed component=metrics users.source="sqlite /var/lib/wms/users.db" users.err="unable to open database file" users.count.uc-premium=3`
	if e.msg != wantMsg {
		t.Errorf("MESSAGE\n%s\nwant\n%s", e.msg, wantMsg)
	}
	for _, bad := range []string{"time=", "level="} {
		if strings.Contains(e.msg, bad) {
			t.Errorf("MESSAGE repeats %q: %s", bad, e.msg)
		}
	}
	want := map[string]string{
		"SYSLOG_IDENTIFIER":      "pbx-agent",
		"COMPONENT":              "metrics",
		"USERS_SOURCE":           "sqlite /var/lib/wms/users.db",
		"USERS_ERR":              "unable to open database file",
		"USERS_COUNT_UC_PREMIUM": "3",
	}
	if fmt.Sprint(e.fields) != fmt.Sprint(want) {
		t.Errorf("fields %v\nwant %v", e.fields, want)
	}
}

// An attribute cannot set the entry's priority, message or identifier:
// a value that reached a log line from outside (a portal's error) must
// not make an error look like information, or forge its source.
func TestAttributesCannotForgeJournalFields(t *testing.T) {
	rec := &recorder{}
	log := slog.New(New(rec.send, Options{Identifier: "pbx-agent"}))
	log.Error("boom", "priority", "7", "PRIORITY", "6", "message", "all good", "syslog_identifier", "sshd", "_pid", "1", "9lives", "x")
	e := rec.entries[0]
	if e.pri != journal.PriErr || e.fields["SYSLOG_IDENTIFIER"] != "pbx-agent" {
		t.Errorf("priority %d, identifier %q", e.pri, e.fields["SYSLOG_IDENTIFIER"])
	}
	for _, k := range []string{"PRIORITY", "MESSAGE", "_PID"} {
		if _, ok := e.fields[k]; ok {
			t.Errorf("an attribute set the field %s", k)
		}
	}
	for k, v := range map[string]string{"SLOG_PRIORITY": "6", "SLOG_MESSAGE": "all good", "SLOG_SYSLOG_IDENTIFIER": "sshd", "SLOG_PID": "1", "SLOG_9LIVES": "x"} {
		if e.fields[k] != v {
			t.Errorf("field %s = %q, want %q (fields %v)", k, e.fields[k], v, e.fields)
		}
	}
}

func TestFieldName(t *testing.T) {
	for key, want := range map[string]string{
		"err": "ERR", "users.source": "USERS_SOURCE", "reservations_released": "RESERVATIONS_RELEASED",
		"uc-premium": "UC_PREMIUM", "": "SLOG_", "code_line": "SLOG_CODE_LINE",
		strings.Repeat("a", 80): strings.Repeat("A", 64),
	} {
		if got := FieldName(key); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", key, got, want)
		}
	}
}

// A refused send falls back to the stream with an sd-daemon priority
// prefix, on one line, so the entry and its level survive.
func TestFallbackOnSendFailure(t *testing.T) {
	var out bytes.Buffer
	rec := &recorder{err: syscall.ECONNREFUSED}
	log := slog.New(New(rec.send, Options{Fallback: &out}))
	log.Warn("portal unreachable", "err", "dial tcp: i/o timeout\nretrying")
	if got, want := out.String(), "<4>portal unreachable err=\"dial tcp: i/o timeout\\nretrying\"\n"; got != want {
		t.Errorf("fallback %q, want %q", got, want)
	}
	if err := New(rec.send, Options{}).Handle(context.Background(), slog.Record{Level: slog.LevelInfo, Message: "x"}); err == nil {
		t.Error("a refused send without a fallback returned no error")
	}
}

func TestIsJournalStream(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other, err := os.Create(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stream := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	for _, tt := range []struct {
		name    string
		stream  string
		f       *os.File
		want    bool
		wantErr bool
	}{
		{"the stream", stream, f, true, false},
		{"stderr redirected elsewhere", stream, other, false, false},
		{"not under systemd", "", f, false, false},
		{"malformed", "8:", f, false, true},
		{"not numbers", "dev:ino", f, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := IsJournalStream(tt.stream, tt.f)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("IsJournalStream(%q) = %v, %v; want %v, error %v", tt.stream, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestRealJournal sends through go-systemd to the machine's journald
// when one runs (the e2e rig checks journalctl -p under systemd).
func TestRealJournal(t *testing.T) {
	if !journal.Enabled() {
		t.Skip("no journald socket on this machine")
	}
	log := slog.New(New(journal.Send, Options{Identifier: "journallog-test"}))
	log.Warn("journallog test entry", "test", t.Name())
}
