// Package clockmark keeps the licence clock's mark in a small record
// written in place: two fixed slots, each with a counter and a checksum,
// written in turn with pwrite and fdatasync. A write never allocates, so it
// goes through on a full disk, and a write torn by a crash or a power cut
// leaves the other slot, one mark older, to read.
package clockmark

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Mark is what the record holds: the licence clock's mark and the highest
// licence revision and heartbeat chain sequence the agent has held, so a
// state file restored alone from a backup shows as older than the record.
type Mark struct {
	Time     time.Time     // the licence time
	Boot     time.Duration // CLOCK_BOOTTIME when Time was taken
	Revision int64         // the highest licence revision held
	Seq      uint64        // the highest heartbeat chain sequence number held
}

// The record's layout: two slots of SlotSize bytes, each
//
//	0  magic "PBXCLKM1"
//	8  counter     uint64  (the slot with the highest valid one is current)
//	16 seconds     int64   (licence time, Unix)
//	24 nanoseconds uint32
//	28 reserved    (zero)
//	32 boot        int64   (nanoseconds)
//	40 revision    int64
//	48 seq         uint64
//	56 CRC-32C     uint32  over bytes 0-55
//
// little-endian, the rest of the slot zero. One slot per 512-byte sector:
// a torn write damages one slot only.
const (
	SlotSize   = 512
	RecordSize = 2 * SlotSize
	dataLen    = 56
	magic      = "PBXCLKM1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrNoMark is returned by Read for a record that was created and never
// written.
var ErrNoMark = errors.New("the clock mark record holds no mark yet")

// Record is an open mark record. Its methods are safe for concurrent use.
type Record struct {
	path string

	mu      sync.Mutex
	f       *os.File
	counter uint64 // of the current slot; 0: none
	cur     int    // the current slot, 0 or 1: Write takes the other
}

// Open opens the record at path, creating it (0600, at its full size) if it
// does not exist. The creation goes through a temporary file and a rename,
// so a crash never leaves a short record.
func Open(path string) (*Record, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the clock mark record: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && (!fi.Mode().IsRegular() || fi.Size() != RecordSize) {
		err = fmt.Errorf("%s is not a clock mark record (%v, %d bytes, want a %d-byte file): "+
			"it was replaced; restore it or remove it (the licence clock then starts from the state file's mark)",
			path, fi.Mode().Type(), fi.Size(), RecordSize)
	}
	if err == nil && fi.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600) // only the agent reads and writes it
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	r := &Record{path: path, f: f, cur: 1}
	r.Read() // sets the counter, so the first Write spares the current mark; errors are Read's to report
	return r, nil
}

func create(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("creating the clock mark record: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing left to remove
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(make([]byte, RecordSize))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("creating the clock mark record %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Path returns the record's file name.
func (r *Record) Path() string { return r.path }

// Read returns the mark of the valid slot with the highest counter. One
// damaged slot (a torn write) is passed over; two are an error, as is a
// record never written (ErrNoMark).
func (r *Record) Read() (Mark, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	buf := make([]byte, RecordSize)
	if _, err := r.f.ReadAt(buf, 0); err != nil {
		return Mark{}, fmt.Errorf("reading the clock mark record %s: %w", r.path, err)
	}
	var best Mark
	var bestN uint64
	bestSlot := 0
	var bad []string
	empty := 0
	for i := range 2 {
		m, n, err := decode(buf[i*SlotSize : (i+1)*SlotSize])
		switch {
		case errors.Is(err, errEmpty):
			empty++
		case err != nil:
			bad = append(bad, fmt.Sprintf("slot %c: %v", 'A'+i, err))
		case n > bestN:
			best, bestN, bestSlot = m, n, i
		}
	}
	switch {
	case bestN > 0:
		if bestN > r.counter {
			r.counter, r.cur = bestN, bestSlot
		}
		return best, nil
	case empty == 2:
		return Mark{}, ErrNoMark
	}
	return Mark{}, fmt.Errorf("the clock mark record %s is damaged (%s): the licence clock cannot resume from it; "+
		"remove the file to start the licence clock from the state file's mark, losing the time since then", r.path, strings.Join(bad, "; "))
}

// Write stores m in the slot not holding the current mark and waits for it
// to reach the disk. On an error the current mark stays readable and the
// next Write tries the same slot again. A record removed or replaced under
// the agent is an error too: marks written to a file no one will read are
// lost.
func (r *Record) Write(m Mark) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, next := r.counter+1, 1-r.cur
	slot := encode(m, n)
	off := int64(next) * SlotSize
	if _, err := r.f.WriteAt(slot, off); err != nil { // pwrite(2)
		return fmt.Errorf("writing the clock mark record %s: %w", r.path, err)
	}
	if err := datasync(r.f); err != nil {
		return fmt.Errorf("syncing the clock mark record %s: %w", r.path, err)
	}
	r.counter, r.cur = n, next
	held, err := r.f.Stat()
	if err != nil {
		return fmt.Errorf("checking the clock mark record %s: %w", r.path, err)
	}
	if now, err := os.Stat(r.path); err != nil || !os.SameFile(held, now) {
		return fmt.Errorf("the clock mark record %s was removed or replaced while the agent ran: "+
			"the agent keeps its mark in it; restart pbx-agent to create it again", r.path)
	}
	return nil
}

// Close closes the record.
func (r *Record) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

var errEmpty = errors.New("never written")

func encode(m Mark, counter uint64) []byte {
	b := make([]byte, SlotSize)
	copy(b, magic)
	le := binary.LittleEndian
	le.PutUint64(b[8:], counter)
	le.PutUint64(b[16:], uint64(m.Time.Unix()))
	le.PutUint32(b[24:], uint32(m.Time.Nanosecond()))
	le.PutUint64(b[32:], uint64(m.Boot))
	le.PutUint64(b[40:], uint64(m.Revision))
	le.PutUint64(b[48:], m.Seq)
	le.PutUint32(b[dataLen:], crc32.Checksum(b[:dataLen], castagnoli))
	return b
}

func decode(b []byte) (Mark, uint64, error) {
	if allZero(b) {
		return Mark{}, 0, errEmpty
	}
	le := binary.LittleEndian
	switch {
	case string(b[:8]) != magic:
		return Mark{}, 0, errors.New("no slot header")
	case le.Uint32(b[dataLen:]) != crc32.Checksum(b[:dataLen], castagnoli):
		return Mark{}, 0, errors.New("checksum mismatch")
	case !allZero(b[dataLen+4:]) || !allZero(b[28:32]):
		return Mark{}, 0, errors.New("bytes past the mark")
	case le.Uint64(b[8:]) == 0:
		return Mark{}, 0, errors.New("counter zero")
	}
	nsec := le.Uint32(b[24:])
	if nsec >= 1e9 {
		return Mark{}, 0, errors.New("nanoseconds out of range")
	}
	return Mark{
		Time:     time.Unix(int64(le.Uint64(b[16:])), int64(nsec)).UTC(),
		Boot:     time.Duration(le.Uint64(b[32:])),
		Revision: int64(le.Uint64(b[40:])),
		Seq:      le.Uint64(b[48:]),
	}, le.Uint64(b[8:]), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
