package clockmark

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mark(i int) Mark {
	return Mark{
		Time:     time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).Add(time.Duration(i)*10*time.Second + 123456789),
		Boot:     time.Hour + time.Duration(i)*10*time.Second,
		Revision: int64(7 + i),
		Seq:      uint64(1000 + i),
	}
}

func open(t *testing.T, path string) *Record {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func checkFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != RecordSize || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %d bytes, mode %v; want %d bytes, 0600", path, fi.Size(), fi.Mode().Perm(), RecordSize)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock.mark")
	r := open(t, path)
	checkFile(t, path)
	if _, err := r.Read(); !errors.Is(err, ErrNoMark) {
		t.Fatalf("a new record: %v, want ErrNoMark", err)
	}
	for i := range 5 {
		if err := r.Write(mark(i)); err != nil {
			t.Fatal(err)
		}
		got, err := r.Read()
		if err != nil || got != mark(i) {
			t.Fatalf("after write %d: %+v, %v; want %+v", i, got, err, mark(i))
		}
		checkFile(t, path) // written in place: the size never changes
	}
	r.Close()
	// Another process opens it: it carries on from the current slot.
	r2 := open(t, path)
	if got, err := r2.Read(); err != nil || got != mark(4) {
		t.Fatalf("reopened: %+v, %v; want %+v", got, err, mark(4))
	}
	if err := r2.Write(mark(5)); err != nil {
		t.Fatal(err)
	}
	// The write took the older slot: damaging the new one falls back to mark 4.
	corrupt(t, path, slotOf(t, path, 6))
	if got, err := open(t, path).Read(); err != nil || got != mark(4) {
		t.Errorf("after the newest slot was damaged: %+v, %v; want mark 4", got, err)
	}
}

// slotOf returns the slot holding the given counter.
func slotOf(t *testing.T, path string, counter uint64) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		slot := b[i*SlotSize : (i+1)*SlotSize]
		if string(slot[:8]) == magic && binary.LittleEndian.Uint64(slot[8:]) == counter {
			return i
		}
	}
	t.Fatalf("no slot holds counter %d", counter)
	return -1
}

// corrupt writes garbage over a slot, as a write torn by a power cut would.
func corrupt(t *testing.T, path string, slot int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	garbage := []byte(strings.Repeat("\xde\xad\xbe\xef", 40))
	if _, err := f.WriteAt(garbage, int64(slot*SlotSize+8)); err != nil {
		t.Fatal(err)
	}
}

func TestRecordTornWrite(t *testing.T) {
	for _, tt := range []struct {
		name string
		slot func(newest int) int
		want Mark
	}{
		{"the newest slot torn: the previous mark", func(n int) int { return n }, mark(1)},
		{"the older slot torn: the newest mark", func(n int) int { return 1 - n }, mark(2)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clock.mark")
			r := open(t, path)
			for i := range 3 {
				if err := r.Write(mark(i)); err != nil {
					t.Fatal(err)
				}
			}
			corrupt(t, path, tt.slot(slotOf(t, path, 3)))
			r2 := open(t, path)
			got, err := r2.Read()
			if err != nil || got != tt.want {
				t.Fatalf("%+v, %v; want %+v", got, err, tt.want)
			}
			// The next write repairs the damaged slot, or takes the older one.
			if err := r2.Write(mark(9)); err != nil {
				t.Fatal(err)
			}
			if got, err := open(t, path).Read(); err != nil || got != mark(9) {
				t.Errorf("after the next write: %+v, %v", got, err)
			}
		})
	}
}

func TestRecordBothSlotsDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock.mark")
	r := open(t, path)
	for i := range 2 {
		if err := r.Write(mark(i)); err != nil {
			t.Fatal(err)
		}
	}
	corrupt(t, path, 0)
	corrupt(t, path, 1)
	_, err := open(t, path).Read()
	if err == nil || errors.Is(err, ErrNoMark) {
		t.Fatalf("both slots damaged: %v, want an error", err)
	}
	for _, want := range []string{path, "slot A", "slot B", "damaged", "remove the file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// A torn first write (one garbage slot, the other never written) is
	// damage too, not "no mark": it cannot be told from tampering.
	path2 := filepath.Join(t.TempDir(), "clock.mark")
	open(t, path2)
	corrupt(t, path2, 0)
	if _, err := open(t, path2).Read(); err == nil || errors.Is(err, ErrNoMark) {
		t.Errorf("one slot damaged, the other empty: %v, want damage", err)
	}
}

func TestRecordRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(short); err == nil || !strings.Contains(err.Error(), "not a clock mark record") {
		t.Errorf("a 2-byte file: %v", err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("a directory opened as a record")
	}
	if _, err := Open(filepath.Join(dir, "missing", "clock.mark")); err == nil || !strings.Contains(err.Error(), "clock mark record") || !strings.Contains(err.Error(), "creating") {
		t.Errorf("a record that cannot be created: %v", err)
	}
	// A record made readable by others is put back to 0600.
	wide := filepath.Join(dir, "clock.mark")
	open(t, wide).Close()
	if err := os.Chmod(wide, 0o644); err != nil {
		t.Fatal(err)
	}
	open(t, wide)
	checkFile(t, wide)
}

// TestRecordRemovedWhileRunning: the owner removes the record under the
// agent so the next start finds none; the next write says so.
func TestRecordRemovedWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock.mark")
	r := open(t, path)
	if err := r.Write(mark(0)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(mark(1)); err == nil || !strings.Contains(err.Error(), "removed or replaced") {
		t.Errorf("write after removal: %v", err)
	}
}

// TestRecordSurvivesKill kills a process writing marks in a loop, again and
// again: the record always reads, and never goes back before a mark the
// writer reported written.
func TestRecordSurvivesKill(t *testing.T) {
	if path := os.Getenv("CLOCKMARK_WRITER"); path != "" {
		writeLoop(path)
		return
	}
	path := filepath.Join(t.TempDir(), "clock.mark")
	var done int // marks the writers reported written
	for round := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRecordSurvivesKill$")
		cmd.Env = append(os.Environ(), "CLOCKMARK_WRITER="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		last := -1
		// Kill it mid-loop, after a number of writes that varies per round.
		for sc.Scan() {
			n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "wrote "))
			if err != nil {
				continue
			}
			last = n
			if n-1000 >= done+50+round*37 {
				break
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		if last < 0 {
			t.Fatalf("round %d: the writer wrote nothing", round)
		}
		r := open(t, path)
		got, err := r.Read()
		if err != nil {
			t.Fatalf("round %d, killed after mark %d: %v", round, last, err)
		}
		if got.Seq < uint64(last) {
			t.Fatalf("round %d: the record holds mark %d, behind mark %d the writer had synced", round, got.Seq, last)
		}
		if want := mark(int(got.Seq) - 1000); got != want {
			t.Fatalf("round %d: %+v, want %+v", round, got, want)
		}
		checkFile(t, path)
		r.Close()
		done = int(got.Seq) - 1000
	}
}

// writeLoop is the writer TestRecordSurvivesKill kills: it resumes from the
// record and writes marks until killed.
func writeLoop(path string) {
	r, err := Open(path)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	i := 0
	if m, err := r.Read(); err == nil {
		i = int(m.Seq) - 1000 + 1
	}
	for ; ; i++ {
		if err := r.Write(mark(i)); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Printf("wrote %d\n", 1000+i)
	}
}
