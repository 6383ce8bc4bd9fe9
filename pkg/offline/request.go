package offline

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

// Request asks the portal to bind a PBX to this appliance and answer with
// an offline licence file. It is signed by the device key it carries,
// which proves the appliance holds the private half; the portal answers
// with a file bound to that key and echoing Nonce.
type Request struct {
	Version      int           `json:"v"`
	Time         time.Time     `json:"ts"`    // the licence clock at signing; informative
	Nonce        string        `json:"nonce"` // echoed by the licence file answering it
	Key          string        `json:"key"`   // the PBX key, normalised
	DeviceKey    []byte        `json:"device_key"`
	Fingerprint  string        `json:"fingerprint"` // HMAC of hardware ids; raw ids never leave the box
	Model        license.Model `json:"model"`
	Serial       string        `json:"serial,omitempty"`
	Overrides    []string      `json:"overrides,omitempty"`
	AgentVersion string        `json:"agent_version"`

	// Compact is the signed request as read; set by ParseRequest, not signed.
	Compact string `json:"-"`
	// KeyRef names the key instead of Key in a short request; set by
	// ParseShortRequest.
	KeyRef *KeyRef `json:"-"`
}

// SignRequest signs r with the device key dev, whose public half it must carry.
func SignRequest(dev *license.Signer, r Request) (string, error) {
	if protocol.DeviceKeyID(r.DeviceKey) != dev.KeyID() {
		return "", errors.New("signing an offline activation request: it must carry the public half of the key that signs it")
	}
	r.Version = Version
	return dev.Sign(TypeRequest, r)
}

// ParseRequest verifies an activation request with the device key it
// carries and checks its content. Refusals are *license.Error values.
func ParseRequest(compact string) (*Request, error) {
	payload, err := unverifiedPayload(compact, docRequest)
	if err != nil {
		return nil, err
	}
	var claim struct {
		DeviceKey []byte `json:"device_key"`
	}
	if err := strictjson.Unmarshal(payload, &claim); err != nil {
		return nil, invalid(docRequest, "its content is not an activation request: %v", err)
	}
	if len(claim.DeviceKey) != ed25519.PublicKeySize {
		return nil, invalid(docRequest, "device_key must be an Ed25519 public key (%d bytes), not %d bytes",
			ed25519.PublicKeySize, len(claim.DeviceKey))
	}
	var r Request
	if err := verifyDevice(compact, TypeRequest, docRequest, claim.DeviceKey, &r); err != nil {
		return nil, err
	}
	if err := r.validate(docRequest); err != nil {
		return nil, err
	}
	r.Compact = compact
	return &r, nil
}

func (r *Request) validate(doc string) error {
	if err := checkVersion(doc, r.Version); err != nil {
		return err
	}
	switch {
	case r.Key == "" && r.KeyRef == nil:
		return invalid(doc, "it carries no PBX key")
	case r.Fingerprint == "":
		return invalid(doc, "it carries no appliance fingerprint")
	case !r.Model.Valid():
		return invalid(doc, "unknown appliance model %q", r.Model)
	}
	if err := checkNonce(doc, r.Nonce); err != nil {
		return err
	}
	return checkTime(doc, "ts", r.Time)
}

// DeviceID names the appliance that signed the request.
func (r *Request) DeviceID() string { return protocol.DeviceKeyID(r.DeviceKey) }

// verifyDevice checks compact, of type typ, against the device key dev
// and decodes its payload into v.
func verifyDevice(compact, typ, doc string, dev ed25519.PublicKey, v any) error {
	kr, err := license.NewKeyring(map[string]ed25519.PublicKey{protocol.DeviceKeyID(dev): dev})
	if err != nil {
		return err
	}
	signed, err := kr.Verify(compact, typ, doc)
	if err != nil {
		var le *license.Error
		if errors.As(err, &le) && le.Kind == license.ErrUnknownSigner {
			le.Detail = fmt.Sprintf("it is not signed by device key %q", protocol.DeviceKeyID(dev))
			le.Fix = "it was made by another appliance, or altered on the way"
		}
		return err
	}
	if err := strictjson.Unmarshal(signed.Payload, v); err != nil {
		return invalid(doc, "its signed content is not an %s: %v", doc, err)
	}
	return nil
}
