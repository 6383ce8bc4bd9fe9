package portalsim

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: see crypto/rand.Read
	return hex.EncodeToString(b)
}
