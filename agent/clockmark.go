package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/clockmark"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// clockMarkFile is the licence clock's mark record in the state folder
// (pkg/clockmark): written in place every clockMarkInterval and at stop.
const clockMarkFile = "clock.mark"

// clockMarkInterval is how often the mark is written. Within one boot a
// restart counts the time since the last mark anyway (boot time); the
// interval bounds what a reboot loses.
const clockMarkInterval = 10 * time.Second

// clockMark is the agent's side of the mark record.
type clockMark struct {
	mu   sync.Mutex
	rec  *clockmark.Record
	held clockmark.Mark // the highest revision and sequence held: carried from mark to mark
	err  string         // the last write's error; "" after a good one
}

// openClockMark starts the licence clock: it checks the process's time
// namespace, opens (or creates) the record in the state folder, starts the
// clock from the later of its mark and the state file's high-water mark,
// and writes the mark back at once, so a record that cannot be written
// refuses the start rather than letting the clock stand still. root
// prefixes /proc (tests).
func openClockMark(stateDir, root string, src license.TimeSource, highWater time.Time, log *slog.Logger) (*clockMark, *license.Clock, error) {
	if err := license.CheckTimeNamespace(root); err != nil {
		return nil, nil, fmt.Errorf("the licence clock cannot run: %w", err)
	}
	path := filepath.Join(stateDir, clockMarkFile)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) && !highWater.IsZero() {
		// An upgrade from a version without the record, or the record
		// removed: the time since the state file's mark is lost.
		log.Warn("the licence clock's mark record is missing: the clock resumes from the state file's mark", "file", path, "mark", highWater)
	}
	rec, err := clockmark.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("the licence clock cannot run: %w", err)
	}
	m, err := rec.Read()
	switch {
	case errors.Is(err, clockmark.ErrNoMark): // made just now, or never written
	case err != nil:
		rec.Close()
		return nil, nil, fmt.Errorf("the licence clock cannot run: %w", err)
	}
	c := &clockMark{rec: rec, held: m}
	clock := license.NewClock(src, license.Mark{Time: m.Time, Boot: m.Boot}, license.Mark{Time: highWater})
	if err := c.write(clock.Mark(), 0); err != nil {
		rec.Close()
		return nil, nil, fmt.Errorf("the licence clock cannot run: %w", err)
	}
	return c, clock, nil
}

// write stores the clock's mark with the highest revision and sequence
// seen. A failure is kept for status and logged by the caller; a record
// removed under the agent is created again, after the failure is reported.
func (c *clockMark) write(m license.Mark, revision int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held.Time, c.held.Boot = m.Time, m.Boot
	c.held.Revision = max(c.held.Revision, revision)
	err := c.rec.Write(c.held)
	if err != nil {
		if rec, rerr := clockmark.Open(c.rec.Path()); rerr == nil {
			c.rec.Close()
			c.rec = rec
			if werr := rec.Write(c.held); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		c.err = err.Error()
		return err
	}
	c.err = ""
	return nil
}

// noteSeq records a heartbeat chain sequence number the agent holds; the
// next write carries it.
func (c *clockMark) noteSeq(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held.Seq = max(c.held.Seq, seq)
}

// lastError is the last write's error, for status.
func (c *clockMark) lastError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// heldMark is the highest licence revision and chain sequence the record
// has seen.
func (c *clockMark) heldMark() clockmark.Mark {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// restart records a new activation: its revision and chain start afresh
// (another PBX's revisions may be lower), written at once.
func (c *clockMark) restart(m license.Mark, revision int64, seq uint64) error {
	c.mu.Lock()
	c.held.Revision, c.held.Seq = revision, seq
	c.mu.Unlock()
	return c.write(m, revision)
}

func (c *clockMark) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.Close()
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// clockMarkLoop writes the mark every clockMarkInterval and once more when
// ctx ends, after checking the state file against the record.
func (a *Agent) clockMarkLoop(ctx context.Context) {
	t := a.clk.NewTicker(clockMarkInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := a.writeClockMark(); err != nil {
				a.log.Error("writing the licence clock's mark at stop", "err", err)
			}
			return
		case <-t.C():
			if err := a.writeClockMark(); err != nil {
				a.log.Error("writing the licence clock's mark", "err", err)
			}
		}
	}
}
