package license

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// embeddedRoots are the vendor's portal root keys, set when a release is
// linked (make deb):
//
//	-X github.com/pbx-agent/pbx-agent/pkg/license.embeddedRoots=<kid>:<base64url key>,...
//
// A linker-set string, rather than a generated file behind a build tag,
// keeps `go build`, `go test` and the demo working from a plain checkout:
// left empty, the build is a development build, which takes its roots from
// the configured keyring folder. Nothing at run time can set it.
var embeddedRoots string

// TypeKeys is the type of a key announcement: a list of portal keys that a
// root vouches for.
const TypeKeys = "pbx-keys+jws"

// AnnouncementVersion is the key announcement format this build reads.
const AnnouncementVersion = 1

// announcementSuffix names the announcement files of a keyring folder.
const announcementSuffix = ".jws"

// Where a trusted key's trust comes from.
const (
	// RoleRoot: an embedded root key of a release build.
	RoleRoot = "root"
	// RoleAnnounced: a key announced by an embedded root.
	RoleAnnounced = "announced"
	// RoleConfigured: a development build's key, trusted because it is in
	// the configured keyring folder.
	RoleConfigured = "configured"
)

// Where a build's roots come from (Trust.Roots).
const (
	RootsEmbedded   = "embedded"   // a release build
	RootsConfigured = "configured" // a development build: portal.keyring
)

// DevelopmentBuildWarning is what a development build says at start.
const DevelopmentBuildWarning = "development build: portal root keys come from configuration; a release build embeds them"

// Announcement is the signed content of a key announcement (TypeKeys).
type Announcement struct {
	Version  int            `json:"v"`
	IssuedAt time.Time      `json:"iat"`
	Keys     []AnnouncedKey `json:"keys"`

	// SignerKeyID is the root that signed it; set by ParseAnnouncement, not signed.
	SignerKeyID string `json:"-"`
}

// AnnouncedKey is one portal key a root vouches for, within an optional
// validity window.
type AnnouncedKey struct {
	KeyID     string     `json:"kid"`
	PublicKey string     `json:"public_key"` // base64url (no padding) of the 32-byte Ed25519 key
	NotBefore *time.Time `json:"not_before,omitempty"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
}

// NewAnnouncedKey describes pub under kid for an announcement.
func NewAnnouncedKey(kid string, pub ed25519.PublicKey) AnnouncedKey {
	return AnnouncedKey{KeyID: kid, PublicKey: base64.RawURLEncoding.EncodeToString(pub)}
}

// SignAnnouncement signs an announcement of keys with root, a root key.
func SignAnnouncement(root *Signer, keys []AnnouncedKey, now time.Time) (string, error) {
	a := Announcement{Version: AnnouncementVersion, IssuedAt: now.UTC().Truncate(time.Second), Keys: keys}
	if err := a.validate(); err != nil {
		return "", err
	}
	return root.Sign(TypeKeys, a)
}

func (a *Announcement) validate() error {
	invalid := func(format string, args ...any) error {
		return &Error{Doc: "key announcement", Kind: ErrInvalid, Detail: fmt.Sprintf(format, args...)}
	}
	switch {
	case a.Version > AnnouncementVersion:
		return &Error{Doc: "key announcement", Kind: ErrInvalid,
			Detail: fmt.Sprintf("format version %d is newer than this agent reads (%d)", a.Version, AnnouncementVersion),
			Fix:    "upgrade pbx-agent"}
	case a.Version < 1:
		return invalid("it has no format version")
	case len(a.Keys) == 0:
		return invalid("it announces no key")
	}
	for i, k := range a.Keys {
		if !ValidKeyID(k.KeyID) {
			return invalid("key %d: invalid key id %q", i+1, k.KeyID)
		}
		if _, err := decodePublicKey(k.PublicKey); err != nil {
			return invalid("key %q: %v", k.KeyID, err)
		}
		if k.NotBefore != nil && k.NotAfter != nil && !k.NotAfter.After(*k.NotBefore) {
			return invalid("key %q: not_after %v is not after not_before %v", k.KeyID, *k.NotAfter, *k.NotBefore)
		}
	}
	return nil
}

// ParseAnnouncement verifies a key announcement against roots, a keyring
// of root keys only, and checks its content.
func ParseAnnouncement(compact string, roots *Keyring) (*Announcement, error) {
	v, err := roots.Verify(strings.TrimSpace(compact), TypeKeys, "key announcement")
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(v.Payload))
	dec.DisallowUnknownFields()
	var a Announcement
	if err := dec.Decode(&a); err != nil {
		return nil, &Error{Doc: "key announcement", Kind: ErrInvalid, Detail: "its signed content is not a key announcement: " + err.Error()}
	}
	if err := a.validate(); err != nil {
		return nil, err
	}
	a.SignerKeyID = v.KeyID
	return &a, nil
}

func decodePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("the public key is not base64url without padding")
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("the public key has %d bytes, not %d (Ed25519)", len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// FormatRoots encodes root keys as the value of embeddedRoots.
func FormatRoots(keys map[string]ed25519.PublicKey) (string, error) {
	kids := make([]string, 0, len(keys))
	for kid, pub := range keys {
		if !ValidKeyID(kid) {
			return "", fmt.Errorf("root key id %q: not a valid key id (letters, digits, '.', '_', '-')", kid)
		}
		if len(pub) != ed25519.PublicKeySize {
			return "", fmt.Errorf("root key %q: not an Ed25519 public key", kid)
		}
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	parts := make([]string, len(kids))
	for i, kid := range kids {
		parts[i] = kid + ":" + base64.RawURLEncoding.EncodeToString(keys[kid])
	}
	return strings.Join(parts, ","), nil
}

// ParseRoots decodes a value of embeddedRoots; empty is no roots.
func ParseRoots(spec string) (map[string]ed25519.PublicKey, error) {
	roots := make(map[string]ed25519.PublicKey)
	if spec == "" {
		return roots, nil
	}
	for part := range strings.SplitSeq(spec, ",") {
		kid, enc, ok := strings.Cut(part, ":")
		if !ok || !ValidKeyID(kid) {
			return nil, fmt.Errorf("embedded portal root %q: want <kid>:<base64url Ed25519 key>", part)
		}
		pub, err := decodePublicKey(enc)
		if err != nil {
			return nil, fmt.Errorf("embedded portal root %q: %w", kid, err)
		}
		if _, dup := roots[kid]; dup {
			return nil, fmt.Errorf("embedded portal root %q appears twice", kid)
		}
		roots[kid] = pub
	}
	return roots, nil
}

// ReleaseBuild reports whether this binary embeds portal root keys.
func ReleaseBuild() bool { return embeddedRoots != "" }

// LoadPortalKeyring loads the keys this build trusts from the keyring
// folder dir. A release build trusts its embedded roots and the keys they
// announce in dir's *.jws files, valid at now; it ignores dir's bare *.pem
// files, which anyone with root could have put there. A development build
// trusts dir's *.pem files, as LoadKeyring does. What was ignored, and why,
// is in the keyring's Trust().Ignored.
func LoadPortalKeyring(dir string, now time.Time) (*Keyring, error) {
	roots, err := ParseRoots(embeddedRoots)
	if err != nil {
		return nil, fmt.Errorf("this build's embedded portal roots are unusable (rebuild it with make deb): %w", err)
	}
	if len(roots) == 0 {
		kr, err := LoadKeyring(dir)
		if errors.Is(err, ErrNoKeys) || errors.Is(err, fs.ErrNotExist) {
			// Nothing ships these keys: they come from the portal.
			return nil, fmt.Errorf("%w; this development build trusts the portal public keys (<kid>%s) of portal.keyring: "+
				"copy the portal's there (pbx-portal-sim writes its own to DATA/keyring/), "+
				"or install a release build (make deb), which embeds the vendor's roots", err, publicKeySuffix)
		}
		if err != nil {
			return nil, err
		}
		kr.trust = &trustInfo{roots: RootsConfigured, role: map[string]string{}}
		for kid := range kr.keys {
			kr.trust.role[kid] = RoleConfigured
		}
		return kr, nil
	}
	return loadReleaseKeyring(dir, roots, now)
}

// trustInfo is where each key of a keyring comes from.
type trustInfo struct {
	roots       string
	role        map[string]string    // kid: RoleRoot, RoleAnnounced, RoleConfigured
	announcedBy map[string]string    // announced kid: the root that signed its announcement
	notAfter    map[string]time.Time // announced kid: the end of its validity, if any
	ignored     []string
}

// loadReleaseKeyring is LoadPortalKeyring for a build whose roots are roots.
func loadReleaseKeyring(dir string, roots map[string]ed25519.PublicKey, now time.Time) (*Keyring, error) {
	rootRing, err := NewKeyring(roots)
	if err != nil {
		return nil, fmt.Errorf("this build's embedded portal roots: %w", err)
	}
	rootRing.source = "this build's embedded portal roots"
	ti := &trustInfo{roots: RootsEmbedded, role: map[string]string{}, announcedBy: map[string]string{}, notAfter: map[string]time.Time{}}
	keys := make(map[string]ed25519.PublicKey, len(roots))
	for kid, pub := range roots {
		keys[kid] = pub
		ti.role[kid] = RoleRoot
	}
	ignore := func(format string, args ...any) { ti.ignored = append(ti.ignored, fmt.Sprintf(format, args...)) }

	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ignore("%s does not exist: only the embedded portal roots are trusted", dir)
	case err != nil:
		return nil, fmt.Errorf("reading portal keyring: %w", err)
	}
	conflicted := map[string]bool{}
	for _, e := range entries {
		name, path := e.Name(), filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			continue
		case strings.HasSuffix(name, publicKeySuffix):
			ignore("%s: ignored: a release build trusts only its embedded portal roots and the keys they announce (*%s files), not bare keys", path, announcementSuffix)
			continue
		case !strings.HasSuffix(name, announcementSuffix):
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			ignore("%s: refused: %v", path, err)
			continue
		}
		a, err := ParseAnnouncement(string(data), rootRing)
		if err != nil {
			ignore("%s: refused: %v", path, err)
			continue
		}
		for _, k := range a.Keys {
			pub, _ := decodePublicKey(k.PublicKey) // validate checked it
			switch {
			case ti.role[k.KeyID] == RoleRoot:
				ignore("%s: key %q ignored: it is the id of an embedded root", path, k.KeyID)
			case conflicted[k.KeyID]:
			case keys[k.KeyID] != nil && !keys[k.KeyID].Equal(pub):
				// Two announcements disagree: trust neither.
				ignore("%s: key %q refused: another announcement gives the same id another key", path, k.KeyID)
				conflicted[k.KeyID] = true
				delete(keys, k.KeyID)
				delete(ti.role, k.KeyID)
				delete(ti.announcedBy, k.KeyID)
				delete(ti.notAfter, k.KeyID)
			case k.NotBefore != nil && now.Before(*k.NotBefore):
				ignore("%s: key %q not yet valid: from %s", path, k.KeyID, k.NotBefore.UTC().Format(time.RFC3339))
			case k.NotAfter != nil && !now.Before(*k.NotAfter):
				ignore("%s: key %q expired at %s", path, k.KeyID, k.NotAfter.UTC().Format(time.RFC3339))
			default:
				keys[k.KeyID] = pub
				ti.role[k.KeyID] = RoleAnnounced
				ti.announcedBy[k.KeyID] = a.SignerKeyID
				if k.NotAfter != nil {
					ti.notAfter[k.KeyID] = k.NotAfter.UTC()
				}
			}
		}
	}
	return &Keyring{keys: keys, source: "the embedded portal roots and the keys they announce in " + dir, trust: ti}, nil
}

// revokedReason says why kid is refused by revocation: revoked itself, or
// announced by a revoked root. Empty when it is not.
func (k *Keyring) revokedReason(kid string) string {
	if k.revoked[kid] {
		return fmt.Sprintf("portal key %q has been revoked", kid)
	}
	if k.trust != nil {
		if by := k.trust.announcedBy[kid]; by != "" && k.revoked[by] {
			return fmt.Sprintf("portal key %q was announced by root %q, which has been revoked", kid, by)
		}
	}
	return ""
}

// Trust describes a keyring for people: where its keys come from.
type Trust struct {
	Roots   string       // RootsEmbedded or RootsConfigured; empty for a keyring built in code
	Keys    []TrustedKey // sorted by id, revoked ones included
	Ignored []string     // keyring files or keys not trusted, and why
}

// TrustedKey is one key of a keyring.
type TrustedKey struct {
	KeyID       string
	Role        string    // RoleRoot, RoleAnnounced or RoleConfigured
	AnnouncedBy string    // for RoleAnnounced: the root that announced it
	NotAfter    time.Time // for RoleAnnounced: zero, or when its announcement ends
	Revoked     bool      // revoked, or announced by a revoked root
}

// Trust returns where the keyring's keys come from.
func (k *Keyring) Trust() Trust {
	var t Trust
	ti := k.trust
	if ti == nil {
		ti = &trustInfo{}
	}
	t.Roots = ti.roots
	t.Ignored = slices.Clone(ti.ignored)
	for kid := range k.keys {
		t.Keys = append(t.Keys, TrustedKey{
			KeyID: kid, Role: ti.role[kid], AnnouncedBy: ti.announcedBy[kid],
			NotAfter: ti.notAfter[kid], Revoked: k.revokedReason(kid) != "",
		})
	}
	slices.SortFunc(t.Keys, func(a, b TrustedKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	return t
}
