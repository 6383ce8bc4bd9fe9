package actions

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
)

// UnitDir is where the drop-ins go: the admin's unit folder, which a
// package upgrade never touches.
const UnitDir = "/etc/systemd/system"

// DropInName is the file name of both drop-ins.
const DropInName = "50-pbx-telephony.conf"

// unitName is a systemd unit name of the kinds telephony runs as.
var unitName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9:_.@\\-]{0,250}\.(service|socket|target|timer|path|mount|scope|slice)$`)

// ValidUnitName reports whether s names a unit enforcement.stop_units may
// list: a plain unit name; no path, glob or space.
func ValidUnitName(s string) bool {
	return unitName.MatchString(s) && !strings.Contains(s, "..") && s != ActiveTarget && s != StoppedTarget
}

// DropIns returns the drop-ins that attach units to the targets, keyed by
// path under UnitDir; none when units is empty.
//
// StoppedTarget conflicts with each unit, and is ordered after it so
// that its start job finishes once the units have stopped (a stop and a
// start with any ordering between them run stop first). ActiveTarget
// wants each unit; a target is ordered after what it wants by default, so
// its start job finishes once they have started.
func DropIns(units []string) (map[string]string, error) {
	for _, u := range units {
		if !ValidUnitName(u) {
			return nil, fmt.Errorf("%q is not a unit name (e.g. asterisk.service)", u)
		}
	}
	out := map[string]string{}
	if len(units) == 0 {
		return out, nil
	}
	list := strings.Join(units, " ")
	const head = "# Written by `pbx-agent helper telephony-units` from enforcement.stop_units\n" +
		"# in /etc/pbx-agent/agent.yaml: edit that list and run the helper again.\n"
	out[StoppedTarget+".d/"+DropInName] = head + "[Unit]\nConflicts=" + list + "\nAfter=" + list + "\n"
	out[ActiveTarget+".d/"+DropInName] = head + "[Unit]\nWants=" + list + "\n"
	return out, nil
}

// WriteDropIns makes the drop-ins under root (UnitDir on a machine)
// match units: it writes those that differ, atomically, and removes those
// no longer wanted (and their folder, when empty). It reports whether
// anything changed, which then needs a daemon-reload.
func WriteDropIns(root string, units []string) (changed bool, err error) {
	want, err := DropIns(units)
	if err != nil {
		return false, err
	}
	for _, target := range []string{StoppedTarget, ActiveTarget} {
		rel := target + ".d/" + DropInName
		path := filepath.Join(root, rel)
		have, err := os.ReadFile(path)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return changed, err
		}
		content, wanted := want[rel]
		switch {
		case wanted && exists && bytes.Equal(have, []byte(content)):
		case wanted:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return changed, err
			}
			if err := atomicfile.WriteFile(path, []byte(content), 0o644); err != nil {
				return changed, err
			}
			changed = true
		case exists:
			if err := os.Remove(path); err != nil {
				return changed, err
			}
			os.Remove(filepath.Dir(path)) // only if empty: the admin's own drop-ins stay
			changed = true
		}
	}
	return changed, nil
}

// CheckDropIns reports, as an error, drop-ins under root that do not match
// units: enforcement.stop_units was changed and the helper not run again.
func CheckDropIns(root string, units []string) error {
	want, err := DropIns(units)
	if err != nil {
		return err
	}
	for _, target := range []string{StoppedTarget, ActiveTarget} {
		rel := target + ".d/" + DropInName
		have, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if string(have) != want[rel] {
			return fmt.Errorf("%s does not match enforcement.stop_units %v: run `pbx-agent helper telephony-units` as root",
				filepath.Join(root, rel), units)
		}
	}
	return nil
}
