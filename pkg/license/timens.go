package license

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TimensOffsetsPath is where Linux shows the offsets of a process's time
// namespace (time_namespaces(7)).
const TimensOffsetsPath = "/proc/self/timens_offsets"

// CheckTimeNamespace refuses a process whose time namespace moves the
// monotonic or boot clocks: such a namespace lets whoever started the
// process put the boot time, which the licence clock counts on, where they
// like. root prefixes the path (tests); "" is "/". A kernel without time
// namespaces has no such file, and nothing to check.
func CheckTimeNamespace(root string) error {
	if root == "" {
		root = "/"
	}
	path := filepath.Join(root, TimensOffsetsPath)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if err := ParseTimensOffsets(string(b)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ParseTimensOffsets checks the text of a timens_offsets file: every clock
// it lists ("monotonic", "boottime") must have a zero offset. A line it
// cannot read is an error too: a check that skips what it does not
// understand can be walked around.
func ParseTimensOffsets(text string) error {
	for n, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return fmt.Errorf("line %d %q: want a clock name, seconds and nanoseconds", n+1, line)
		}
		secs, err1 := strconv.ParseInt(f[1], 10, 64)
		nsecs, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("line %d %q: the offset is not a number", n+1, line)
		}
		if secs != 0 || nsecs != 0 {
			return fmt.Errorf("the %s clock is offset by %ds %dns in this process's time namespace, "+
				"which would move the licence clock; run pbx-agent in the initial time namespace "+
				"(not under unshare --time or a container runtime that sets clock offsets)", f[0], secs, nsecs)
		}
	}
	return nil
}
