package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// fingerprintSources are the machine ids a fingerprint is made of, relative
// to the root. The DMI ones are readable by root only on most machines; the
// unprivileged daemon then uses the machine id alone.
var fingerprintSources = []string{
	"sys/class/dmi/id/product_uuid",
	"sys/class/dmi/id/product_serial",
	"etc/machine-id",
}

// Fingerprint identifies this machine to the portal without revealing its
// ids: an HMAC-SHA256 keyed by the PBX id, so the same machine gives
// unrelated fingerprints for different PBXs. serial, when set (the
// identity.serial override), replaces the DMI serial.
func Fingerprint(root, pbxID, serial string) (string, error) {
	mac := hmac.New(sha256.New, []byte("pbx-agent fingerprint v1\x00"+pbxID))
	found := false
	for _, src := range fingerprintSources {
		var v string
		if serial != "" && strings.HasSuffix(src, "product_serial") {
			v = serial
		} else if b, err := os.ReadFile(filepath.Join(root, src)); err == nil {
			v = strings.TrimSpace(string(b))
		}
		if v != "" {
			found = true
		}
		mac.Write([]byte(src + "=" + v + "\n"))
	}
	if !found {
		return "", errors.New("fingerprint: no machine id readable (/etc/machine-id, DMI); set identity.serial")
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

// ResolveModel returns the model keys are checked against and where it came
// from: the identity.model override, or detection under root.
func ResolveModel(override, root string) (m license.Model, source string, err error) {
	if override != "" {
		m, err := license.ParseModel(override)
		return m, "identity.model", err
	}
	m, err = DetectModel(root)
	return m, "detected", err
}
