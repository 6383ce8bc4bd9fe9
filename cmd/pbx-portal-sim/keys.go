package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// newKeysCmd works on the portal's keys: init and announce on a data
// folder directly, running or not (to build a release that embeds this
// portal as its root, and to sign key announcements); rotate through a
// running portal.
func newKeysCmd(e *env, client clientFunc) *cobra.Command {
	var dataDir string
	keys := &cobra.Command{
		Use:   "keys",
		Short: "Make the portal's keys, sign a key announcement, or rotate the signing key",
		Args:  cobra.NoArgs,
	}
	keys.PersistentFlags().StringVar(&dataDir, "data", "portal-data", "data `DIR` of the portal")
	keys.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Make the signing key and DIR/keyring/ without serving; print the key id",
		Long: "Makes the signing key and the exported keyring DIR/keyring/<kid>.pem, as the first serve\n" +
			"would; an existing key is kept. A release build to test against this portal embeds\n" +
			"that keyring: make deb PORTAL_ROOTS=DIR/keyring.",
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			kid, err := portalsim.InitKeys(dataDir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, kid)
			return err
		},
	})
	var keyFiles []string
	var notBefore, notAfter, out string
	announce := &cobra.Command{
		Use:   "announce --key FILE.pem...",
		Short: "Sign, as a root, an announcement of other portals' public keys",
		Long: "Signs with this portal's key, as a root, a key announcement (pbx-keys+jws) of the public\n" +
			"keys given, each a <kid>.pem file (another portal's DIR/keyring/<kid>.pem), and writes\n" +
			"it to DIR/keyring/announce.jws (or --out). A release agent whose embedded root is this\n" +
			"portal's key trusts the announced keys when the announcement is in its portal.keyring.",
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if len(keyFiles) == 0 {
				return fmt.Errorf("no key to announce: name a public key with --key FILE.pem")
			}
			var window [2]*time.Time
			for i, v := range []string{notBefore, notAfter} {
				if v == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return fmt.Errorf("time %q: want RFC 3339, e.g. 2026-11-30T10:00:00Z", v)
				}
				window[i] = &t
			}
			var announced []license.AnnouncedKey
			for _, path := range keyFiles {
				kid := strings.TrimSuffix(filepath.Base(path), ".pem")
				if !strings.HasSuffix(path, ".pem") || !license.ValidKeyID(kid) {
					return fmt.Errorf("%s: want a <kid>.pem file, named by the key's id", path)
				}
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				pub, err := license.ParsePublicKeyPEM(data)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				k := license.NewAnnouncedKey(kid, pub)
				k.NotBefore, k.NotAfter = window[0], window[1]
				announced = append(announced, k)
			}
			path, err := portalsim.Announce(dataDir, announced, e.now().UTC(), out)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, path)
			return err
		},
	}
	announce.Flags().StringArrayVar(&keyFiles, "key", nil, "public key `FILE` to announce, <kid>.pem (repeatable)")
	announce.Flags().StringVar(&notBefore, "not-before", "", "the keys are valid from `TIME` (RFC 3339)")
	announce.Flags().StringVar(&notAfter, "not-after", "", "the keys are valid until `TIME` (RFC 3339)")
	announce.Flags().StringVar(&out, "out", "", "write the announcement to `FILE` (default DIR/keyring/announce.jws)")
	keys.AddCommand(announce)
	keys.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Retire the signing key of a running portal and revoke it in every live PBX's licence",
		Long: "Retire the portal's signing key, as after a leak: a new key signs from now on and\n" +
			"joins the exported keyring, and every live PBX gets a licence revision revoking the\n" +
			"retired key, so its appliance refuses whatever that key signs from then on.\n" +
			"Appliances must trust the new key (their portal.keyring) before they can take it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := client().RotateKey(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "retired %s (revoked in %d licences: %s); signing with %s\n",
				r.Retired, len(r.PBXs), strings.Join(r.PBXs, ", "), r.Current)
			return err
		},
	})
	return keys
}
