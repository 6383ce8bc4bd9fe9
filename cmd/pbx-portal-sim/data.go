package main

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

// The simulator's data folder holds its signing key and exports the public
// keyring that agents must trust.
const (
	signingKeyFile = "signing-key.pem"
	keyringDir     = "keyring"
)

// openSigner loads the simulator's signing key from dir, making one (and
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

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: see crypto/rand.Read
	return hex.EncodeToString(b)
}
