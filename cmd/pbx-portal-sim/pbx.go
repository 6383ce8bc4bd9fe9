package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func newPBXCmd(stdout io.Writer) *cobra.Command {
	pbx := &cobra.Command{Use: "pbx", Short: "Manage PBXs"}
	var (
		dataDir, name, model, term string
		users                      []string
		keyTTL                     time.Duration
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a PBX and print its PBX key alone on standard output",
		Long: "Create a PBX and print its PBX key alone on standard output.\n" +
			"The key is signed with the simulator's key in --data, made on first use\n" +
			"with its public keyring in DATA/keyring/ for agents to trust.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			m, err := license.ParseModel(model)
			if err != nil {
				return err
			}
			t, err := license.ParseTerm(term)
			if err != nil {
				return err
			}
			counts, err := parseUsers(users)
			if err != nil {
				return err
			}
			if name == "" {
				return errors.New("--name is required: the PBX's domain name")
			}
			s, err := openSigner(dataDir)
			if err != nil {
				return err
			}
			now := time.Now().UTC().Truncate(time.Second)
			key, err := s.Sign(license.TypeKey, license.Key{
				Version:   license.KeyVersion,
				ID:        "key-" + randomHex(8),
				PBX:       license.PBX{ID: "pbx-" + randomHex(6), Name: name, Model: m},
				Term:      t,
				Counts:    counts,
				IssuedAt:  now,
				ExpiresAt: now.Add(keyTTL),
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, key)
			return err
		},
	}
	f := create.Flags()
	f.StringVar(&dataDir, "data", "portal-data", "simulator data `DIR`")
	f.StringVar(&name, "name", "", "PBX domain `NAME`")
	f.StringVar(&model, "model", string(license.ModelVM), "`MODEL`: WPBX-HW or WPBX-VM")
	f.StringVar(&term, "term", string(license.Monthly), "billing `TERM`: monthly, yearly or lifetime")
	f.StringArrayVar(&users, "users", nil, "users of a profile, `PROFILE=COUNT` (repeatable)")
	f.DurationVar(&keyTTL, "key-ttl", 30*24*time.Hour, "how long the key may be used to activate")
	pbx.AddCommand(create)
	return pbx
}

// parseUsers reads PROFILE=COUNT pairs; a later pair for a profile wins.
func parseUsers(pairs []string) (license.Counts, error) {
	counts := license.Counts{}
	for _, pair := range pairs {
		for _, item := range strings.Split(pair, ",") {
			id, n, ok := strings.Cut(item, "=")
			if !ok {
				return nil, fmt.Errorf("--users %q: want PROFILE=COUNT, e.g. uc-premium=10", item)
			}
			p, err := license.ParseProfile(id)
			if err != nil {
				return nil, fmt.Errorf("--users %q: %w", item, err)
			}
			count, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil || count < 0 {
				return nil, fmt.Errorf("--users %q: the count must be a whole number, 0 or more", item)
			}
			counts[p] = count
		}
	}
	return counts, nil
}
