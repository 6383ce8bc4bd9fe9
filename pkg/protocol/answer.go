package protocol

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// VerifyAnswer checks a portal answer: signed by a trusted portal key, of
// type answer, answering the request with nonce, about PBX pbxID (when
// known). Refusals are *license.Error values.
func VerifyAnswer(compact string, kr *license.Keyring, nonce, pbxID string) (*Answer, error) {
	v, err := kr.Verify(compact, TypeAnswer, "portal answer")
	if err != nil {
		return nil, err
	}
	invalid := func(format string, args ...any) error {
		return &license.Error{Doc: "portal answer", Kind: license.ErrInvalid, Detail: fmt.Sprintf(format, args...)}
	}
	var a Answer
	if err := json.Unmarshal(v.Payload, &a); err != nil {
		return nil, invalid("its signed content is not an answer: %v", err)
	}
	switch {
	case a.Nonce != nonce:
		return nil, invalid("it answers another request (replayed or misrouted)")
	case pbxID != "" && a.PBXID != pbxID && !(a.Status == StatusStale && a.PBXID == ""):
		// A stale answer to an activation names no PBX: the portal judged
		// the time before reading the key. It carries only the time,
		// bound to this request by its nonce.
		return nil, invalid("it is about PBX %q, not %q", a.PBXID, pbxID)
	case a.Time.IsZero():
		return nil, invalid("it carries no portal time")
	case a.Interval < 0:
		return nil, invalid("negative heartbeat interval")
	case len(a.Commands) > MaxCommands:
		return nil, invalid("%d commands, more than %d", len(a.Commands), MaxCommands)
	case len(a.Acked) > MaxResults:
		return nil, invalid("%d acknowledgements, more than %d", len(a.Acked), MaxResults)
	}
	switch a.Status {
	case StatusOK, StatusStale:
	case StatusGone:
		if a.Reason != GoneDeleted && a.Reason != GoneRebound {
			return nil, invalid("gone for an unknown reason %q", a.Reason)
		}
	default:
		return nil, invalid("unknown status %q", a.Status)
	}
	return &a, nil
}

// VerifyRequest checks a request signed by a device key and decodes it into
// v. typ is TypeActivate or TypeHeartbeat. It does not judge freshness or
// nonces, which need the portal's clock and memory.
func VerifyRequest(compact, typ string, device ed25519.PublicKey, v any) error {
	kr, err := license.NewKeyring(map[string]ed25519.PublicKey{DeviceKeyID(device): device})
	if err != nil {
		return err
	}
	signed, err := kr.Verify(compact, typ, "request")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(signed.Payload, v); err != nil {
		return &license.Error{Doc: "request", Kind: license.ErrInvalid, Detail: err.Error()}
	}
	return nil
}
