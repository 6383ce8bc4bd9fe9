package portalsim

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Files of the data folder.
const (
	signingKeyFile = "signing-key.pem"
	keyringDir     = "keyring"
	stateFile      = "state.json"
	lockFile       = "lock"
)

// openSigner loads the portal's signing key from dir, making one (and
// writing its public key to dir/keyring/) on first use.
func openSigner(dir string) (*license.Signer, error) {
	path := filepath.Join(dir, signingKeyFile)
	s, err := license.LoadSigner(path)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data folder: %w", err)
	}
	s, err = license.GenerateSigner("sim-" + randomHex(4))
	if err != nil {
		return nil, err
	}
	// The public key goes out first: a signing key without its keyring
	// entry would sign documents nobody can verify.
	if err := license.WriteKeyringFile(filepath.Join(dir, keyringDir), s.KeyID(), s.Public()); err != nil {
		return nil, err
	}
	if err := license.SaveSigner(path, s); err != nil {
		return nil, err
	}
	return s, nil
}

// loadSigner loads the signing key that the saved state was made with.
// Making a new one would orphan every PBX key and licence already issued.
func loadSigner(dir, kid string) (*license.Signer, error) {
	path := filepath.Join(dir, signingKeyFile)
	s, err := license.LoadSigner(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is missing, but %s holds PBXs issued with it: restore the key, or move the folder aside to start afresh",
			path, filepath.Join(dir, stateFile))
	}
	if err != nil {
		return nil, err
	}
	if kid != "" && s.KeyID() != kid {
		return nil, fmt.Errorf("%s is key %q, but the state was made with key %q: restore the right key, or move the folder aside to start afresh",
			path, s.KeyID(), kid)
	}
	return s, nil
}

// KeyRotation is the answer of a key rotation.
type KeyRotation struct {
	Retired string   `json:"retired"` // the key id no longer used, and revoked
	Current string   `json:"current"` // the key id the portal signs with from now on
	PBXs    []string `json:"pbxs"`    // the PBXs given a licence revision that revokes the retired key
}

// rotateKey retires the portal's signing key, as after a leak: a new key
// signs from now on (its public key joins the exported keyring), and every
// live PBX gets a licence revision that revokes the retired key, so its
// appliance refuses anything the retired key signs from then on.
func (p *Portal) rotateKey(*http.Request) (any, error) {
	var out KeyRotation
	err := p.update(func(now time.Time) error {
		next, err := license.GenerateSigner("sim-" + randomHex(4))
		if err != nil {
			return err
		}
		if err := license.WriteKeyringFile(p.KeyringDir(), next.KeyID(), next.Public()); err != nil {
			return err
		}
		if err := license.SaveSigner(filepath.Join(p.dataDir, signingKeyFile), next); err != nil {
			return err
		}
		kr, err := license.LoadKeyring(p.KeyringDir())
		if err != nil {
			return err
		}
		out.Retired, out.Current = p.signer.KeyID(), next.KeyID()
		p.signer, p.keyring, p.st.SignerKeyID = next, kr, next.KeyID()
		p.markDirty()
		for _, r := range p.st.PBXs {
			if r.deleted() {
				continue
			}
			changed, err := applyLicense(r, now, func(d *license.Document) error {
				if !slices.Contains(d.RevokedKeyIDs, out.Retired) {
					d.RevokedKeyIDs = append(d.RevokedKeyIDs, out.Retired)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if changed {
				out.PBXs = append(out.PBXs, r.Name)
				p.wakeLocked(r.ID)
			}
		}
		p.log.Warn("signing key rotated: the retired key is revoked in every live PBX's licence",
			"retired", out.Retired, "current", out.Current, "pbxs", len(out.PBXs))
		return nil
	})
	return out, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: see crypto/rand.Read
	return hex.EncodeToString(b)
}
