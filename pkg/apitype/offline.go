package apitype

import "time"

// Modes of operation a status may name.
const (
	// ModeAirGapped: the licence held came in an offline licence file
	// carried by hand, and no later portal answer superseded it. Absent
	// from the status otherwise.
	ModeAirGapped = "air-gapped"
)

// OfflineStatus is where an air-gapped PBX stands in its file exchange
// with the portal: present once a licence file was installed or a
// request written.
type OfflineStatus struct {
	// Horizon is when the licence file installed stops holding: without a
	// newer file by then, the PBX lapses. NextDue is when to bring the next
	// one, ahead of the horizon. LastFile is the portal's time in the file
	// installed.
	Horizon  *time.Time `json:"horizon,omitempty"`
	NextDue  *time.Time `json:"next_due,omitempty"`
	LastFile *time.Time `json:"last_file,omitempty"`
	// Outstanding names the file written and not yet answered by an
	// installed licence file: "request" or "report".
	Outstanding string `json:"outstanding,omitempty"`
	// Carry says what to carry to the portal now, and how to make it.
	Carry string `json:"carry"`
}

// OfflineFile is the answer of the endpoints that write a file to carry to
// the portal: the activation request and the usage report, armoured.
type OfflineFile struct {
	File string `json:"file"`
	// Again: the file was written before and not yet answered; this is the
	// same one, so the portal answers it with the same licence file.
	Again bool `json:"again,omitempty"`
	// Short is the same file in its short form, for a QR code; an
	// activation request's names the PBX key by its id and a proof
	// instead of carrying it.
	Short string `json:"short,omitempty"`
}

// OfflineFileRequest is the body of POST /v1/offline/licence.
type OfflineFileRequest struct {
	File string `json:"file"`
}

// OfflineRequestBody is the body of POST /v1/offline/request.
type OfflineRequestBody struct {
	Key string `json:"key"`
}

// CodeInvalidFile: an offline licence file refused (not signed by the
// portal, for another appliance, older than the one installed, not
// answering this appliance's request or report). 400; CLI exit 2.
const CodeInvalidFile = "invalid_file"
