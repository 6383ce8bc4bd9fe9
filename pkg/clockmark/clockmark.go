// Package clockmark keeps the licence clock's mark in a small record
// written in place (pkg/slotfile): two fixed slots, each with a counter and
// a checksum, written in turn with pwrite and fdatasync. A write never
// allocates, so it goes through on a full disk, and a write torn by a crash
// or a power cut leaves the other slot, one mark older, to read.
package clockmark

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/slotfile"
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

// The record is a slotfile of two SlotSize slots under the magic
// "PBXCLKM2". A slot's data is the mark:
//
//	0  seconds     int64   (licence time, Unix)
//	8  nanoseconds uint32
//	12 reserved    (zero)
//	16 boot        int64   (nanoseconds)
//	24 revision    int64
//	32 seq         uint64
//
// little-endian.
const (
	SlotSize   = 512
	RecordSize = 2 * SlotSize
	dataLen    = 40
	magic      = "PBXCLKM2"
)

// ErrNoMark is returned by Read for a record that was created and never
// written.
var ErrNoMark = errors.New("the clock mark record holds no mark yet")

// Record is an open mark record. Its methods are safe for concurrent use.
type Record struct{ f *slotfile.File }

// Open opens the record at path, creating it (0600, at its full size) if it
// does not exist. The creation goes through a temporary file and a rename,
// so a crash never leaves a short record.
func Open(path string) (*Record, error) {
	f, err := slotfile.Open(path, magic, SlotSize)
	switch {
	case errors.Is(err, slotfile.ErrNotRecord):
		return nil, fmt.Errorf("%s is not a clock mark record: it was replaced; restore it or remove it "+
			"(the licence clock then starts from the state file's mark): %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("opening the clock mark record: %w", err)
	}
	return &Record{f: f}, nil
}

// Path returns the record's file name.
func (r *Record) Path() string { return r.f.Path() }

// Read returns the mark of the valid slot with the highest counter. One
// damaged slot (a torn write) is passed over; two are an error, as is a
// record never written (ErrNoMark).
func (r *Record) Read() (Mark, error) {
	data, err := r.f.Read()
	switch {
	case errors.Is(err, slotfile.ErrEmpty):
		return Mark{}, ErrNoMark
	case err != nil:
		return Mark{}, fmt.Errorf("the clock mark record: %w: the licence clock cannot resume from it; "+
			"remove the file to start the licence clock from the state file's mark, losing the time since then", err)
	}
	m, err := decode(data)
	if err != nil {
		return Mark{}, fmt.Errorf("the clock mark record %s holds no mark (%v): the licence clock cannot resume from it; "+
			"remove the file to start the licence clock from the state file's mark, losing the time since then", r.Path(), err)
	}
	return m, nil
}

// Write stores m in the slot not holding the current mark and waits for it
// to reach the disk. On an error the current mark stays readable and the
// next Write tries the same slot again. A record removed or replaced under
// the agent is an error too: marks written to a file no one will read are
// lost.
func (r *Record) Write(m Mark) error {
	err := r.f.Write(encode(m))
	switch {
	case errors.Is(err, slotfile.ErrReplaced):
		return fmt.Errorf("the clock mark record: %w: the agent keeps its mark in it; restart pbx-agent to create it again", err)
	case err != nil:
		return fmt.Errorf("the clock mark record: %w", err)
	}
	return nil
}

// Close closes the record.
func (r *Record) Close() error { return r.f.Close() }

func encode(m Mark) []byte {
	b := make([]byte, dataLen)
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(m.Time.Unix()))
	le.PutUint32(b[8:], uint32(m.Time.Nanosecond()))
	le.PutUint64(b[16:], uint64(m.Boot))
	le.PutUint64(b[24:], uint64(m.Revision))
	le.PutUint64(b[32:], m.Seq)
	return b
}

func decode(b []byte) (Mark, error) {
	le := binary.LittleEndian
	switch {
	case len(b) != dataLen:
		return Mark{}, fmt.Errorf("%d bytes of data, want %d", len(b), dataLen)
	case le.Uint32(b[12:]) != 0:
		return Mark{}, errors.New("reserved bytes set")
	case le.Uint32(b[8:]) >= 1e9:
		return Mark{}, errors.New("nanoseconds out of range")
	}
	return Mark{
		Time:     time.Unix(int64(le.Uint64(b[0:])), int64(le.Uint32(b[8:]))).UTC(),
		Boot:     time.Duration(le.Uint64(b[16:])),
		Revision: int64(le.Uint64(b[24:])),
		Seq:      le.Uint64(b[32:]),
	}, nil
}
