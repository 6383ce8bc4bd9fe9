package license

import "errors"

// Sentinel errors classify why a signed document was refused. Every error
// returned by the parsers wraps exactly one of them inside an *Error, so
// callers branch with errors.Is and show Error() to people.
var (
	// ErrNotAKey: the input is not a PBX key at all (empty, another kind of
	// text, or a different portal document such as a licence).
	ErrNotAKey = errors.New("not a PBX key")
	// ErrWrongType: a signed document of another type than expected.
	ErrWrongType = errors.New("wrong document type")
	// ErrTruncated: the input stops early, as when a copy missed its end.
	ErrTruncated = errors.New("truncated")
	// ErrCorrupted: the input has the shape of a signed document but cannot be
	// decoded (stray characters, extra parts, undecodable content).
	ErrCorrupted = errors.New("corrupted")
	// ErrAlgorithm: signed with an algorithm other than EdDSA.
	ErrAlgorithm = errors.New("unsupported signature algorithm")
	// ErrUnknownSigner: signed by a portal key that is not in the keyring or
	// has been revoked.
	ErrUnknownSigner = errors.New("signed by an untrusted portal key")
	// ErrBadSignature: the signature does not match the content.
	ErrBadSignature = errors.New("bad signature")
	// ErrExpired: the document's validity has ended.
	ErrExpired = errors.New("expired")
	// ErrWrongModel: a key made for another model of appliance.
	ErrWrongModel = errors.New("wrong model")
	// ErrInvalid: correctly signed, but its content breaks the format's rules
	// (a missing field, an unknown profile, a newer format version).
	ErrInvalid = errors.New("invalid content")
)

// Error is a refused document: what it was, why, and what to do about it.
// It never contains the document itself, which may be a secret.
type Error struct {
	Doc    string // what was parsed: "PBX key", "licence"
	Kind   error  // one of the sentinel errors above
	Detail string // the precise problem
	Fix    string // what the user should do; may be empty
}

func (e *Error) Error() string {
	msg := e.Doc + " " + e.Kind.Error()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Kind }
