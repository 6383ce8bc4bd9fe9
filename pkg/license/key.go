package license

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

// KeyVersion is the PBX key format this build reads and writes.
const KeyVersion = 1

// PBX names the PBX a document is about.
type PBX struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Model Model  `json:"model"`
}

// Key is the PBX key a partner copies from the portal and pastes into the
// PBX. It is a bearer credential for activation: never log or print it.
type Key struct {
	Version   int       `json:"v"`
	ID        string    `json:"jti"` // unique per issued key
	PBX       PBX       `json:"pbx"`
	Term      Term      `json:"term"`
	Counts    Counts    `json:"profiles"`
	Portal    string    `json:"portal,omitempty"` // URL of the issuing portal, informative
	IssuedAt  time.Time `json:"iat"`
	ExpiresAt time.Time `json:"exp"` // activation must happen before this

	// SignerKeyID is the portal key that signed it; set by ParseKey, not signed.
	SignerKeyID string `json:"-"`
}

// KeyCheck is what a key is checked against besides its signature.
type KeyCheck struct {
	Now   time.Time // the licence clock; a key is expired at or after ExpiresAt
	Model Model     // the appliance's model; empty skips the check
}

// NormalizeKey cleans a pasted key: it drops all white space (a key wrapped
// over lines by a mail client or terminal) and one pair of surrounding
// quotes, straight or typographic, as editors and chat tools add them.
func NormalizeKey(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || r == '\u200b' || r == '\ufeff' { // zero-width space, BOM
			return -1
		}
		return r
	}, s)
	for _, q := range [][2]string{{`"`, `"`}, {`'`, `'`}, {"`", "`"}, {"“", "”"}, {"‘", "’"}, {"«", "»"}} {
		if len(s) >= len(q[0])+len(q[1]) && strings.HasPrefix(s, q[0]) && strings.HasSuffix(s, q[1]) {
			return s[len(q[0]) : len(s)-len(q[1])]
		}
	}
	return s
}

// keyFix is the advice for a key that did not survive copying.
const keyFix = "copy the whole key again from the portal (Copy PBX key)"

// ParseKey cleans, decodes and verifies a pasted PBX key. Every refusal is an
// *Error wrapping one sentinel: ErrNotAKey, ErrTruncated, ErrCorrupted,
// ErrAlgorithm, ErrUnknownSigner, ErrBadSignature, ErrInvalid, ErrExpired or
// ErrWrongModel. An expired key or one for another model has a valid
// signature: it is returned beside the error so that callers can show it.
func ParseKey(raw string, kr *Keyring, check KeyCheck) (*Key, error) {
	s := NormalizeKey(raw)
	if s == "" {
		return nil, &Error{Doc: "input", Kind: ErrNotAKey, Detail: "it is empty", Fix: "paste the PBX key copied from the portal"}
	}
	// Every compact JWS starts with the base64url of `{"`. Anything else is
	// not a truncated or damaged key but some other text altogether.
	if !strings.HasPrefix(s, "eyJ") {
		return nil, &Error{Doc: "input", Kind: ErrNotAKey, Detail: "a PBX key starts with \"eyJ\"",
			Fix: "paste the PBX key copied from the portal"}
	}
	v, err := kr.Verify(s, TypeKey, "PBX key")
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			switch {
			case e.Kind == ErrWrongType:
				e.Doc, e.Kind, e.Fix = "input", ErrNotAKey, "paste the PBX key, not another portal document"
			case e.Fix == "" && (e.Kind == ErrTruncated || e.Kind == ErrCorrupted):
				e.Fix = keyFix
			case e.Kind == ErrBadSignature:
				e.Fix = "it was altered after the portal signed it; " + keyFix
			}
		}
		return nil, err
	}
	k, err := decodeKey(v.Payload)
	if err != nil {
		return nil, err
	}
	k.SignerKeyID = v.KeyID
	if !check.Now.Before(k.ExpiresAt) {
		return k, &Error{Doc: "PBX key", Kind: ErrExpired,
			Detail: fmt.Sprintf("it expired at %s", k.ExpiresAt.UTC().Format(time.RFC3339)),
			Fix:    NewKeyFix(k.PBX)}
	}
	if check.Model != "" && k.PBX.Model != check.Model {
		return k, &Error{Doc: "PBX key", Kind: ErrWrongModel,
			Detail: fmt.Sprintf("it is for a %s, but this appliance is a %s", k.PBX.Model, check.Model),
			Fix:    fmt.Sprintf("create the PBX on the portal as a %s, or set identity.model if detection is wrong", check.Model)}
	}
	return k, nil
}

// NewKeyFix is the advice for a PBX key that no longer activates (expired,
// or replaced by a newer one): the portal issues a new one at any time.
// It names the reference portal's verb, with the PBX's name (or id).
func NewKeyFix(pbx PBX) string {
	ref := pbx.Name
	if ref == "" {
		ref = pbx.ID
	}
	return "issue a new key on the portal (pbx-portal-sim pbx key " + ref + ")"
}

// DecodeKeyUnverified returns what a key claims without checking its
// signature, for `key inspect` to show beside a refusal. Never act on it.
func DecodeKeyUnverified(raw string) (*Key, bool) {
	payload, ok := decodeUnverified(NormalizeKey(raw))
	if !ok {
		return nil, false
	}
	k, err := decodeKey(payload)
	return k, err == nil
}

func decodeKey(payload []byte) (*Key, error) {
	invalid := func(detail string) error {
		return &Error{Doc: "PBX key", Kind: ErrInvalid, Detail: detail}
	}
	var k Key
	if err := strictjson.Unmarshal(payload, &k); err != nil {
		return nil, invalid("its signed content is not a key document: " + err.Error())
	}
	switch {
	case k.Version > KeyVersion:
		return nil, &Error{Doc: "PBX key", Kind: ErrInvalid,
			Detail: fmt.Sprintf("format version %d is newer than this agent reads (%d)", k.Version, KeyVersion),
			Fix:    "upgrade pbx-agent"}
	case k.Version < 1:
		return nil, invalid("it has no format version")
	case k.ID == "":
		return nil, invalid("it has no key id (jti)")
	case k.PBX.ID == "":
		return nil, invalid("it names no PBX")
	case !k.PBX.Model.Valid():
		return nil, invalid(fmt.Sprintf("unknown model %q", k.PBX.Model))
	case !k.Term.Valid():
		return nil, invalid(fmt.Sprintf("unknown term %q", k.Term))
	case k.ExpiresAt.IsZero():
		return nil, invalid("it has no expiry time")
	}
	iat := &k.IssuedAt
	if k.IssuedAt.IsZero() { // optional
		iat = nil
	}
	if err := checkTimes(namedTime{"iat", iat}, namedTime{"exp", &k.ExpiresAt}); err != nil {
		return nil, invalid(err.Error())
	}
	if err := k.Counts.Validate(); err != nil {
		return nil, invalid(err.Error())
	}
	return &k, nil
}
