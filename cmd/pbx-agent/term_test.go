package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal and returns its terminal side, or skips
// the test where the machine has none.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	_, tty := openPTYPair(t)
	return tty
}

// openPTYPair opens a pseudo-terminal and returns its controlling side,
// which reads what is written to the terminal side, and its terminal side.
func openPTYPair(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt
		t.Fatalf("unlockpt: %v", err)
	}
	// TIOCGPTPEER opens the terminal side without a path in /dev/pts,
	// which a container may not show.
	pts, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY))
	if errno != 0 {
		t.Skipf("TIOCGPTPEER: %v", errno)
	}
	tty = os.NewFile(pts, "pts")
	t.Cleanup(func() { tty.Close() })
	return ptmx, tty
}

func TestIsTerminal(t *testing.T) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, tc := range []struct {
		name string
		f    *os.File
		want bool
	}{
		{"/dev/null, a character device", devNull, false},
		{"a file", file, false},
		{"a pipe", r, false},
		{"a pseudo-terminal", openPTY(t), true},
	} {
		if got := isTerminal(tc.f); got != tc.want {
			t.Errorf("isTerminal(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestNoPromptToDevNull: a key read from /dev/null (a script, a unit with
// no input) gets no "paste the key" prompt, only the error.
func TestNoPromptToDevNull(t *testing.T) {
	newFixture(t)
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	a := &app{stdin: devNull, stdout: new(strings.Builder), stderr: new(strings.Builder)}
	if _, err := a.readKey(""); err != nil {
		t.Fatalf("readKey from /dev/null: %v", err)
	}
	if got := a.stderr.(*strings.Builder).String(); got != "" {
		t.Errorf("prompt written for /dev/null: %q", got)
	}
}
