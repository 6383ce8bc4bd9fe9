package wms

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in, err string // err: a part of the error; "" parses
	}{
		{in: "7.02.20250609.3"},
		{in: "10.0.20240229.123456"}, // leap day
		{in: "999.999.19991231.0"},
		{in: "", err: "empty"},
		{in: "7.02.20250609", err: "3 dot-separated parts, not 4"},
		{in: "7.02.20250609.3.1", err: "5 dot-separated parts"},
		{in: "7..20250609.3", err: "the minor part is empty"},
		{in: "7.02.20250609.", err: "the build part is empty"},
		{in: "v7.02.20250609.3", err: `the major part "v7" is not all digits`},
		{in: "7.02.20250609.3 ", err: `the build part "3 " is not all digits`},
		{in: "+7.02.20250609.3", err: "not all digits"},
		{in: "7.-2.20250609.3", err: "not all digits"},
		{in: "1000.02.20250609.3", err: `the major part "1000" has more than 3 digits`},
		{in: "7.0002.20250609.3", err: "has more than 3 digits"},
		{in: "7.02.2025069.3", err: `the date part "2025069" has 7 digits, not 8`},
		{in: "7.02.20250230.3", err: `the date part "20250230" is not a calendar date`},
		{in: "7.02.20230229.3", err: "is not a calendar date"}, // not a leap year
		{in: "7.02.20251301.3", err: "is not a calendar date"},
		{in: "7.02.20250609.1234567", err: "has more than 6 digits"},
		{in: "7.02.20250609.3\n", err: "not all digits"},
		{in: "7.02.20250609.3/../x", err: "6 dot-separated parts"},
		{in: "7.02.20250609.3/x", err: "not all digits"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			v, err := ParseVersion(tc.in)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if v.String() != tc.in {
					t.Errorf("String() = %q", v.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrVersion) {
				t.Fatalf("ParseVersion(%q) = %v; want an ErrVersion containing %q", tc.in, err, tc.err)
			}
			if !strings.Contains(err.Error(), "e.g. 7.02.20250609.3") {
				t.Errorf("the error does not show the form: %v", err)
			}
		})
	}
	v := MustParseVersion("7.02.20250609.3")
	if v.Major != 7 || v.Minor != 2 || v.Build != 3 || !v.Date.Equal(time.Date(2025, 6, 9, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("parts: %+v", v)
	}
}

func TestVersionCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"7.02.20250609.3", "7.02.20250609.3", 0},
		{"7.02.20250609.3", "7.2.20250609.3", 0}, // numerically equal
		{"7.02.20250609.3", "7.02.20250609.4", -1},
		{"7.02.20250609.10", "7.02.20250609.9", 1}, // not by text
		{"7.02.20250610.1", "7.02.20250609.9", 1},
		{"7.10.20240101.1", "7.9.20250101.1", 1},
		{"8.0.20200101.0", "7.99.20991231.999", 1},
		{"6.50.20250101.1", "7.0.20200101.0", -1},
	} {
		if got := MustParseVersion(tc.a).Compare(MustParseVersion(tc.b)); got != tc.want {
			t.Errorf("%s vs %s = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestParseRepository(t *testing.T) {
	for _, ok := range []string{"rel70", "rel60", "rel00", "rel99"} {
		if _, err := ParseRepository(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "rel7", "rel700", "REL70", "rel7a", "rel-1", "re170", "rel70/", "../rel70", "rel70 "} {
		if _, err := ParseRepository(bad); err == nil || !errors.Is(err, ErrRepository) || !strings.Contains(err.Error(), "e.g. rel70") {
			t.Errorf("ParseRepository(%q) = %v", bad, err)
		}
	}
}

func TestCheckTerm(t *testing.T) {
	v := MustParseVersion
	for _, tc := range []struct {
		name              string
		term              license.Term
		installed, target string
		refused           bool
	}{
		{"lifetime, same major", license.Lifetime, "7.02.20250609.3", "7.10.20260101.1", false},
		{"lifetime, new major", license.Lifetime, "7.02.20250609.3", "8.0.20260101.1", true},
		{"lifetime, two majors on", license.Lifetime, "6.50.20240101.1", "8.0.20260101.1", true},
		{"lifetime, an older major", license.Lifetime, "8.0.20260101.1", "7.02.20250609.3", false},
		{"monthly, new major", license.Monthly, "7.02.20250609.3", "8.0.20260101.1", false},
		{"yearly, new major", license.Yearly, "7.02.20250609.3", "8.0.20260101.1", false},
		{"lifetime, nothing installed", license.Lifetime, "", "8.0.20260101.1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var installed Version
			if tc.installed != "" {
				installed = v(tc.installed)
			}
			err := CheckTerm(tc.term, installed, v(tc.target))
			if got := errors.Is(err, ErrLifetimeMajor); got != tc.refused || (err != nil) != tc.refused {
				t.Fatalf("CheckTerm = %v; refused want %v", err, tc.refused)
			}
			if tc.refused && !strings.Contains(err.Error(), "convert the PBX to a monthly or yearly subscription") {
				t.Errorf("the refusal does not say what to do: %v", err)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	start := time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)
	w := Window{Start: start, End: start.Add(2 * time.Hour)}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		now  time.Time
		pos  Position
		wait time.Duration
	}{
		{start.Add(-90 * time.Minute), Before, 90 * time.Minute},
		{start.Add(-time.Nanosecond), Before, time.Nanosecond},
		{start, Within, 0},
		{start.Add(119 * time.Minute), Within, 0},
		{start.Add(2 * time.Hour), After, 0}, // the end is excluded
		{start.Add(48 * time.Hour), After, 0},
	} {
		pos, wait := w.At(tc.now)
		if pos != tc.pos || wait != tc.wait {
			t.Errorf("At(%s) = %v, %v; want %v, %v", tc.now.Format(time.RFC3339Nano), pos, wait, tc.pos, tc.wait)
		}
	}
	for _, bad := range []Window{{}, {Start: start}, {End: start}, {Start: start, End: start}, {Start: start, End: start.Add(-time.Hour)}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validates", bad)
		}
	}
}

func TestRequestFile(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)
	want := Request{Version: "7.02.20250609.3", Repository: "rel70", Window: &Window{Start: start, End: start.Add(time.Hour)}, CommandID: "cmd-42"}
	if err := WriteRequest(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRequest(dir, "7.02.20250609.3")
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != RequestFormat || got.Repository != "rel70" || got.CommandID != "cmd-42" || !got.Window.End.Equal(want.Window.End) {
		t.Errorf("read back %+v", got)
	}
	ahead := want
	ahead.Version, ahead.LicenceAheadMS = "7.02.20250609.6", (60 * 24 * time.Hour).Milliseconds()
	if err := WriteRequest(dir, ahead); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadRequest(dir, ahead.Version); err != nil || !got.LicenceNow(start).Equal(start.AddDate(0, 0, 60)) {
		t.Errorf("read back %+v, %v; want the licence clock 60 days ahead of the machine's", got, err)
	}
	if fi, _ := os.Stat(RequestPath(dir, want.Version)); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	if err := WriteRequest(dir, Request{Version: "7.02.20250609.3", Repository: "main"}); err == nil {
		t.Error("wrote a request for repository main")
	}

	// What the root helper must refuse, each written as the agent's user
	// could.
	reqDir := filepath.Join(dir, RequestDir)
	put := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(reqDir, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	valid := `{"format":1,"version":"7.02.20250609.4","repository":"rel70"}`
	for _, tc := range []struct {
		name, version, err string
		setup              func()
	}{
		{"another version inside", "7.02.20250609.4", `for version "7.02.20250609.5"`, func() {
			put("7.02.20250609.4.json", `{"format":1,"version":"7.02.20250609.5","repository":"rel70"}`)
		}},
		{"an unknown field", "7.02.20250609.4", "unknown field", func() {
			put("7.02.20250609.4.json", `{"format":1,"version":"7.02.20250609.4","repository":"rel70","exec":"/bin/sh"}`)
		}},
		{"data after", "7.02.20250609.4", "data after", func() { put("7.02.20250609.4.json", valid+valid) }},
		{"a licence clock centuries away", "7.02.20250609.4", "more than a century", func() {
			put("7.02.20250609.4.json", `{"format":1,"version":"7.02.20250609.4","repository":"rel70","licence_ahead_ms":-9223372036854775807}`)
		}},
		{"a bad repository", "7.02.20250609.4", "want rel and two digits", func() {
			put("7.02.20250609.4.json", `{"format":1,"version":"7.02.20250609.4","repository":"rel70 [trusted=yes]"}`)
		}},
		{"a newer format", "7.02.20250609.4", "format 2", func() {
			put("7.02.20250609.4.json", `{"format":2,"version":"7.02.20250609.4","repository":"rel70"}`)
		}},
		{"too big", "7.02.20250609.4", "over 4096 bytes", func() {
			put("7.02.20250609.4.json", valid+strings.Repeat(" ", 5000))
		}},
		{"a symbolic link", "7.02.20250609.4", "symbolic link", func() {
			os.Remove(filepath.Join(reqDir, "7.02.20250609.4.json"))
			put("elsewhere", valid)
			if err := os.Symlink("elsewhere", filepath.Join(reqDir, "7.02.20250609.4.json")); err != nil {
				t.Fatal(err)
			}
		}},
		{"a fifo", "7.02.20250609.4", "not a regular file", func() {
			os.Remove(filepath.Join(reqDir, "7.02.20250609.4.json"))
			if err := syscall.Mkfifo(filepath.Join(reqDir, "7.02.20250609.4.json"), 0o640); err != nil {
				t.Fatal(err)
			}
		}},
		{"no request", "7.02.20250609.9", "no such file", func() {}},
		{"a bad argument", "7.02.20250609", "not a WMS version", func() {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			if _, err := ReadRequest(dir, tc.version); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ReadRequest = %v; want an error containing %q", err, tc.err)
			}
		})
	}
	t.Run("a linked folder", func(t *testing.T) {
		other := t.TempDir()
		if err := WriteRequest(other, want); err != nil {
			t.Fatal(err)
		}
		linked := t.TempDir()
		if err := os.Symlink(filepath.Join(other, RequestDir), filepath.Join(linked, RequestDir)); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadRequest(linked, want.Version); err == nil || !strings.Contains(err.Error(), "not a folder") {
			t.Errorf("ReadRequest through a linked folder = %v", err)
		}
	})
}

func TestResultFile(t *testing.T) {
	dir := t.TempDir()
	if _, found, err := ReadResult(dir, "7.02.20250609.3"); found || err != nil {
		t.Fatalf("no result yet: found %v, %v", found, err)
	}
	var log []string
	for i := range 200 {
		log = append(log, strings.Repeat("x", i*3))
	}
	started := time.Date(2026, 11, 30, 22, 0, 0, 0, time.UTC)
	r := &Result{
		Version: "7.02.20250609.3", Repository: "rel70", Outcome: RolledBack,
		Previous: "7.02.20250609.2", Installed: "7.02.20250609.2",
		Health:     &Health{OK: false, Detail: "http://127.0.0.1:8080/health: 503"},
		RolledBack: true, RollbackHealth: &Health{OK: true}, Held: true,
		LogTail: log, Started: started, Finished: started.Add(3 * time.Minute), Error: "unhealthy after the upgrade",
	}
	if err := WriteResult(dir, r, -1); err != nil {
		t.Fatal(err)
	}
	got, found, err := ReadResult(dir, "7.02.20250609.3")
	if err != nil || !found {
		t.Fatalf("ReadResult: %v, %v", found, err)
	}
	if got.Format != ResultFormat || got.Outcome != RolledBack || got.OK() || !got.Done() || !got.RolledBack ||
		got.Health.OK || !got.RollbackHealth.OK || got.Installed != "7.02.20250609.2" || !got.Finished.Equal(r.Finished) {
		t.Errorf("read back %+v", got)
	}
	if len(got.LogTail) != MaxLogLines || !strings.HasPrefix(got.LogTail[MaxLogLines-1], strings.Repeat("x", MaxLogLineSize)) ||
		len(got.LogTail[MaxLogLines-1]) > MaxLogLineSize+len("…") {
		t.Errorf("log tail not bounded: %d lines, last %d bytes", len(got.LogTail), len(got.LogTail[len(got.LogTail)-1]))
	}
	if fi, _ := os.Stat(ResultPath(dir, r.Version)); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}

	if s := got.Summary(); s != "7.02.20250609.3 failed, rolled back to 7.02.20250609.2: unhealthy after the upgrade" {
		t.Errorf("Summary = %q", s)
	}
	running := &Result{Version: "7.02.20250609.4", Outcome: Running, Started: started}
	if s := running.Summary(); s != "running: 7.02.20250609.4" {
		t.Errorf("Summary = %q", s)
	}
	if err := WriteResult(dir, running, os.Getgid()); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := ReadResult(dir, "7.02.20250609.4"); got.Done() || got.OK() {
		t.Errorf("a running result is done or ok: %+v", got)
	}
	// The file on disk: versioned, and without the zero finish time.
	data, _ := os.ReadFile(ResultPath(dir, "7.02.20250609.4"))
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["format"] != float64(1) || raw["finished"] != nil {
		t.Errorf("on disk: %s", data)
	}

	for _, tc := range []struct{ name, content, err string }{
		{"newer format", `{"format":2,"version":"7.02.20250609.5","outcome":"upgraded"}`, "newer pbx-agent"},
		{"no format", `{"version":"7.02.20250609.5","outcome":"upgraded"}`, "format 0"},
		{"unknown outcome", `{"format":1,"version":"7.02.20250609.5","outcome":"maybe"}`, `unknown outcome "maybe"`},
		{"another version", `{"format":1,"version":"7.02.20250609.6","outcome":"upgraded"}`, "for version"},
		{"truncated", `{"format":1,"version":"7.02.2025`, "not an upgrade result"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(ResultPath(dir, "7.02.20250609.5"), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := ReadResult(dir, "7.02.20250609.5"); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ReadResult = %v; want %q", err, tc.err)
			}
		})
	}
	// A newer build of the same format may add fields.
	if err := os.WriteFile(ResultPath(dir, "7.02.20250609.5"), []byte(`{"format":1,"version":"7.02.20250609.5","outcome":"upgraded","new_field":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadResult(dir, "7.02.20250609.5"); err != nil {
		t.Errorf("an added field: %v", err)
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"7.02.20250609.3", "7.02.20250230.3", "", "1.2.3.4", "999.999.99991231.999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		// A version that parses is a safe unit instance and file name.
		if v.String() != s || strings.ContainsAny(s, "/\\ \n@") || v.Compare(v) != 0 {
			t.Fatalf("%q parsed as %+v", s, v)
		}
		if w, err := ParseVersion(v.Date.Format("20060102")); err == nil {
			t.Fatalf("a date alone parsed: %v", w)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"format":1,"version":"7.02.20250609.3","repository":"rel70"}`,
		`{"format":1,"version":"7.02.20250609.3","repository":"rel70","window":{"start":"2026-11-30T22:00:00Z","end":"2026-11-30T23:00:00Z"},"command_id":"c1"}`,
		`{"format":1,"version":"7.02.20250609.3","repository":"rel70","x":1}`,
		`{"format":1,"version":"7.02.20250609.3","repository":"rel70","licence_ahead_ms":5184000000}`,
		`{"format":1}{}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(data)
		if err != nil || r.Validate("") != nil {
			return
		}
		if _, err := ParseVersion(r.Version); err != nil {
			t.Fatalf("a valid request with version %q", r.Version)
		}
		if _, err := ParseRepository(r.Repository); err != nil {
			t.Fatalf("a valid request with repository %q", r.Repository)
		}
	})
}
