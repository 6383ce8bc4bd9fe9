package license

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

// Document types, carried in the protected "typ" header so that a document
// of one kind can never be accepted as another.
const (
	TypeKey     = "pbx-key+jws"
	TypeLicense = "pbx-license+jws"
)

// allowedAlgorithms pins the JWS algorithm: anything but EdDSA is refused
// before any signature check.
var allowedAlgorithms = []jose.SignatureAlgorithm{jose.EdDSA}

// ed25519SignatureChars is the length of a base64url Ed25519 signature.
var ed25519SignatureChars = base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize)

// Signer signs portal documents. The simulator and tests use it; the agent
// only verifies.
type Signer struct {
	kid  string
	priv ed25519.PrivateKey
}

// NewSigner returns a signer for priv under key id kid.
func NewSigner(kid string, priv ed25519.PrivateKey) (*Signer, error) {
	if !ValidKeyID(kid) {
		return nil, fmt.Errorf("signer: invalid key id %q", kid)
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("signer: not an Ed25519 private key")
	}
	return &Signer{kid: kid, priv: priv}, nil
}

// KeyID returns the id verifiers look the public key up by.
func (s *Signer) KeyID() string { return s.kid }

// Public returns the public key to put in a keyring.
func (s *Signer) Public() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// SignMessage signs msg with Ed25519 as it is, without an envelope, for a
// format too small for a JWS (a QR code). The format's message must begin
// with a context string of its own, so a signature never passes for one
// of another format.
func (s *Signer) SignMessage(msg []byte) []byte { return ed25519.Sign(s.priv, msg) }

// Sign marshals claims to JSON and signs it as a compact JWS of type typ.
func (s *Signer) Sign(typ string, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("signing %s: %w", typ, err)
	}
	return s.SignRaw(typ, payload)
}

// SignRaw signs payload as it is, JSON or not, as a compact JWS of type
// typ: for the binary bodies of the compact heartbeat.
func (s *Signer) SignRaw(typ string, payload []byte) (string, error) {
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.EdDSA,
		Key:       jose.JSONWebKey{Key: s.priv, KeyID: s.kid},
	}, opts)
	if err != nil {
		return "", fmt.Errorf("signing %s: %w", typ, err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing %s: %w", typ, err)
	}
	return obj.CompactSerialize()
}

// Verified is the content of a document whose signature held.
type Verified struct {
	Payload []byte // the signed JSON
	KeyID   string // the portal key that signed it
}

// Verify checks a compact JWS of type typ against the keyring and returns its
// signed payload. doc names the document in errors ("licence", "command").
// The input is taken as is: pasted text is cleaned by NormalizeKey first.
//
// The checks run in an order that gives the most precise error: shape,
// algorithm, type, signer, signature. go-jose then parses with the algorithm
// list pinned and verifies, so the precise checks are never the only guard.
func (k *Keyring) Verify(compact, typ, doc string) (Verified, error) {
	v, err := k.VerifyRaw(compact, typ, doc)
	if err != nil {
		return Verified{}, err
	}
	// Every signed payload is JSON that every reader must read alike: no
	// duplicate or case-variant member names at any depth. The decoders
	// check again against their own field names.
	if err := strictjson.Check(v.Payload, nil); err != nil {
		return Verified{}, &Error{Doc: doc, Kind: ErrInvalid, Detail: "its signed content is not strict JSON: " + err.Error()}
	}
	return v, nil
}

// VerifyRaw is Verify for a document whose payload is not JSON (the
// binary bodies of the compact heartbeat): every check of the envelope,
// none of the content, which its own decoder reads strictly.
func (k *Keyring) VerifyRaw(compact, typ, doc string) (Verified, error) {
	hdr, err := inspectCompact(compact, doc)
	if err != nil {
		return Verified{}, err
	}
	if hdr.Type != typ {
		return Verified{}, wrongType(doc, hdr.Type)
	}
	if hdr.KeyID == "" {
		return Verified{}, &Error{Doc: doc, Kind: ErrCorrupted, Detail: `the header names no portal key ("kid")`}
	}
	pub, why := k.lookup(hdr.KeyID)
	if pub == nil {
		return Verified{}, &Error{Doc: doc, Kind: ErrUnknownSigner, Detail: why,
			Fix: "it comes from another portal, or this PBX's portal keyring is out of date"}
	}
	obj, err := jose.ParseSignedCompact(compact, allowedAlgorithms)
	if err != nil {
		return Verified{}, &Error{Doc: doc, Kind: ErrCorrupted, Detail: err.Error()}
	}
	payload, err := obj.Verify(pub)
	if err != nil {
		return Verified{}, &Error{Doc: doc, Kind: ErrBadSignature,
			Detail: "the signature does not match the content", Fix: "it was altered after the portal signed it"}
	}
	return Verified{Payload: payload, KeyID: hdr.KeyID}, nil
}

// header is the part of the protected header the agent reads.
type header struct {
	Algorithm string `json:"alg"`
	KeyID     string `json:"kid"`
	Type      string `json:"typ"`
}

// inspectCompact checks the shape of a compact JWS and decodes its header,
// telling a truncated input from a corrupted one. It verifies nothing.
func inspectCompact(s, doc string) (header, error) {
	fail := func(kind error, detail string) (header, error) {
		return header{}, &Error{Doc: doc, Kind: kind, Detail: detail}
	}
	if s == "" {
		return fail(ErrTruncated, "it is empty")
	}
	if strings.HasSuffix(s, "…") || strings.HasSuffix(s, "...") {
		return fail(ErrTruncated, "it ends with an ellipsis, as in a shortened display")
	}
	for i, r := range s {
		if !isBase64URL(r) && r != '.' {
			return fail(ErrCorrupted, fmt.Sprintf("character %d (%q) cannot appear in it", i+1, r))
		}
	}
	parts := strings.Split(s, ".")
	switch {
	case len(parts) == 1:
		return fail(ErrTruncated, "it stops inside its header")
	case len(parts) == 2:
		return fail(ErrTruncated, "it stops inside its content, before the signature")
	case len(parts) > 3:
		return fail(ErrCorrupted, fmt.Sprintf("it has %d dot-separated parts, not 3", len(parts)))
	}
	rawHeader, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return fail(ErrCorrupted, "its header is not valid base64url")
	}
	// go-jose reads the header again, matching names exactly and refusing
	// duplicates: a "Typ" beside "typ" would make the two readings differ.
	var hdr header
	if err := strictjson.Unmarshal(rawHeader, &hdr); err != nil {
		var me *strictjson.MemberError
		if errors.As(err, &me) {
			return fail(ErrCorrupted, "its header is ambiguous: "+me.Error())
		}
		return fail(ErrCorrupted, "its header is not valid JSON")
	}
	if jose.SignatureAlgorithm(hdr.Algorithm) != jose.EdDSA {
		return fail(ErrAlgorithm, fmt.Sprintf("it is signed with %q; only EdDSA is accepted", hdr.Algorithm))
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(parts[1]); err != nil {
		return fail(ErrCorrupted, "its content is not valid base64url")
	}
	switch sig := parts[2]; {
	case len(sig) < ed25519SignatureChars:
		return fail(ErrTruncated, fmt.Sprintf("its signature has %d of %d characters", len(sig), ed25519SignatureChars))
	case len(sig) > ed25519SignatureChars:
		return fail(ErrCorrupted, fmt.Sprintf("its signature has %d characters, not %d", len(sig), ed25519SignatureChars))
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(parts[2]); err != nil {
		return fail(ErrCorrupted, "its signature is not valid base64url")
	}
	return hdr, nil
}

func wrongType(doc, got string) error {
	if got == "" {
		got = "an unnamed type"
	}
	if name, ok := typeNames[got]; ok {
		got = "a " + name
	}
	return &Error{Doc: doc, Kind: ErrWrongType, Detail: "it is " + got}
}

// typeNames gives the document types people may paste by mistake.
var typeNames = map[string]string{
	TypeKey:     "PBX key",
	TypeLicense: "licence document",
}

func isBase64URL(r rune) bool {
	return 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_'
}

// decodeUnverified returns the payload of a compact JWS without checking its
// signature. Only for showing what an untrusted document claims.
func decodeUnverified(s string) ([]byte, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	return payload, err == nil
}

// PeekHeader returns the key id and type of a compact JWS without verifying
// anything, so a receiver can pick the key to verify with. Never trust them
// before Verify.
func PeekHeader(compact string) (kid, typ string, err error) {
	hdr, err := inspectCompact(compact, "document")
	return hdr.KeyID, hdr.Type, err
}
