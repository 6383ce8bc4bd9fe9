// Package slotfile keeps a small, frequently rewritten record in place: two
// fixed slots, each with a counter, a length and a checksum, written in
// turn with pwrite and fdatasync. A write costs one synced write to blocks
// already allocated, where a crash-safe replacement of a file costs a new
// file, two syncs and a rename; a write torn by a crash or a power cut
// leaves the other slot, one write older, to read.
package slotfile

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
)

// Each slot of a File:
//
//	0  magic    8 bytes, the File's
//	8  counter  uint64 (the valid slot with the highest one is current)
//	16 length   uint32 of the data
//	20 CRC-32C  uint32 over bytes 0-19 and the data
//	24 data, then zeros to the end of the slot
//
// little-endian. Slots are whole 512-byte sectors, so a torn write
// damages one slot only.
const (
	headerLen  = 24
	sectorSize = 512
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrEmpty is returned by Read for a file created and never written.
var ErrEmpty = errors.New("the record was never written")

// ErrTooLarge is returned by Write for data that does not fit a slot.
var ErrTooLarge = errors.New("the data does not fit the record's slot")

// ErrReplaced is returned by Write when the file at the record's path is
// no longer the one written: removed or replaced while in use.
var ErrReplaced = errors.New("removed or replaced while in use")

// ErrNotRecord is returned by Open for a file of another size or kind.
var ErrNotRecord = errors.New("not a record of this kind")

// File is an open record. Its methods are safe for concurrent use.
type File struct {
	path     string
	magic    string
	slotSize int

	mu      sync.Mutex
	f       *os.File
	counter uint64 // of the current slot; 0: none
	cur     int    // the current slot, 0 or 1: Write takes the other
}

// Open opens the record at path, creating it (0600, at its full size) if it
// does not exist. magic (8 bytes) names the kind of record; slotSize, a
// multiple of 512, bounds the data to slotSize-24 bytes. A file of another
// size or kind is refused, naming it.
func Open(path, magic string, slotSize int) (*File, error) {
	if len(magic) != 8 || slotSize <= headerLen || slotSize%sectorSize != 0 {
		return nil, fmt.Errorf("slotfile: magic %q, slot size %d: want 8 bytes and a multiple of %d", magic, slotSize, sectorSize)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path, 2*slotSize); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil && (!fi.Mode().IsRegular() || fi.Size() != int64(2*slotSize)) {
		err = fmt.Errorf("%w (%v, %d bytes, want a %d-byte file): move it away, and a new one is made",
			ErrNotRecord, fi.Mode().Type(), fi.Size(), 2*slotSize)
	}
	if err == nil && fi.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600) // only its writer reads and writes it
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	r := &File{path: path, magic: magic, slotSize: slotSize, f: f, cur: 1}
	r.Read() // sets the counter, so the first Write spares the current data; errors are Read's to report
	return r, nil
}

func create(path string, size int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing left to remove
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(make([]byte, size))
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
		return fmt.Errorf("creating %s: %w", path, err)
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
func (r *File) Path() string { return r.path }

// Capacity is the most data a Write takes.
func (r *File) Capacity() int { return r.slotSize - headerLen }

// Read returns the data of the valid slot with the highest counter. One
// damaged slot (a torn write) is passed over; two are an error, as is a
// record never written (ErrEmpty).
func (r *File) Read() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	buf := make([]byte, 2*r.slotSize)
	if _, err := r.f.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("reading %s: %w", r.path, err)
	}
	var best []byte
	var bestN uint64
	bestSlot := 0
	var bad []string
	empty := 0
	for i := range 2 {
		data, n, err := r.decode(buf[i*r.slotSize : (i+1)*r.slotSize])
		switch {
		case errors.Is(err, ErrEmpty):
			empty++
		case err != nil:
			bad = append(bad, fmt.Sprintf("slot %c: %v", 'A'+i, err))
		case n > bestN:
			best, bestN, bestSlot = data, n, i
		}
	}
	switch {
	case bestN > 0:
		if bestN > r.counter {
			r.counter, r.cur = bestN, bestSlot
		}
		return best, nil
	case empty == 2:
		return nil, ErrEmpty
	}
	return nil, fmt.Errorf("%s is damaged (%s)", r.path, strings.Join(bad, "; "))
}

// Write stores data in the slot not holding the current data and waits
// for it to reach the disk. On an error the current data stays readable
// and the next Write tries the same slot again. A record removed or
// replaced under the writer is an error too: data written to a file no
// one will read is lost.
func (r *File) Write(data []byte) error {
	if len(data) > r.Capacity() {
		return fmt.Errorf("%s: %d bytes, %d at most: %w", r.path, len(data), r.Capacity(), ErrTooLarge)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n, next := r.counter+1, 1-r.cur
	// Only the bytes up to the end of the data's last sector: the rest of
	// the slot is zero already, or ignored as past the length.
	end := (headerLen + len(data) + sectorSize - 1) / sectorSize * sectorSize
	slot := r.encode(data, n)[:end]
	if _, err := r.f.WriteAt(slot, int64(next*r.slotSize)); err != nil { // pwrite(2)
		return fmt.Errorf("writing %s: %w", r.path, err)
	}
	if err := datasync(r.f); err != nil {
		return fmt.Errorf("syncing %s: %w", r.path, err)
	}
	r.counter, r.cur = n, next
	held, err := r.f.Stat()
	if err != nil {
		return fmt.Errorf("checking %s: %w", r.path, err)
	}
	if now, err := os.Stat(r.path); err != nil || !os.SameFile(held, now) {
		return fmt.Errorf("%s was %w", r.path, ErrReplaced)
	}
	return nil
}

// Close closes the record.
func (r *File) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

func (r *File) encode(data []byte, counter uint64) []byte {
	b := make([]byte, r.slotSize)
	copy(b, r.magic)
	le := binary.LittleEndian
	le.PutUint64(b[8:], counter)
	le.PutUint32(b[16:], uint32(len(data)))
	copy(b[headerLen:], data)
	le.PutUint32(b[20:], checksum(b, len(data)))
	return b
}

func checksum(slot []byte, n int) uint32 {
	c := crc32.Update(0, castagnoli, slot[:20])
	return crc32.Update(c, castagnoli, slot[headerLen:headerLen+n])
}

func (r *File) decode(b []byte) ([]byte, uint64, error) {
	if allZero(b) {
		return nil, 0, ErrEmpty
	}
	le := binary.LittleEndian
	n := int(le.Uint32(b[16:]))
	switch {
	case string(b[:8]) != r.magic:
		return nil, 0, errors.New("no slot header")
	case n > r.slotSize-headerLen:
		return nil, 0, errors.New("length past the slot")
	case le.Uint32(b[20:]) != checksum(b, n):
		return nil, 0, errors.New("checksum mismatch")
	case le.Uint64(b[8:]) == 0:
		return nil, 0, errors.New("counter zero")
	}
	return append([]byte(nil), b[headerLen:headerLen+n]...), le.Uint64(b[8:]), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
