// Command portalroots prints the value a release build links into
// pkg/license.embeddedRoots: the portal root keys of a folder, one
// "<kid>.pem" file (PEM "PUBLIC KEY", Ed25519) each. `make deb` runs it on
// PORTAL_ROOTS and fails with its message when the folder holds no key.
package main

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: portalroots DIR")
		os.Exit(2)
	}
	spec, err := rootsSpec(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "portalroots:", err)
		os.Exit(1)
	}
	fmt.Println(spec)
}

// rootsSpec reads the "<kid>.pem" files of dir. Other files (a README)
// are skipped; a folder without any key is an error, since a release
// without roots would trust no portal at all.
func rootsSpec(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("reading the portal roots: %w (name the folder of the vendor's root public keys with make deb PORTAL_ROOTS=DIR)", err)
	}
	keys := make(map[string]ed25519.PublicKey)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".pem") {
			continue
		}
		path := filepath.Join(dir, name)
		kid := strings.TrimSuffix(name, ".pem")
		if !license.ValidKeyID(kid) {
			return "", fmt.Errorf("%s: the file name is not a valid key id (letters, digits, '.', '_', '-')", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		pub, err := license.ParsePublicKeyPEM(data)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		keys[kid] = pub
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("%s holds no <kid>.pem portal root key: a release build embeds the vendor's production root public keys; "+
			"put them there (see its README) or name their folder with make deb PORTAL_ROOTS=DIR", dir)
	}
	return license.FormatRoots(keys)
}
