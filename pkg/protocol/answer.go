package protocol

import (
	"crypto/ed25519"
	"fmt"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

// VerifyAnswer checks a portal answer: signed by a trusted portal key, of
// type answer, answering the request with nonce, about PBX pbxID (when
// known). Refusals are *license.Error values.
func VerifyAnswer(compact string, kr *license.Keyring, nonce, pbxID string) (*Answer, error) {
	a, err := verifyAnswer(compact, kr, pbxID)
	if err != nil {
		return nil, err
	}
	if a.Nonce != nonce {
		return nil, answerInvalid("it answers another request (replayed or misrouted)")
	}
	return a, nil
}

// VerifyKeptAnswer checks an answer the agent kept from an earlier
// exchange (the last one that counted as a success): signed by a trusted
// portal key, of type answer, about PBX pbxID. Its nonce was checked when
// it arrived.
func VerifyKeptAnswer(compact string, kr *license.Keyring, pbxID string) (*Answer, error) {
	return verifyAnswer(compact, kr, pbxID)
}

func answerInvalid(format string, args ...any) error {
	return &license.Error{Doc: "portal answer", Kind: license.ErrInvalid, Detail: fmt.Sprintf(format, args...)}
}

func verifyAnswer(compact string, kr *license.Keyring, pbxID string) (*Answer, error) {
	v, err := kr.Verify(compact, TypeAnswer, "portal answer")
	if err != nil {
		return nil, err
	}
	invalid := answerInvalid
	var a Answer
	if err := strictjson.Unmarshal(v.Payload, &a); err != nil {
		return nil, invalid("its signed content is not an answer: %v", err)
	}
	a.Compact = compact
	switch {
	case pbxID != "" && a.PBXID != pbxID && !(a.Status == StatusStale && a.PBXID == ""):
		// A stale answer to an activation names no PBX: the portal judged
		// the time before reading the key. It carries only the time,
		// bound to this request by its nonce.
		return nil, invalid("it is about PBX %q, not %q", a.PBXID, pbxID)
	case a.Time.IsZero():
		return nil, invalid("it carries no portal time")
	case license.CheckTime("time", a.Time) != nil:
		return nil, invalid("%v", license.CheckTime("time", a.Time))
	case a.Revision < 0:
		return nil, invalid("negative licence revision")
	case len(a.Digest) > 64 || len(a.Link) > 64:
		return nil, invalid("a digest longer than 64 characters")
	case a.Interval < 0:
		return nil, invalid("negative heartbeat interval")
	case len(a.Commands) > MaxCommands:
		return nil, invalid("%d commands, more than %d", len(a.Commands), MaxCommands)
	case len(a.Acked) > MaxResults:
		return nil, invalid("%d acknowledgements, more than %d", len(a.Acked), MaxResults)
	}
	switch a.Status {
	case StatusOK:
		switch a.Standing {
		case "", StandingActive, StandingSuspended:
		default:
			return nil, invalid("unknown standing %q", a.Standing)
		}
	case StatusStale:
	case StatusRefused:
		if a.Reason != RefusedCloned {
			return nil, invalid("refused for an unknown reason %q", a.Reason)
		}
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
	if err := strictjson.Unmarshal(signed.Payload, v); err != nil {
		return &license.Error{Doc: "request", Kind: license.ErrInvalid, Detail: err.Error()}
	}
	return nil
}
