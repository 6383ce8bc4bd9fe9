package portalsim

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// announcementFile is where Announce writes by default: beside the public
// key in the exported keyring, so an agent whose portal.keyring is that
// folder finds it.
const announcementFile = "announce.jws"

// InitKeys makes the signing key of the data folder dir and its exported
// keyring (dir/keyring/<kid>.pem), as the first serve would, without
// serving; an existing key is kept. It returns the key's id. A release
// build made to test against this portal embeds that keyring as its roots.
func InitKeys(dir string) (string, error) {
	s, err := openSigner(dir)
	if err != nil {
		return "", err
	}
	if err := license.WriteKeyringFile(filepath.Join(dir, keyringDir), s.KeyID(), s.Public()); err != nil {
		return "", err
	}
	return s.KeyID(), nil
}

// Announce signs, with the signing key of the data folder dir acting as a
// root, a key announcement (license.TypeKeys) of keys, and writes it to
// out, or to dir/keyring/announce.jws when out is empty. It returns the
// path written. An agent built with that key as a root then trusts the
// announced keys: those of another portal, signing with a key of its own.
func Announce(dir string, keys []license.AnnouncedKey, now time.Time, out string) (string, error) {
	root, err := license.LoadSigner(filepath.Join(dir, signingKeyFile))
	if err != nil {
		return "", fmt.Errorf("the root of the announcement: %w (run serve or keys init on %s first)", err, dir)
	}
	jws, err := license.SignAnnouncement(root, keys, now)
	if err != nil {
		return "", err
	}
	if out == "" {
		out = filepath.Join(dir, keyringDir, announcementFile)
	}
	if err := atomicfile.WriteFile(out, []byte(jws+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("writing the announcement: %w", err)
	}
	return out, nil
}
