package offline

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// The short form of an activation request is what a QR code carries from
// an air-gapped PBX's terminal to a phone: the same request, signed by the
// same device key with the same nonce, that names the PBX key instead of
// carrying it. It names the key by its id and proves the appliance holds
// it with KeyProof, an HMAC keyed by the key's digest over everything else
// the request says (device key, nonce, fingerprint...). The portal, which
// keeps the digest of every key it issued, checks the proof. A photograph
// of the code thus discloses nothing that activates another appliance: a
// plain digest of the key would be as good as the key to whoever saw it,
// a proof bound to this device key and nonce is good for this request only.
//
// The encoding is binary, as a JWS of the same content would not fit an
// 80-column terminal: big-endian fields, strings with a one-byte length,
// then the device's Ed25519 signature, all in unpadded base32 after
// ShortPrefix. Base32's alphabet is within the QR code's alphanumeric
// mode (5.5 bits a character), survives retyping in any case, and is
// what a phone shows as plain text to paste or mail.
//
//	version        1 byte (shortVersion)
//	time           8 bytes, Unix seconds
//	nonce          string
//	key id         string (the key's jti)
//	model          string
//	fingerprint    string
//	serial         string (empty unless identity.serial is set)
//	overrides      1 byte of flags (overrideFlags)
//	agent version  string
//	device key     32 bytes
//	key proof      16 bytes: HMAC-SHA256(KeyDigest(key), keyProofContext ‖ the fields above), cut to 128 bits
//	signature      64 bytes: Ed25519(device key, shortSignContext ‖ the fields above ‖ key proof)

// ShortPrefix begins the short form of an activation request.
const ShortPrefix = "PBX-ACTIVATE:"

const (
	shortVersion = 1
	// Context strings: a signature or proof of this format never passes
	// for one of another.
	shortSignContext = "pbx-agent offline request short form v1\x00"
	keyProofContext  = "pbx-agent offline key proof v1\x00"
	keyProofSize     = 16 // 128 bits: as hard to forge as to guess
)

// overrideFlags are the identity overrides a short form can carry, by bit.
var overrideFlags = []string{"identity.model", "identity.serial"}

var shortEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// KeyDigest is the digest of a PBX key the portal keeps to check the
// proof of a short request: SHA-256 of the key as normalised.
func KeyDigest(key string) []byte {
	sum := sha256.Sum256([]byte(license.NormalizeKey(key)))
	return sum[:]
}

// KeyRef names the PBX key a short request is about instead of carrying
// it, with the proof that the appliance holds it.
type KeyRef struct {
	ID     string // the key's id (jti)
	proof  []byte
	fields []byte // what the proof covers
}

// Proves reports whether the request was made with the key whose digest
// (KeyDigest) the portal kept.
func (k *KeyRef) Proves(digest []byte) bool {
	return hmac.Equal(k.proof, keyProof(digest, k.fields))
}

func keyProof(digest, fields []byte) []byte {
	mac := hmac.New(sha256.New, digest)
	mac.Write([]byte(keyProofContext))
	mac.Write(fields)
	return mac.Sum(nil)[:keyProofSize]
}

// SignShortRequest writes the short form of r, whose key has the id
// keyID, signed by the device key dev. Ed25519 signatures are
// deterministic, so the same request gives the same text every time.
func SignShortRequest(dev *license.Signer, r Request, keyID string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("writing the short form of the activation request: "+format, args...)
	}
	if protocol.DeviceKeyID(r.DeviceKey) != dev.KeyID() {
		return fail("it must carry the public half of the key that signs it")
	}
	if r.Key == "" || keyID == "" {
		return fail("it needs the PBX key and its id")
	}
	var flags byte
	for _, o := range r.Overrides {
		i := slices.Index(overrideFlags, o)
		if i < 0 {
			return fail("unknown identity override %q", o)
		}
		flags |= 1 << i
	}
	var w shortWriter
	w.buf = append(w.buf, shortVersion)
	w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(r.Time.Unix()))
	for _, s := range []string{r.Nonce, keyID, string(r.Model), r.Fingerprint, r.Serial} {
		w.str(s)
	}
	w.buf = append(w.buf, flags)
	w.str(r.AgentVersion)
	w.buf = append(w.buf, r.DeviceKey...)
	if w.err != nil {
		return fail("%v", w.err)
	}
	signed := append(w.buf, keyProof(KeyDigest(r.Key), w.buf)...)
	sig := dev.SignMessage(append([]byte(shortSignContext), signed...))
	return ShortPrefix + shortEncoding.EncodeToString(append(signed, sig...)), nil
}

type shortWriter struct {
	buf []byte
	err error
}

func (w *shortWriter) str(s string) {
	if len(s) > 255 {
		w.err = fmt.Errorf("%q is longer than 255 bytes", s)
		return
	}
	w.buf = append(w.buf, byte(len(s)))
	w.buf = append(w.buf, s...)
}

// IsShortRequest reports whether text, as carried, holds a short request
// rather than a request file.
func IsShortRequest(text string) bool { return findShort(text, ShortPrefix) >= 0 }

// findShort is where prefix begins in text, in any case, or -1; never in
// an armoured file, whose blocks are read as files.
func findShort(text, prefix string) int {
	if strings.Contains(text, "-----BEGIN ") {
		return -1
	}
	for i := 0; i+len(prefix) <= len(text); i++ {
		if strings.EqualFold(text[i:i+len(prefix)], prefix) {
			return i
		}
	}
	return -1
}

// shortText is the short form of the given prefix within text, as a mail
// or a note may hold it: from the prefix, the base32 text on its line and
// on the lines after it, undoing line breaks, indentation, "> " quoting
// and lower case, up to a blank line or a line of other text (words, or
// other characters). ok is false when text holds no such prefix.
func shortText(text, prefix string) (encoded string, ok bool) {
	i := findShort(text, prefix)
	if i < 0 {
		return "", false
	}
	var b strings.Builder
	for n, line := range strings.Split(text[i+len(prefix):], "\n") {
		line = strings.TrimSpace(line)
		for strings.HasPrefix(line, ">") && n > 0 { // quoted in a mail reply
			line = strings.TrimSpace(line[1:])
		}
		words := strings.Fields(line)
		line = strings.ToUpper(strings.Join(words, ""))
		switch {
		case n == 0 && len(words) == 0: // the code starts on the next line
			continue
		case len(words) != 1 || strings.Trim(line, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "":
			if n == 0 { // other text right after the prefix: decoding says what is wrong
				b.WriteString(line)
			}
			return b.String(), true
		}
		b.WriteString(line)
	}
	return b.String(), true
}

// ParseShortRequest verifies a short request with the device key it
// carries and checks its content. The Request has no Key but a KeyRef:
// the portal checks it against the digest of the key it issued. Text
// around it, line breaks, spaces and lower case, as a phone or a mail may
// add, are undone (shortText). Refusals are *license.Error values.
func ParseShortRequest(text string) (*Request, error) {
	const doc = docRequest + " (short form)"
	encoded, ok := shortText(text, ShortPrefix)
	if !ok {
		return nil, &license.Error{Doc: doc, Kind: license.ErrWrongType, Detail: "it holds no " + ShortPrefix + " text"}
	}
	raw, err := shortEncoding.DecodeString(encoded)
	if err != nil {
		return nil, &license.Error{Doc: doc, Kind: license.ErrCorrupted, Detail: fmt.Sprintf("it is not base32 text: %v", err),
			Fix: "scan the QR code again, or carry the request file instead"}
	}
	rd := shortReader{buf: raw}
	version := rd.byte()
	if rd.err == nil && version != shortVersion {
		return nil, &license.Error{Doc: doc, Kind: license.ErrInvalid,
			Detail: fmt.Sprintf("short form version %d is not the one this program reads (%d)", version, shortVersion),
			Fix:    "carry the request file instead, or upgrade the portal tools"}
	}
	r := Request{Version: Version, Time: time.Unix(int64(rd.uint64()), 0).UTC(), Nonce: rd.str()}
	keyID := rd.str()
	r.Model, r.Fingerprint, r.Serial = license.Model(rd.str()), rd.str(), rd.str()
	flags := rd.byte()
	r.AgentVersion = rd.str()
	r.DeviceKey = rd.bytes(ed25519.PublicKeySize)
	fields := raw[:rd.off]
	proof, sig := rd.bytes(keyProofSize), rd.bytes(ed25519.SignatureSize)
	switch {
	case rd.err != nil:
		return nil, &license.Error{Doc: doc, Kind: license.ErrTruncated, Detail: fmt.Sprintf("it stops early (%d bytes)", len(raw)),
			Fix: "scan the whole QR code again, or carry the request file instead"}
	case len(raw) != rd.off:
		return nil, invalid(doc, "%d bytes follow its signature", len(raw)-rd.off)
	case flags>>len(overrideFlags) != 0:
		return nil, invalid(doc, "unknown identity override flags %#x", flags)
	}
	for i, o := range overrideFlags {
		if flags&(1<<i) != 0 {
			r.Overrides = append(r.Overrides, o)
		}
	}
	if !ed25519.Verify(r.DeviceKey, append([]byte(shortSignContext), raw[:len(raw)-ed25519.SignatureSize]...), sig) {
		return nil, &license.Error{Doc: doc, Kind: license.ErrBadSignature,
			Detail: fmt.Sprintf("it is not signed by the device key %q it carries", protocol.DeviceKeyID(r.DeviceKey)),
			Fix:    "it was altered on the way: scan the QR code again, or carry the request file instead"}
	}
	if keyID == "" {
		return nil, invalid(doc, "it names no PBX key")
	}
	r.KeyRef = &KeyRef{ID: keyID, proof: bytes.Clone(proof), fields: bytes.Clone(fields)}
	if err := r.validate(doc); err != nil {
		return nil, err
	}
	return &r, nil
}

// shortReader reads the fields of a short form; past the end, err is set
// and every read returns a zero value.
type shortReader struct {
	buf []byte
	off int
	err error
	bad string // a field read whole but invalid, said as it is
}

var errShortEnd = errors.New("the short form stops early")

func (rd *shortReader) bytes(n int) []byte {
	if rd.err != nil || len(rd.buf)-rd.off < n {
		rd.err = errShortEnd
		return nil
	}
	b := rd.buf[rd.off : rd.off+n]
	rd.off += n
	return b
}

func (rd *shortReader) byte() byte {
	if b := rd.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (rd *shortReader) uint64() uint64 {
	if b := rd.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (rd *shortReader) str() string { return string(rd.bytes(int(rd.byte()))) }
