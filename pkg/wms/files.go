package wms

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
)

// An upgrade goes through two files, so that neither the root helper's
// command line (the unit's instance is only the version) nor the agent's
// memory carries it:
//
//	<runtime_dir>/wms-upgrade/<version>.json  the Request: written by the
//	    agent, read (strictly) by the root helper at its start
//	<result_dir>/<version>.json               the Result: written by the
//	    root helper as it goes, read by the agent, also after a restart
//
// Both carry a format number; a reader refuses a newer format.

// RequestFormat and ResultFormat are the formats this build writes.
const (
	RequestFormat = 1
	ResultFormat  = 1
)

// RequestDir is the folder of requests under the agent's runtime folder.
const RequestDir = "wms-upgrade"

// maxRequestSize bounds what the root helper reads: a request is a few
// hundred bytes.
const maxRequestSize = 4 << 10

// Request is what the agent asks of the root helper.
type Request struct {
	Format     int    `json:"format"`
	Version    string `json:"version"`    // the target version: the unit's instance
	Repository string `json:"repository"` // relNN
	// Window, when set, makes the helper refuse to start after its end
	// (the unit may have been queued behind another job).
	Window *Window `json:"window,omitempty"`
	// CommandID is the portal command's id, carried into the result.
	CommandID string `json:"command_id,omitempty"`
	// LicenceAheadMS is the licence clock less this machine's clock, in
	// milliseconds, when the agent wrote the request (negative: behind).
	// The helper has no licence clock: it judges Window and stamps its
	// result on the machine's clock moved by this (LicenceNow), so a
	// machine clock set anywhere neither refuses an upgrade inside its
	// window nor starts one after.
	LicenceAheadMS int64 `json:"licence_ahead_ms,omitempty"`
}

// maxLicenceAhead bounds LicenceAheadMS: a century either way, far
// inside what a time.Duration holds.
const maxLicenceAhead = 100 * 365 * 24 * time.Hour

// LicenceNow is the licence clock at the machine's time machine, as the
// agent's offset when it wrote the request says.
func (r Request) LicenceNow(machine time.Time) time.Time {
	return machine.Add(time.Duration(r.LicenceAheadMS) * time.Millisecond)
}

var commandID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// Validate checks every field; version is what the request must be for
// (the helper's argument), or "" to accept any valid version.
func (r Request) Validate(version string) error {
	if r.Format != RequestFormat {
		return fmt.Errorf("upgrade request: format %d, this pbx-agent reads %d", r.Format, RequestFormat)
	}
	if _, err := ParseVersion(r.Version); err != nil {
		return fmt.Errorf("upgrade request: %w", err)
	}
	if version != "" && r.Version != version {
		return fmt.Errorf("upgrade request: for version %q, not %q", r.Version, version)
	}
	if _, err := ParseRepository(r.Repository); err != nil {
		return fmt.Errorf("upgrade request: %w", err)
	}
	if r.Window != nil {
		if err := r.Window.Validate(); err != nil {
			return fmt.Errorf("upgrade request: %w", err)
		}
	}
	if ms := r.LicenceAheadMS; ms > maxLicenceAhead.Milliseconds() || ms < -maxLicenceAhead.Milliseconds() {
		return fmt.Errorf("upgrade request: licence_ahead_ms %d is more than a century", ms)
	}
	if r.CommandID != "" && !commandID.MatchString(r.CommandID) {
		return fmt.Errorf("upgrade request: command id %q: want 1 to 128 of A-Z a-z 0-9 . _ : -", r.CommandID)
	}
	return nil
}

// RequestPath is where the request for version lives under runtimeDir.
func RequestPath(runtimeDir, version string) string {
	return filepath.Join(runtimeDir, RequestDir, version+".json")
}

// WriteRequest validates r and writes it atomically under runtimeDir
// (mode 0640: the root helper reads it).
func WriteRequest(runtimeDir string, r Request) error {
	if r.Format == 0 {
		r.Format = RequestFormat
	}
	if err := r.Validate(""); err != nil {
		return err
	}
	dir := filepath.Join(runtimeDir, RequestDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("upgrade request: %w", err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(RequestPath(runtimeDir, r.Version), append(data, '\n'), 0o640)
}

// ReadRequest reads the request for version under runtimeDir, for the root
// helper: the file is written by the unprivileged agent, so it is opened
// without following links, must be a regular file of at most 4 KiB in a
// real folder, decodes strictly (no unknown field, nothing after it) and
// must be valid and for this version.
func ReadRequest(runtimeDir, version string) (Request, error) {
	if _, err := ParseVersion(version); err != nil {
		return Request{}, err
	}
	dir := filepath.Join(runtimeDir, RequestDir)
	if fi, err := os.Lstat(dir); err != nil {
		return Request{}, fmt.Errorf("upgrade request: %w", err)
	} else if !fi.IsDir() {
		return Request{}, fmt.Errorf("upgrade request: %s is not a folder", dir)
	}
	path := RequestPath(runtimeDir, version)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return Request{}, fmt.Errorf("upgrade request: %s is a symbolic link", path)
		}
		return Request{}, fmt.Errorf("upgrade request: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Request{}, fmt.Errorf("upgrade request: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Request{}, fmt.Errorf("upgrade request: %s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxRequestSize+1))
	if err != nil {
		return Request{}, fmt.Errorf("upgrade request: %w", err)
	}
	if len(data) > maxRequestSize {
		return Request{}, fmt.Errorf("upgrade request: %s is over %d bytes", path, maxRequestSize)
	}
	r, err := DecodeRequest(data)
	if err != nil {
		return Request{}, fmt.Errorf("upgrade request %s: %w", path, err)
	}
	if err := r.Validate(version); err != nil {
		return Request{}, err
	}
	return r, nil
}

// DecodeRequest decodes a request strictly: one JSON object, known fields
// only, nothing after it. It does not validate the fields.
func DecodeRequest(data []byte) (Request, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return Request{}, fmt.Errorf("not an upgrade request: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, errors.New("not an upgrade request: data after the object")
	}
	return r, nil
}

// Outcome is how an upgrade went.
type Outcome string

// The outcomes. Only Running is not final.
const (
	Running    Outcome = "running"     // the helper is at work
	Upgraded   Outcome = "upgraded"    // the target is installed and healthy
	Unchanged  Outcome = "unchanged"   // the target was already installed
	RolledBack Outcome = "rolled_back" // the upgrade failed; the previous version is back
	Failed     Outcome = "failed"      // refused or failed, and not rolled back: see Error
)

// Health is the verdict of a health check.
type Health struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"` // what was checked, and why it failed
}

// Result is what the root helper reports, as it goes and at its end.
type Result struct {
	Format     int     `json:"format"`
	Version    string  `json:"version"` // asked for
	Repository string  `json:"repository,omitempty"`
	CommandID  string  `json:"command_id,omitempty"`
	Outcome    Outcome `json:"outcome"`
	Previous   string  `json:"previous,omitempty"`  // installed before
	Installed  string  `json:"installed,omitempty"` // installed at the end
	// Recovered says an interrupted dpkg run was finished first.
	Recovered bool `json:"recovered,omitempty"`
	// Health is the check after the upgrade; RollbackHealth the one after a
	// rollback. Absent when not run.
	Health         *Health   `json:"health,omitempty"`
	RolledBack     bool      `json:"rolled_back"`
	RollbackHealth *Health   `json:"rollback_health,omitempty"`
	Held           bool      `json:"held"` // apt-mark hold set on the package
	LogTail        []string  `json:"log_tail,omitempty"`
	Started        time.Time `json:"started"`
	Finished       time.Time `json:"finished,omitzero"`
	Error          string    `json:"error,omitempty"`

	// Step is the step the helper began last, written before it starts, so
	// that a helper started again after a power loss or a kill resumes
	// there (while the outcome is Running). Resumes counts those restarts;
	// past MaxResumes the upgrade fails for good. Kept is the .deb of the
	// Previous version, to roll back to.
	Step        Step      `json:"step,omitempty"`
	StepStarted time.Time `json:"step_started,omitzero"`
	Resumes     int       `json:"resumes,omitempty"`
	Kept        string    `json:"kept,omitempty"`
}

// Step is a step of the upgrade helper.
type Step string

// The helper's steps, in order. Until StepInstall nothing of the WMS has
// changed; from StepInstall on, an interrupted helper rolls back to the
// kept version (or, interrupted in StepHealth with the target installed,
// checks its health again).
const (
	StepPrepare  Step = "prepare"  // finish an interrupted dpkg, read the installed version
	StepSource   Step = "source"   // write the apt source, update it
	StepKeep     Step = "keep"     // keep the installed version's .deb
	StepBackup   Step = "backup"   // run the backup hook
	StepInstall  Step = "install"  // apt-get install the target
	StepHealth   Step = "health"   // check the target's health
	StepRollback Step = "rollback" // install the kept .deb again
)

// MaxResumes bounds how often a helper interrupted before its result was
// final is started again for the same upgrade: a loop breaker for a step
// that kills the machine or the helper every time.
const MaxResumes = 3

// Resumable reports whether the result is of a helper interrupted after it
// recorded a step: starting the helper again resumes it.
func (r *Result) Resumable() bool { return !r.Done() && r.Outcome == Running && r.Step != "" }

// Done reports whether the helper finished (Finished is set).
func (r *Result) Done() bool { return !r.Finished.IsZero() }

// OK reports whether the upgrade reached its target, healthy.
func (r *Result) OK() bool { return r.Outcome == Upgraded || r.Outcome == Unchanged }

// Summary says in a line how the upgrade stands, for the status's
// wms.upgrade: "upgraded to V", "running: V", "rolled back to P: why"...
func (r *Result) Summary() string {
	switch r.Outcome {
	case Running:
		return "running: " + r.Version
	case Upgraded:
		return "upgraded to " + r.Version
	case Unchanged:
		return r.Version + " already installed"
	case RolledBack:
		return fmt.Sprintf("%s failed, rolled back to %s: %s", r.Version, r.Installed, r.Error)
	}
	return fmt.Sprintf("%s failed: %s", r.Version, r.Error)
}

// The bounds of the log tail.
const (
	MaxLogLines    = 60
	MaxLogLineSize = 300
)

// Tail returns the last MaxLogLines non-empty lines of log, each cut at
// MaxLogLineSize bytes.
func Tail(log string) []string {
	var out []string
	for l := range strings.SplitSeq(log, "\n") {
		l = strings.TrimRight(l, "\r \t")
		if l == "" {
			continue
		}
		if len(l) > MaxLogLineSize {
			l = l[:MaxLogLineSize] + "…"
		}
		out = append(out, l)
	}
	if len(out) > MaxLogLines {
		out = out[len(out)-MaxLogLines:]
	}
	return out
}

// ResultPath is where the result for version lives under dir.
func ResultPath(dir, version string) string {
	return filepath.Join(dir, version+".json")
}

// WriteResult writes r atomically under dir, mode 0640, with group gid
// when gid >= 0 (the agent's group, so that it can read it).
func WriteResult(dir string, r *Result, gid int) error {
	if _, err := ParseVersion(r.Version); err != nil {
		return fmt.Errorf("upgrade result: %w", err)
	}
	c := *r
	c.Format = ResultFormat
	c.LogTail = Tail(strings.Join(c.LogTail, "\n"))
	data, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := atomicfile.WriteTemp(dir, "."+r.Version+".json.tmp-*", append(data, '\n'), 0o640)
	if err != nil {
		return fmt.Errorf("upgrade result: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("upgrade result: %w", err)
		}
	}
	if err := os.Rename(tmp, ResultPath(dir, r.Version)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("upgrade result: %w", err)
	}
	return atomicfile.SyncDir(dir)
}

// maxResultSize bounds a result file: the log tail is the bulk of it.
const maxResultSize = 256 << 10

// ReadResult reads the result for version under dir. found is false, with
// no error, when there is none yet.
func ReadResult(dir, version string) (r *Result, found bool, err error) {
	if _, err := ParseVersion(version); err != nil {
		return nil, false, err
	}
	f, err := os.Open(ResultPath(dir, version))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("upgrade result: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxResultSize+1))
	if err != nil {
		return nil, false, fmt.Errorf("upgrade result: %w", err)
	}
	r, err = DecodeResult(data)
	if err != nil {
		return nil, false, fmt.Errorf("upgrade result %s: %w", ResultPath(dir, version), err)
	}
	if r.Version != version {
		return nil, false, fmt.Errorf("upgrade result %s: for version %q", ResultPath(dir, version), r.Version)
	}
	return r, true, nil
}

// DecodeResult decodes a result file. Fields it does not know are ignored
// (a newer build of the same format may add some); a newer format is
// refused.
func DecodeResult(data []byte) (*Result, error) {
	if len(data) > maxResultSize {
		return nil, fmt.Errorf("over %d bytes", maxResultSize)
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("not an upgrade result: %w", err)
	}
	switch {
	case r.Format < 1:
		return nil, fmt.Errorf("not an upgrade result: format %d", r.Format)
	case r.Format > ResultFormat:
		return nil, fmt.Errorf("written in format %d by a newer pbx-agent; this one reads %d", r.Format, ResultFormat)
	}
	switch r.Outcome {
	case Running, Upgraded, Unchanged, RolledBack, Failed:
	default:
		return nil, fmt.Errorf("unknown outcome %q", r.Outcome)
	}
	return &r, nil
}
