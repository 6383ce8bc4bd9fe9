package identity

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DMISerial is the DMI serial number's file, relative to the root. The
// kernel makes it readable by root only.
const DMISerial = "sys/class/dmi/id/product_serial"

// SerialCopyName is the file, in the daemon's runtime folder, that the
// unit's root ExecStartPre step (pbx-agent helper copy-serial) copies the
// DMI serial to, so the unprivileged daemon can read it.
const SerialCopyName = "product_serial"

// Sources of the serial number, as the status shows them.
const (
	SerialFromConfig = "identity.serial"
	SerialFromDMI    = "dmi"
)

// maxSerial bounds what is read: DMI serials are short, and the copy is in
// a folder the daemon itself may write.
const maxSerial = 128

// placeholderSerials are what vendors leave in DMI instead of a serial.
var placeholderSerials = []string{"", "0", "none", "n/a", "default string", "not specified", "not applicable",
	"system serial number", "to be filled by o.e.m.", "0123456789", "chassis serial number"}

// ResolveSerial returns the appliance's serial number and where it came
// from: the identity.serial override; else the DMI serial, as the root
// step copied it to copyPath, or read directly when the agent may (root);
// else "" and a source "unknown (why)" that says how to set one.
func ResolveSerial(override, root, copyPath string) (serial, source string) {
	if s := strings.TrimSpace(override); s != "" {
		return s, SerialFromConfig
	}
	var why []string
	for _, p := range []string{copyPath, filepath.Join(root, DMISerial)} {
		if p == "" {
			continue
		}
		s, err := readSerial(p)
		if err == nil {
			return s, SerialFromDMI
		}
		why = append(why, err.Error())
	}
	if len(why) == 0 {
		why = append(why, "no DMI serial to read")
	}
	return "", "unknown (" + strings.Join(why, "; ") + "; set identity.serial)"
}

// readSerial reads one serial file, saying in words why it gives none.
func readSerial(path string) (string, error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		return "", fmt.Errorf("%s is readable by root only", path)
	case err != nil:
		return "", err
	}
	defer f.Close()
	b := make([]byte, maxSerial+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("%s is empty", path)
	}
	if n > maxSerial {
		return "", fmt.Errorf("%s holds more than %d bytes, not a serial number", path, maxSerial)
	}
	s := strings.TrimSpace(string(b[:n]))
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return "", fmt.Errorf("%s holds a byte outside printable ASCII", path)
		}
	}
	for _, p := range placeholderSerials {
		if strings.EqualFold(s, p) {
			return "", fmt.Errorf("%s holds the placeholder %q, not a serial number", path, s)
		}
	}
	return s, nil
}

// CopySerial copies the DMI serial under root to dst (mode 0644) for the
// unprivileged daemon; with no usable serial it removes dst, so a stale copy
// from other hardware (a disk moved in an RMA) is never shown. It returns
// the serial copied, "" when none.
func CopySerial(root, dst string) (string, error) {
	s, err := readSerial(filepath.Join(root, DMISerial))
	if err != nil {
		if rmErr := os.Remove(dst); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			return "", fmt.Errorf("removing the stale serial copy: %w", rmErr)
		}
		return "", nil
	}
	// dst's folder belongs to the daemon's user, and this runs as root:
	// a link planted there must not make root write elsewhere. The
	// temporary file is created afresh (O_EXCL does not follow a link),
	// its mode set on the descriptor, and renamed over dst (replacing a
	// link, not writing through it).
	tmp := dst + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("copying the serial: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return "", fmt.Errorf("copying the serial: %w", err)
	}
	_, err = f.WriteString(s + "\n")
	if err == nil {
		err = f.Chmod(0o644) // the umask may have narrowed it
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("copying the serial: %w", err)
	}
	return s, nil
}
