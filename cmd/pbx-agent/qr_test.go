package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"image"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	qr "github.com/piglig/go-qr"
	"golang.org/x/sys/unix"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

func testDevice(t *testing.T) *license.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte("qr test device"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	dev, err := license.NewSigner(protocol.DeviceKeyID(priv.Public().(ed25519.PublicKey)), priv)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

// shortReport is the short form of a usage report with every profile
// counted: the longest a report gets.
func shortReport(t *testing.T) string {
	t.Helper()
	all := license.Counts{}
	for _, p := range license.Profiles() {
		all[p.ID] = 1000 + len(all)
	}
	s, err := offline.SignShortReport(testDevice(t), offline.Report{
		Time: time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC), Nonce: "AAAAAAAAAAAAAAAAAAAAAA", PBXID: "pbx-0123456789ab",
		Revision: 12, Digest: strings.Repeat("d", 22), Link: strings.Repeat("l", 22), Seq: 40, State: "active",
		Usage: all, Peak: all, Overuse: all, AgentVersion: "1.4.2-rc.1+g0123abcd",
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// shortRequest is a short form as long as the daemon makes them.
func shortRequest(t *testing.T) string {
	t.Helper()
	dev := testDevice(t)
	pub := dev.Public()
	s, err := offline.SignShortRequest(dev, offline.Request{
		Time: time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC), Nonce: "AAAAAAAAAAAAAAAAAAAAAA", Key: "eyJ.the.key",
		DeviceKey: pub, Fingerprint: strings.Repeat("f", 43), Model: license.ModelHW, Serial: "SN-0123456789",
		Overrides: []string{"identity.serial"}, AgentVersion: "1.4.2-rc.1+g0123abcd",
	}, "key-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// decodeDrawn reads a code drawn by renderQR back into an image, a
// module a 4-pixel square, and decodes it.
func decodeDrawn(t *testing.T, drawn string) string {
	t.Helper()
	colour := strings.Contains(drawn, qrInk)
	var rows [][]bool // dark modules
	for _, line := range strings.Split(strings.TrimRight(drawn, "\n"), "\n") {
		line = strings.TrimSuffix(strings.TrimPrefix(line, qrInk), qrReset)
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
		t.Fatalf("decoding the drawn code: %v\n%s", err, drawn)
	}
	return text
}

func TestRenderQRDecodes(t *testing.T) {
	for name, short := range map[string]string{"request": shortRequest(t), "report": shortReport(t)} {
		t.Run(name, func(t *testing.T) { testRenderQRDecodes(t, short) })
	}
}

func testRenderQRDecodes(t *testing.T, short string) {
	code, err := encodeQR(short)
	if err != nil {
		t.Fatal(err)
	}
	if v := (code.Size() - 17) / 4; v > qrMaxVersion {
		t.Fatalf("version %d", v)
	}
	t.Logf("%d characters: version %d, %d columns", len(short), (code.Size()-17)/4, qrWidth(code))
	for _, colour := range []bool{true, false} {
		drawn := renderQR(code, colour)
		for i, line := range strings.Split(strings.TrimRight(drawn, "\n"), "\n") {
			plain := strings.TrimSuffix(strings.TrimPrefix(line, qrInk), qrReset)
			if n := utf8.RuneCountInString(plain); n > 80 || n != qrWidth(code) {
				t.Fatalf("colour %v: line %d is %d columns, want %d, at most 80", colour, i, n, qrWidth(code))
			}
		}
		if got := decodeDrawn(t, drawn); got != short {
			t.Errorf("colour %v: the code reads\n%q\nwant\n%q", colour, got, short)
		}
	}
}

func TestEncodeQRTooLong(t *testing.T) {
	// A full request file, key included, is what the short form avoids.
	_, err := encodeQR(offline.ShortPrefix + strings.Repeat("A", 700))
	if err == nil || !strings.Contains(err.Error(), "too long for a QR code within 80 columns") {
		t.Fatalf("err = %v", err)
	}
}

// TestActivateOfflineShowsQROnTerminal: on a terminal, the request (and
// the report) is shown as a QR code of its short form, then as the file;
// to a pipe or a file, the file alone, byte for byte.
func TestActivateOfflineShowsQROnTerminal(t *testing.T) {
	f := newFixture(t)
	fb, sock := daemon(t)
	valid := f.key(t, nil)
	const request = "-----BEGIN PBX OFFLINE ACTIVATION REQUEST-----\nabc\n-----END PBX OFFLINE ACTIVATION REQUEST-----\n"
	short := shortRequest(t)
	fb.SetOfflineFile(apitype.OfflineFile{File: request, Short: short}, nil)
	config := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(config, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", config, "--socket", sock, "activate", "--offline"}

	onTerminal := func(t *testing.T, columns uint16, args ...string) (stdout, stderr string) {
		t.Helper()
		ptmx, tty := openPTYPair(t)
		if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: columns, Row: 50}); err != nil {
			t.Fatal(err)
		}
		read := make(chan string, 1)
		go func() { // the terminal holds a few KiB: read while the CLI writes
			var b bytes.Buffer
			io.Copy(&b, ptmx) // ends with EIO once the terminal side is closed
			read <- b.String()
		}()
		var errb bytes.Buffer
		if code := execute(context.Background(), args, strings.NewReader(valid), tty, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		tty.Close()
		return strings.ReplaceAll(<-read, "\r\n", "\n"), errb.String()
	}

	t.Run("terminal", func(t *testing.T) {
		out, _ := onTerminal(t, 80, args...)
		drawn, rest, ok := strings.Cut(out, "Scan the code")
		if !ok || !strings.HasSuffix(rest, request) || !strings.Contains(rest, "without the key") {
			t.Fatalf("terminal output:\n%s", out)
		}
		for _, line := range strings.Split(rest, "\n") {
			if utf8.RuneCountInString(line) > 80 {
				t.Errorf("a line of %d columns on an 80-column terminal: %q", utf8.RuneCountInString(line), line)
			}
		}
		if got := decodeDrawn(t, drawn); got != short {
			t.Errorf("the code on the terminal reads %q, want %q", got, short)
		}
	})
	t.Run("narrow terminal", func(t *testing.T) {
		out, errs := onTerminal(t, 60, args...)
		if out != request || !strings.Contains(errs, "no QR code: the QR code needs 73 columns and this terminal has 60") {
			t.Fatalf("stdout %q, stderr %q", out, errs)
		}
	})
	t.Run("pipe", func(t *testing.T) {
		r := run(t, valid, "--socket", sock, "activate", "--offline")
		wantResult(t, r, 0, request, "carry the activation request")
	})
	t.Run("report", func(t *testing.T) {
		const report = "-----BEGIN PBX OFFLINE USAGE REPORT-----\nabc\n-----END PBX OFFLINE USAGE REPORT-----\n"
		short := shortReport(t)
		fb.SetOfflineFile(apitype.OfflineFile{File: report, Short: short}, nil)
		out, _ := onTerminal(t, 80, "--config", config, "--socket", sock, "report", "--offline")
		drawn, rest, ok := strings.Cut(out, "Scan the code to carry the usage report")
		if !ok || !strings.HasSuffix(rest, report) {
			t.Fatalf("terminal output:\n%s", out)
		}
		if got := decodeDrawn(t, drawn); got != short {
			t.Errorf("the code on the terminal reads %q, want %q", got, short)
		}
		r := run(t, "", "--socket", sock, "report", "--offline")
		wantResult(t, r, 0, report, "carry the usage report")
	})
}
