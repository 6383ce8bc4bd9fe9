package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
)

// The CLI side of an air-gapped PBX's file exchange: the daemon writes and
// checks every file with its device key; these verbs carry them between
// the daemon and the admin's files.

// offlineRequest has the daemon write the activation request for the key
// read from stdin or keyFile.
func (a *app) offlineRequest(ctx context.Context, keyFile, out string) error {
	cfg, raw, v, err := a.pastedKey(keyFile)
	if err != nil {
		return err
	}
	if _, err := v.parse(raw); err != nil {
		return &codedError{code: exitError, err: fmt.Errorf("%w: %w", apitype.ErrRefusedLocally, err)}
	}
	var f apitype.OfflineFile
	if err := newAPIClient(cfg.Listen.Socket).do(ctx, "POST", "/v1/offline/request",
		apitype.OfflineRequestBody{Key: license.NormalizeKey(raw)}, &f); err != nil {
		return exitFor(err)
	}
	a.showQR(f.Short, requestQRNote)
	if err := a.writeCarried(out, f.File); err != nil {
		return err
	}
	fmt.Fprintln(a.stderr, carryNote("activation request", "the request written before, not answered yet", out, f.Again))
	return nil
}

// showQR draws the short form of a file to carry as a QR code, with note
// under it, when stdout is a terminal; a pipe or a file gets the file
// alone, as ever.
func (a *app) showQR(short, note string) {
	tty, ok := a.stdout.(*os.File)
	if !ok || !isTerminal(tty) || short == "" {
		return
	}
	shown, err := carriedQR(short, note, terminalColumns(tty), a.colour())
	if err != nil {
		fmt.Fprintf(a.stderr, "pbx-agent: no QR code: %v; carry the file\n", err)
		return
	}
	io.WriteString(a.stdout, shown)
}

// carryNote is the one line on stderr after a file to carry was written.
func carryNote(what, again, out string, isAgain bool) string {
	note := "pbx-agent: "
	if out != "" && out != "-" {
		note += "wrote " + out + ": "
	}
	if isAgain {
		note += again + "; "
	}
	return note + "carry the " + what + " to the portal, then install the licence file it answers with: pbx-agent activate --licence-file FILE"
}

// installLicenceFile has the daemon check and install a licence file.
func (a *app) installLicenceFile(ctx context.Context, path string) error {
	cfg, err := a.config()
	if err != nil {
		return err
	}
	text, err := a.readCarried(path, "licence file")
	if err != nil {
		return err
	}
	var st apitype.Status
	if err := newAPIClient(cfg.Listen.Socket).do(ctx, "POST", "/v1/offline/licence", apitype.OfflineFileRequest{File: text}, &st); err != nil {
		return exitFor(err)
	}
	line := fmt.Sprintf("Installed the licence file of PBX %s: %s", pbxName(st.PBX), st.State)
	if o := st.Offline; o != nil && o.Horizon != nil {
		line += "; valid until " + o.Horizon.UTC().Format(time.RFC3339)
	}
	_, err = fmt.Fprintln(a.stdout, line)
	return err
}

// readCarried reads a file the admin carried (or stdin for "-"), bounded.
func (a *app) readCarried(path, what string) (string, error) {
	var r io.Reader = a.stdin
	name := "standard input"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", &codedError{code: exitError, err: fmt.Errorf("reading the %s: %w", what, err)}
		}
		defer f.Close()
		r, name = f, path
	}
	b, err := io.ReadAll(io.LimitReader(r, offline.MaxFileSize+1))
	switch {
	case err != nil:
		return "", &codedError{code: exitError, err: fmt.Errorf("reading the %s from %s: %w", what, name, err)}
	case len(b) > offline.MaxFileSize:
		return "", &codedError{code: exitError, err: fmt.Errorf("%s holds more than %d KiB: that is not a %s", name, offline.MaxFileSize>>10, what)}
	}
	return string(b), nil
}

// writeCarried writes a file to carry to the portal: to stdout, or to
// path (temp file, fsync, rename; 0600, as a request holds the PBX key).
func (a *app) writeCarried(path, text string) error {
	if path == "" || path == "-" {
		_, err := io.WriteString(a.stdout, text)
		return err
	}
	if err := atomicfile.WriteFile(path, []byte(text), 0o600); err != nil {
		return &codedError{code: exitError, err: fmt.Errorf("writing %s: %w", path, err)}
	}
	return nil
}
