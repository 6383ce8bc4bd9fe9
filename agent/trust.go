package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// revokedFile keeps the portal key ids the portal has revoked, apart from
// the state file: a state rolled back to a licence from before a
// revocation, or a licence wiped, cannot un-revoke a key. It only grows.
const revokedFile = "revoked-keys.json"

// trust is the one place that says which portal keys the agent trusts:
// the configured keyring less every key the portal has revoked. Every
// signed document (key, licence, answer, command) is checked against its
// Keyring.
type trust struct {
	base *license.Keyring // nil: no keyring configured
	path string

	mu      sync.Mutex // serialises Revoke
	revoked []string   // sorted
	cur     atomic.Pointer[license.Keyring]
}

type revokedDoc struct {
	Revoked []string `json:"revoked_kids"`
}

// loadTrust reads the revocations kept in dir and applies them to base.
func loadTrust(base *license.Keyring, dir string) (*trust, error) {
	t := &trust{base: base, path: filepath.Join(dir, revokedFile)}
	data, err := os.ReadFile(t.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading revoked portal keys: %w", err)
	default:
		var doc revokedDoc
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w: restore it from a backup, or remove it and let the next licence from the portal restate the revocations", t.path, err)
		}
		for _, kid := range doc.Revoked {
			if !license.ValidKeyID(kid) {
				return nil, fmt.Errorf("%s: %q is not a key id: restore it from a backup", t.path, kid)
			}
		}
		t.revoked = doc.Revoked
		slices.Sort(t.revoked)
		t.revoked = slices.Compact(t.revoked)
	}
	t.swap()
	return t, nil
}

func (t *trust) swap() {
	if t.base != nil {
		t.cur.Store(t.base.WithRevoked(t.revoked))
	}
}

// Keyring returns the keys trusted now; nil when none is configured.
func (t *trust) Keyring() *license.Keyring { return t.cur.Load() }

// Revoked returns the revoked key ids, sorted.
func (t *trust) Revoked() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.revoked)
}

// Revoke adds kids to the revoked keys, saved before they apply, so a
// revocation once seen outlives any state file. It reports the ids that
// were new.
func (t *trust) Revoke(kids []string) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var added []string
	for _, kid := range kids {
		if !slices.Contains(t.revoked, kid) && !slices.Contains(added, kid) {
			added = append(added, kid)
		}
	}
	if len(added) == 0 {
		return nil, nil
	}
	next := slices.Concat(t.revoked, added)
	slices.Sort(next)
	data, err := json.Marshal(revokedDoc{Revoked: next})
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(t.path, append(data, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("saving revoked portal keys: %w", err)
	}
	t.revoked = next
	t.swap()
	return added, nil
}

// noAnnouncementWarning is logged by a release build that trusts no key
// announced by its roots.
const noAnnouncementWarning = "no portal key announcement installed: only the embedded roots are trusted, and the portal signs with keys they announce"

// logPortalKeyring logs the portal keys this build trusts from the
// keyring folder dir (kr nil: none could be loaded), and says loudly when
// the build is a development one, whose roots anyone with root on the
// appliance can replace.
func logPortalKeyring(kr *license.Keyring, dir string, log *slog.Logger) {
	if !license.ReleaseBuild() {
		log.Error(license.DevelopmentBuildWarning, "keyring", dir)
	}
	if kr == nil {
		return
	}
	t := kr.Trust()
	for _, why := range t.Ignored {
		log.Warn("portal keyring: not trusted", "why", why)
	}
	if license.ReleaseBuild() && !slices.ContainsFunc(t.Keys, func(k license.TrustedKey) bool { return k.Role == license.RoleAnnounced }) {
		// The roots sign announcements, not licences: until one is
		// installed, every key and answer of the portal is refused.
		log.Warn(noAnnouncementWarning, "keyring", dir,
			"fix", "copy the key announcement files (*.jws) the vendor provides to "+dir+", then systemctl restart pbx-agent")
	}
	log.Info("portal keys trusted", "roots", t.Roots, "keys", kr.KeyIDs())
}

// trustStatus is the status's view of the keyring; kr may be nil when the
// keyring could not be loaded.
func trustStatus(kr *license.Keyring) *apitype.TrustStatus {
	ts := &apitype.TrustStatus{Roots: license.RootsConfigured, Keys: []apitype.TrustedKeyStatus{}}
	if license.ReleaseBuild() {
		ts.Roots = license.RootsEmbedded
	}
	if kr == nil {
		return ts
	}
	t := kr.Trust()
	ts.Ignored = t.Ignored
	for _, k := range t.Keys {
		ks := apitype.TrustedKeyStatus{KeyID: k.KeyID, Role: k.Role, AnnouncedBy: k.AnnouncedBy, Revoked: k.Revoked}
		if !k.NotAfter.IsZero() {
			ks.NotAfter = utc(k.NotAfter)
		}
		ts.Keys = append(ts.Keys, ks)
	}
	return ts
}
