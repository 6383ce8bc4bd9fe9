package agent

import (
	"log/slog"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// loadPortalKeyring loads the portal keys this build trusts from the
// keyring folder dir, and says loudly when the build is a development one,
// whose roots anyone with root on the appliance can replace.
func loadPortalKeyring(dir string, log *slog.Logger) (*license.Keyring, error) {
	if !license.ReleaseBuild() {
		log.Error(license.DevelopmentBuildWarning, "keyring", dir)
	}
	kr, err := license.LoadPortalKeyring(dir, time.Now().UTC())
	if err != nil {
		return nil, err
	}
	t := kr.Trust()
	for _, why := range t.Ignored {
		log.Warn("portal keyring: not trusted", "why", why)
	}
	log.Info("portal keys trusted", "roots", t.Roots, "keys", kr.KeyIDs())
	return kr, nil
}

// trustStatus is the status's view of the keyring; kr may be nil when the
// keyring could not be loaded.
func trustStatus(kr *license.Keyring) *localapi.TrustStatus {
	ts := &localapi.TrustStatus{Roots: license.RootsConfigured, Keys: []localapi.TrustedKeyStatus{}}
	if license.ReleaseBuild() {
		ts.Roots = license.RootsEmbedded
	}
	if kr == nil {
		return ts
	}
	t := kr.Trust()
	ts.Ignored = t.Ignored
	for _, k := range t.Keys {
		ks := localapi.TrustedKeyStatus{KeyID: k.KeyID, Role: k.Role, AnnouncedBy: k.AnnouncedBy, Revoked: k.Revoked}
		if !k.NotAfter.IsZero() {
			ks.NotAfter = utc(k.NotAfter)
		}
		ts.Keys = append(ts.Keys, ks)
	}
	return ts
}
