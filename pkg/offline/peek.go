package offline

import (
	"encoding/base64"
	"errors"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// typeNames names the types a person may carry to the wrong place.
var typeNames = map[string]string{
	TypeRequest:         docRequest,
	TypeLicence:         docLicence,
	TypeReport:          docReport,
	license.TypeKey:     "PBX key",
	license.TypeLicense: "licence document",
}

// unverifiedPayload checks the shape and type of a compact JWS and returns
// its payload unverified, for reading the key that verifies it. Never act
// on it before the signature is checked.
func unverifiedPayload(compact, doc string) ([]byte, error) {
	if err := checkType(compact, doc); err != nil {
		return nil, err
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(strings.Split(compact, ".")[1])
	if err != nil { // checkType has checked it
		return nil, &license.Error{Doc: doc, Kind: license.ErrCorrupted, Detail: "its content is not valid base64url"}
	}
	return payload, nil
}

// checkType checks the shape of a compact JWS and that it is a doc, with
// an error that names what it is instead.
func checkType(compact, doc string) error {
	_, typ, err := license.PeekHeader(compact)
	if err != nil {
		var le *license.Error
		if errors.As(err, &le) {
			le.Doc = doc
		}
		return err
	}
	want := map[string]string{docRequest: TypeRequest, docLicence: TypeLicence, docReport: TypeReport}[doc]
	if typ != want {
		what, ok := typeNames[typ]
		if !ok {
			what = "a document of type " + typ
		} else {
			what = "an " + what
			if !strings.HasPrefix(typeNames[typ], "offline") {
				what = "a " + typeNames[typ]
			}
		}
		return &license.Error{Doc: doc, Kind: license.ErrWrongType, Detail: "this is " + what}
	}
	return nil
}
