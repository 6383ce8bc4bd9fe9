// Package offline is the file exchange of an air-gapped PBX with its
// portal, carried by hand: an activation request and usage reports the
// appliance signs with its device key, and offline licence files the
// portal signs with a key of the agent's keyring. They reuse the signed
// envelope of every other document (compact JWS, EdDSA) under their own
// types, the licence document as it is, and the heartbeat chain
// (protocol.Link): every report links to the last portal document the
// appliance accepted, every licence file echoes that link, and its own
// Digest is the next one. So the portal sees a report replayed, rolled
// back or forked exactly as it sees a heartbeat, and a PBX can move
// between online and offline operation on one chain.
package offline

import (
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Version is the format of the three files this build reads and writes.
const Version = 1

// Document types of the protected "typ" header: a file of one kind is
// never accepted as another, nor as an online request or answer.
const (
	TypeRequest = "pbx-offline-request+jws" // appliance → portal
	TypeLicence = "pbx-offline-licence+jws" // portal → appliance
	TypeReport  = "pbx-offline-report+jws"  // appliance → portal
)

// Names of the files in errors and in their armour.
const (
	docRequest = "offline activation request"
	docLicence = "offline licence file"
	docReport  = "offline usage report"
)

// MaxFileSize bounds a file read from a person: real ones are a few KiB.
const MaxFileSize = 256 << 10

// maxNonceLen bounds a nonce; the agent makes 22 characters.
const maxNonceLen = 128

func invalid(doc, format string, args ...any) error {
	return &license.Error{Doc: doc, Kind: license.ErrInvalid, Detail: fmt.Sprintf(format, args...)}
}

// checkVersion refuses a file without a format version or newer than this
// build reads.
func checkVersion(doc string, v int) error {
	switch {
	case v > Version:
		return &license.Error{Doc: doc, Kind: license.ErrInvalid,
			Detail: fmt.Sprintf("format version %d is newer than this program reads (%d)", v, Version),
			Fix:    "upgrade pbx-agent and the portal tools to a version that reads it"}
	case v < 1:
		return invalid(doc, "it has no format version")
	}
	return nil
}

func checkNonce(doc, nonce string) error {
	if nonce == "" || len(nonce) > maxNonceLen {
		return invalid(doc, "its nonce must have 1 to %d characters", maxNonceLen)
	}
	return nil
}

func checkTime(doc, name string, t time.Time) error {
	if err := license.CheckTime(name, t); err != nil {
		return invalid(doc, "%v", err)
	}
	return nil
}

// short shortens a digest or fingerprint for a sentence: enough to tell
// two apart by eye.
func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}
