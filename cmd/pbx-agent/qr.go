package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	qr "github.com/piglig/go-qr"
	"golang.org/x/sys/unix"
)

// The activation request and the usage report are shown as QR codes on
// a terminal, for a phone to carry to the portal: their short forms (the
// request's names the PBX key instead of holding it). go-qr gives the module matrix with no image
// dependency; the code is drawn with half blocks, two module rows a
// line, so a version-13 code with its quiet zone is 77 columns by 39
// lines.

// qrQuietZone is the light margin the QR standard asks around a code,
// in modules; scanners find the code by it.
const qrQuietZone = 4

// qrMaxVersion is the largest code drawn: version 13 is 69 modules, 77
// columns with the quiet zone, within an 80-column terminal.
const qrMaxVersion = 13

// ANSI black on bright white around each line of a code drawn in colour.
const (
	qrInk   = "\x1b[30;107m"
	qrReset = "\x1b[0m"
)

// errQRTooLong: the text does not fit a code narrow enough for a terminal.
var errQRTooLong = errors.New("too long for a QR code within 80 columns")

// encodeQR encodes text at error correction M, or L when M does not fit
// qrMaxVersion; M survives a screen's glare and a phone's blur better.
func encodeQR(text string) (*qr.QrCode, error) {
	segs, err := qr.MakeSegments(text)
	if err != nil {
		return nil, fmt.Errorf("encoding the QR code: %w", err)
	}
	for _, ecc := range []qr.Ecc{qr.Medium, qr.Low} {
		if code, err := qr.EncodeSegments(segs, ecc, 1, qrMaxVersion, -1, true); err == nil {
			return code, nil
		}
	}
	return nil, fmt.Errorf("%d characters: %w", len(text), errQRTooLong)
}

// qrWidth is the columns a code drawn by renderQR takes.
func qrWidth(code *qr.QrCode) int { return code.Size() + 2*qrQuietZone }

// renderQR draws code with half blocks: each line holds two rows of
// modules, the upper in "▀", the lower in "▄", both in "█". In colour,
// dark modules are drawn black on white, whatever the terminal's theme.
// Without colour, the light modules and the quiet zone are drawn instead,
// in the terminal's (light) text colour on its (dark) background: the
// usual terminal, and most phone cameras read a code inverted too.
func renderQR(code *qr.QrCode, colour bool) string {
	n := code.Size()
	ink := func(x, y int) bool {
		dark := x >= 0 && y >= 0 && x < n && y < n && code.Module(x, y)
		return dark == colour
	}
	var b strings.Builder
	for y := -qrQuietZone; y < n+qrQuietZone; y += 2 {
		if colour {
			b.WriteString(qrInk)
		}
		for x := -qrQuietZone; x < n+qrQuietZone; x++ {
			upper, lower := ink(x, y), y+1 < n+qrQuietZone && ink(x, y+1)
			switch {
			case upper && lower:
				b.WriteRune('█')
			case upper:
				b.WriteRune('▀')
			case lower:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		if colour {
			b.WriteString(qrReset)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// terminalColumns is the width of the terminal f, or 80 when it does not
// say (a serial console).
func terminalColumns(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 80
	}
	return int(ws.Col)
}

// Notes under a code, within 80 columns.
const (
	requestQRNote = "Scan the code to carry the request to the portal: it names the PBX key and\n" +
		"proves this appliance holds it, without the key (safe to photograph).\n" +
		"Or carry the request file.\n"
	reportQRNote = "Scan the code to carry the usage report to the portal, or carry the\n" +
		"report file.\n"
)

// carriedQR is what a terminal shows for the short form of a file to
// carry: the code and the note under it, or, when the code cannot be
// drawn here, why, so the admin carries the file instead.
func carriedQR(short, note string, columns int, colour bool) (string, error) {
	code, err := encodeQR(short)
	if err != nil {
		return "", err
	}
	if w := qrWidth(code); w > columns {
		return "", fmt.Errorf("the QR code needs %d columns and this terminal has %d: widen it to show the code", w, columns)
	}
	return renderQR(code, colour) + note, nil
}
