package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

// The compact heartbeat says what an unchanged heartbeat must say in as few
// bytes as the protocol allows, and its "same" answer confirms it. Both
// are compact JWS like every other document, signed the same way; only the
// payload is binary, because 128-bit values written as base64url inside
// JSON that is itself base64url cost twice their size.
//
// A compact heartbeat's payload is, in order:
//
//	uvarint   ts: the licence clock at signing, Unix seconds
//	16 bytes  nonce
//	uvarint   revision of the licence held
//	16 bytes  digest of the licence held
//	uvarint   seq: answers accepted so far
//	16 bytes  link: digest of the last answer accepted (only when seq > 0)
//	JSON      optional: a Report object, what changed since the last
//	          heartbeat the portal acknowledged
//
// Every integer is in its shortest encoding, so one heartbeat has exactly
// one payload. The PBX is the one the portal bound to the signing device
// key; the agent's version is in the Report when it changed, not in a
// User-Agent header.
//
// A "same" answer's payload is:
//
//	uvarint   time: the portal's clock at signing, Unix seconds
//	16 bytes  echo: the first 128 bits of the SHA-256 of the request's
//	          compact form, exactly as received
//
// It states that everything the request said is current: the licence held
// is the PBX's current licence (revision and digest), the PBX stands
// active, the chain continues from the request's link and sequence, and
// the portal has nothing else for the appliance (no licence, command or
// acknowledgement, the heartbeat interval last stated). The echo binds it
// to one request, and so to its nonce, its link and its device key: a
// "same" answer replayed, or made for another appliance or PBX, echoes
// another request. Anything else is answered with a full answer
// (TypeAnswer), checked as ever.
const (
	TypeCompactHeartbeat = "pbx-hb2+jws"  // appliance → portal
	TypeSame             = "pbx-same+jws" // portal → appliance: all as the request says
)

// nonceBytes is the size of a nonce in a compact heartbeat: 128 bits.
const nonceBytes = 16

// CompactHeartbeat is a compact heartbeat request.
type CompactHeartbeat struct {
	Request // Time in whole seconds; Nonce the base64url of 16 bytes
	Held    Held
	Link    Link
	Report  Report
}

// Report is what a compact heartbeat carries beyond the fixed part: what
// changed since the last heartbeat the portal acknowledged with an ok
// answer. An absent member is unchanged; so the first heartbeat after a
// start, which knows of no acknowledgement, carries all of it.
type Report struct {
	Fetch        bool            `json:"f,omitempty"` // send the current licence
	State        string          `json:"s,omitempty"` // the agent's licence state
	Usage        *license.Counts `json:"u,omitempty"` // users per profile; {} for none
	Overuse      *license.Counts `json:"o,omitempty"` // users beyond the licences; {} for none
	AgentVersion string          `json:"v,omitempty"`
	// Results are the outcomes of commands not yet acknowledged: sent
	// until they are, as in a full heartbeat.
	Results []CommandResult `json:"x,omitempty"`
}

func (r Report) empty() bool {
	return !r.Fetch && r.State == "" && r.Usage == nil && r.Overuse == nil && r.AgentVersion == "" && len(r.Results) == 0
}

// MarshalBinary encodes the payload of a compact heartbeat. The nonce and
// digests must be the base64url of 16 bytes and the time whole seconds
// after 1970.
func (h CompactHeartbeat) MarshalBinary() ([]byte, error) {
	var b []byte
	if h.Time.Unix() <= 0 || h.Time.Nanosecond() != 0 {
		return nil, fmt.Errorf("compact heartbeat: time %v: want whole seconds after 1970", h.Time)
	}
	b = binary.AppendUvarint(b, uint64(h.Time.Unix()))
	var err error
	if b, err = append128(b, "nonce", h.Nonce); err != nil {
		return nil, err
	}
	if h.Held.Revision < 0 {
		return nil, fmt.Errorf("compact heartbeat: negative revision %d", h.Held.Revision)
	}
	b = binary.AppendUvarint(b, uint64(h.Held.Revision))
	if b, err = append128(b, "digest", h.Held.Digest); err != nil {
		return nil, err
	}
	b = binary.AppendUvarint(b, h.Link.Seq)
	switch {
	case h.Link.Seq > 0:
		if b, err = append128(b, "link", h.Link.Digest); err != nil {
			return nil, err
		}
	case h.Link.Digest != "":
		return nil, fmt.Errorf("compact heartbeat: link %q with sequence 0", h.Link.Digest)
	}
	if h.Report.empty() {
		return b, nil
	}
	tail, err := json.Marshal(h.Report)
	if err != nil {
		return nil, fmt.Errorf("compact heartbeat: %w", err)
	}
	return append(b, tail...), nil
}

// ParseCompactHeartbeat decodes the payload of a compact heartbeat
// strictly: shortest integers, 128-bit values, a time in range, a link
// exactly when the sequence is not 0, and a Report object or nothing after.
func ParseCompactHeartbeat(payload []byte) (CompactHeartbeat, error) {
	var h CompactHeartbeat
	r := reader{b: payload, doc: "compact heartbeat"}
	secs := r.uvarint("ts")
	h.Nonce = r.bytes128("nonce")
	rev := r.uvarint("revision")
	h.Held.Digest = r.bytes128("digest")
	h.Link.Seq = r.uvarint("seq")
	if h.Link.Seq > 0 {
		h.Link.Digest = r.bytes128("link")
	}
	if r.err != nil {
		return CompactHeartbeat{}, r.err
	}
	var err error
	if h.Time, err = unixSeconds("ts", secs); err != nil {
		return CompactHeartbeat{}, fmt.Errorf("compact heartbeat: %w", err)
	}
	if rev > math.MaxInt64 {
		return CompactHeartbeat{}, fmt.Errorf("compact heartbeat: revision %d out of range", rev)
	}
	h.Held.Revision = int64(rev)
	if tail := r.b; len(tail) > 0 {
		if tail[0] != '{' {
			return CompactHeartbeat{}, fmt.Errorf("compact heartbeat: %d bytes after the fixed part that are not a JSON object", len(tail))
		}
		if err := strictjson.Unmarshal(tail, &h.Report); err != nil {
			return CompactHeartbeat{}, fmt.Errorf("compact heartbeat: its report: %w", err)
		}
		if len(h.Report.Results) > MaxResults {
			return CompactHeartbeat{}, fmt.Errorf("compact heartbeat: %d results, more than %d", len(h.Report.Results), MaxResults)
		}
	}
	return h, nil
}

// VerifyCompactHeartbeat checks a compact heartbeat signed by device and
// decodes it. Like VerifyRequest, it judges neither freshness nor nonces.
func VerifyCompactHeartbeat(compact string, device ed25519.PublicKey) (CompactHeartbeat, error) {
	kr, err := license.NewKeyring(map[string]ed25519.PublicKey{DeviceKeyID(device): device})
	if err != nil {
		return CompactHeartbeat{}, err
	}
	v, err := kr.VerifyRaw(compact, TypeCompactHeartbeat, "request")
	if err != nil {
		return CompactHeartbeat{}, err
	}
	h, err := ParseCompactHeartbeat(v.Payload)
	if err != nil {
		return CompactHeartbeat{}, &license.Error{Doc: "request", Kind: license.ErrInvalid, Detail: err.Error()}
	}
	return h, nil
}

// Echo names a request on the wire for the "same" answer to it: the
// first 128 bits of the SHA-256 of its compact form.
func Echo(request string) [DigestBytes]byte {
	sum := sha256.Sum256([]byte(request))
	return [DigestBytes]byte(sum[:DigestBytes])
}

// SignSame signs the "same" answer to request, the compact heartbeat as
// received, at the portal's time now, to the millisecond: the agent's
// licence clock takes it, and whole seconds would set that clock back by
// up to a second at every unchanged heartbeat.
func SignSame(s *license.Signer, now time.Time, request string) (string, error) {
	if now.Unix() <= 0 {
		return "", fmt.Errorf("same answer: time %v before 1970", now)
	}
	echo := Echo(request)
	b := binary.AppendUvarint(nil, uint64(now.UnixMilli()))
	return s.SignRaw(TypeSame, append(b, echo[:]...))
}

// ParseSame decodes the payload of a "same" answer strictly.
func ParseSame(payload []byte) (t time.Time, echo [DigestBytes]byte, err error) {
	r := reader{b: payload, doc: "same answer"}
	ms := r.uvarint("time")
	raw := r.raw128("echo")
	switch {
	case r.err != nil:
		return time.Time{}, echo, r.err
	case len(r.b) > 0:
		return time.Time{}, echo, fmt.Errorf("same answer: %d bytes after the echo", len(r.b))
	}
	if t, err = unixMillis("time", ms); err != nil {
		return time.Time{}, echo, fmt.Errorf("same answer: %w", err)
	}
	return t, [DigestBytes]byte(raw), nil
}

// VerifySame checks a "same" answer to request, the compact heartbeat this
// appliance sent (or kept with the answer), and returns the full answer it
// stands for: ok, about pbxID, stating the revision and digest the request
// held as current, standing active, continuing the chain from the
// request's link. The answer must be signed by a trusted portal key and
// echo exactly this request. The request is read, not verified: the echo
// under the portal's signature vouches for it. Refusals are
// *license.Error values.
func VerifySame(compact string, kr *license.Keyring, request, pbxID string) (*Answer, error) {
	v, err := kr.VerifyRaw(compact, TypeSame, "portal answer")
	if err != nil {
		return nil, err
	}
	t, echo, err := ParseSame(v.Payload)
	if err != nil {
		return nil, answerInvalid("%v", err)
	}
	if err := license.CheckTime("time", t); err != nil {
		return nil, answerInvalid("%v", err)
	}
	if echo != Echo(request) {
		return nil, answerInvalid("it answers another request (replayed, misrouted or made for another appliance)")
	}
	h, err := readCompactHeartbeat(request)
	if err != nil {
		return nil, answerInvalid("it answers a request that is not a compact heartbeat: %v", err)
	}
	return &Answer{
		Status:   StatusOK,
		Time:     t,
		Nonce:    h.Nonce,
		PBXID:    pbxID,
		Revision: h.Held.Revision,
		Digest:   h.Held.Digest,
		Standing: StandingActive,
		Link:     h.Link.Digest,
		Seq:      h.Link.Seq,
		Compact:  compact,
		Same:     true,
	}, nil
}

// readCompactHeartbeat decodes a compact heartbeat without verifying its
// signature.
func readCompactHeartbeat(compact string) (CompactHeartbeat, error) {
	_, typ, err := license.PeekHeader(compact)
	if err != nil {
		return CompactHeartbeat{}, err
	}
	if typ != TypeCompactHeartbeat {
		return CompactHeartbeat{}, fmt.Errorf("its type is %q", typ)
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(splitPayload(compact))
	if err != nil {
		return CompactHeartbeat{}, fmt.Errorf("its payload is not base64url")
	}
	return ParseCompactHeartbeat(payload)
}

// splitPayload returns the middle part of a compact JWS whose shape
// PeekHeader has checked.
func splitPayload(compact string) string {
	_, rest, _ := strings.Cut(compact, ".")
	payload, _, _ := strings.Cut(rest, ".")
	return payload
}

// unixMillis is unixSeconds for a time in Unix milliseconds.
func unixMillis(name string, ms uint64) (time.Time, error) {
	if ms == 0 || ms > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("%s %d out of range", name, ms)
	}
	t := time.UnixMilli(int64(ms)).UTC()
	if err := license.CheckTime(name, t); err != nil {
		return time.Time{}, err
	}
	return t, nil
}

// unixSeconds turns a decoded time into a time in the range every signed
// time must be in.
func unixSeconds(name string, secs uint64) (time.Time, error) {
	if secs == 0 || secs > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("%s %d out of range", name, secs)
	}
	t := time.Unix(int64(secs), 0).UTC()
	if err := license.CheckTime(name, t); err != nil {
		return time.Time{}, err
	}
	return t, nil
}

// append128 appends the 16 bytes whose base64url is s.
func append128(b []byte, name, s string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != 16 {
		return nil, fmt.Errorf("compact heartbeat: %s %q: want the base64url of 16 bytes", name, s)
	}
	return append(b, raw...), nil
}

// reader reads a binary payload, keeping the first error.
type reader struct {
	b   []byte
	doc string
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(r.doc+": "+format, args...)
	}
}

// uvarint reads an unsigned varint in its shortest encoding.
func (r *reader) uvarint(name string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	switch {
	case n == 0:
		r.fail("it stops before %s", name)
		return 0
	case n < 0:
		r.fail("%s overflows 64 bits", name)
		return 0
	case n != len(binary.AppendUvarint(nil, v)):
		r.fail("%s is not in its shortest encoding", name)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// raw128 reads 16 bytes.
func (r *reader) raw128(name string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < 16 {
		r.fail("it stops inside %s (%d of 16 bytes)", name, len(r.b))
		return nil
	}
	v := r.b[:16]
	r.b = r.b[16:]
	return v
}

// bytes128 reads 16 bytes as base64url, the form the rest of the protocol
// compares.
func (r *reader) bytes128(name string) string {
	v := r.raw128(name)
	if v == nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(v)
}
