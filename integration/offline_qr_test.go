package integration

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	qr "github.com/piglig/go-qr"
	"golang.org/x/sys/unix"
)

// openTerminal opens a pseudo-terminal 80 columns wide and returns its
// controlling side, which reads what is written to the terminal side.
func openTerminal(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	pts, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY))
	if errno != 0 {
		t.Skipf("TIOCGPTPEER: %v", errno)
	}
	tty = os.NewFile(pts, "pts")
	t.Cleanup(func() { tty.Close() })
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: 80, Row: 50}); err != nil {
		t.Fatal(err)
	}
	return ptmx, tty
}

// cliOnTerminal runs a pbx-agent verb of the appliance with its standard
// output on a terminal, as an admin at the console does.
func (a *appliance) cliOnTerminal(stdin string, args ...string) (stdout, stderr string) {
	t := a.t
	t.Helper()
	ptmx, tty := openTerminal(t)
	read := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		io.Copy(&b, ptmx) // ends with EIO once no one holds the terminal side
		read <- b.String()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "pbx-agent"), append([]string{"--config", a.config}, args...)...)
	var errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), tty, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("pbx-agent %v on a terminal: %v: %s", args, err, errb.String())
	}
	tty.Close()
	return strings.ReplaceAll(<-read, "\r\n", "\n"), errb.String()
}

// scanQR reads the QR code drawn with half blocks above the "Scan the
// code" line of out (black on white in ANSI colour, or its light modules
// without colour), as a phone would, and returns its text.
func scanQR(t *testing.T, out string) string {
	t.Helper()
	const ink, reset = "\x1b[30;107m", "\x1b[0m"
	drawn, _, ok := strings.Cut(out, "Scan the code")
	if !ok {
		t.Fatalf("no QR code on the terminal:\n%s", out)
	}
	colour := strings.Contains(drawn, ink)
	var rows [][]bool // dark modules
	for _, line := range strings.Split(strings.TrimRight(drawn, "\n"), "\n") {
		line = strings.TrimSuffix(strings.TrimPrefix(line, ink), reset)
		var upper, lower []bool
		for _, r := range line {
			u, l := r == '█' || r == '▀', r == '█' || r == '▄'
			upper, lower = append(upper, u == colour), append(lower, l == colour)
		}
		rows = append(rows, upper, lower)
	}
	const scale = 4
	img := image.NewGray(image.Rect(0, 0, len(rows[0])*scale, len(rows)*scale))
	for y, row := range rows {
		for x, dark := range row {
			c := color.Gray{Y: 255}
			if dark {
				c = color.Gray{}
			}
			for i := range scale * scale {
				img.SetGray(x*scale+i%scale, y*scale+i/scale, c)
			}
		}
	}
	text, err := qr.Decode(img)
	if err != nil {
		t.Fatalf("scanning the QR code: %v\n%s", err, drawn)
	}
	return text
}

// TestAirGappedActivationByQRCode: the admin runs activate --offline at
// the appliance's console; a phone scans the code drawn there (no key in
// it) and carries its text to the portal; the licence file it answers
// with installs. The request file written beside it is the same request:
// the portal answers it with the same licence file. A day on, the usage
// report's code renews it the same way.
func TestAirGappedActivationByQRCode(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "qr.example", "--model", "WPBX-VM", "--term", "monthly", "--users", "uc-premium=10")
	a := airGappedAppliance(t, "qr", p)
	a.start()

	file := filepath.Join(t.TempDir(), "request.txt")
	out, errs := a.cliOnTerminal(key, "activate", "--offline", "--out", file)
	if !strings.Contains(errs, "wrote "+file) {
		t.Fatalf("stderr %q", errs)
	}
	scanned := scanQR(t, out)
	if !strings.HasPrefix(scanned, "PBX-ACTIVATE:") || strings.Contains(scanned, strings.TrimSpace(key)) || len(scanned) > 420 {
		t.Fatalf("the code holds %d characters: %q; want a short form without the key", len(scanned), scanned)
	}
	for _, line := range strings.Split(out, "\n") {
		if n := len([]rune(strings.TrimSuffix(strings.TrimPrefix(line, "\x1b[30;107m"), "\x1b[0m"))); n > 80 {
			t.Fatalf("a line of %d columns on an 80-column terminal: %q", n, line)
		}
	}

	r := p.carry(t, scanned+"\n", "offline-activate", "qr.example")
	if r.code != 0 {
		t.Fatalf("offline-activate with the scanned code: exit %d: %s", r.code, r.stderr)
	}
	install(t, a, r.stdout, 0, "")
	if s := a.status(); s.State != "active" || s.Mode != "air-gapped" {
		t.Fatalf("after activation by QR code: state %s, mode %q", s.State, s.Mode)
	}
	request, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if again := p.carry(t, string(request), "offline-activate", "qr.example"); again.code != 0 || again.stdout != r.stdout {
		t.Fatalf("the request file of the same request: exit %d, same file %v: %s", again.code, again.stdout == r.stdout, again.stderr)
	}

	// A renewal by the usage report's code.
	horizon := *a.status().Offline.Horizon
	p.admin("clock", "advance", "1d")
	out, _ = a.cliOnTerminal("", "report", "--offline")
	scanned = scanQR(t, out)
	if !strings.HasPrefix(scanned, "PBX-REPORT:") {
		t.Fatalf("the report's code holds %q", scanned)
	}
	r = p.carry(t, scanned, "offline-renew", "qr.example")
	if r.code != 0 {
		t.Fatalf("offline-renew with the scanned code: exit %d: %s", r.code, r.stderr)
	}
	install(t, a, r.stdout, 0, "")
	if s := a.status(); s.State != "active" || s.Offline.Outstanding != "" || !s.Offline.Horizon.After(horizon) {
		t.Fatalf("after renewal by QR code: state %s, offline %+v", s.State, s.Offline)
	}
}
