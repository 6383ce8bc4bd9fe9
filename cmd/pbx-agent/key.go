package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/pkg/identity"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// maxKeySize bounds what is read as a key; real keys are under 2 KiB.
const maxKeySize = 64 << 10

func newKeyCmd(a *app) *cobra.Command {
	key := &cobra.Command{Use: "key", Short: "Work with PBX keys"}
	var keyFile string
	inspect := &cobra.Command{
		Use:   "inspect",
		Short: "Check a PBX key offline against the portal keyring",
		Long: "Reads a PBX key from standard input (or --key-file), checks its signature against portal.keyring,\n" +
			"its expiry and its model, and prints its PBX, model, term and user counts.\n" +
			"Exits 2 with the reason when the key is not valid.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.keyInspect(keyFile)
		},
	}
	inspect.Flags().StringVar(&keyFile, "key-file", "", "read the key from `FILE` instead of standard input")
	key.AddCommand(inspect)
	return key
}

// pastedKey loads the configuration, reads the key (stdin or keyFile) and
// the verifier that checks it: what every verb taking a key starts with.
func (a *app) pastedKey(keyFile string) (agent.Config, string, keyVerifier, error) {
	cfg, err := a.config()
	if err != nil {
		return agent.Config{}, "", keyVerifier{}, err
	}
	raw, err := a.readKey(keyFile)
	if err != nil {
		return agent.Config{}, "", keyVerifier{}, err
	}
	v, err := a.keyVerifier(cfg)
	return cfg, raw, v, err
}

func (a *app) keyInspect(keyFile string) error {
	_, raw, v, err := a.pastedKey(keyFile)
	if err != nil {
		return err
	}
	k, err := v.parse(raw)
	verified := k != nil
	if !verified {
		// Show what a key that fails its signature claims, marked as such:
		// "which PBX is this for?" is the first support question.
		if errors.Is(err, license.ErrUnknownSigner) || errors.Is(err, license.ErrBadSignature) {
			k, _ = license.DecodeKeyUnverified(raw)
		}
	}
	if k != nil {
		printKey(a.stdout, k, verified, err, v.check.Model, v.modelSource, v.check.Now)
	}
	if err != nil {
		return &codedError{code: exitError, err: err}
	}
	return nil
}

// keyVerifier is what a key is checked against on this appliance: the
// portal keyring, the local clock and the appliance's model. key inspect and
// activate share it.
type keyVerifier struct {
	keyring     *license.Keyring
	check       license.KeyCheck
	modelSource string // how the model was found, for people
}

func (a *app) keyVerifier(cfg agent.Config) (keyVerifier, error) {
	kr, err := license.LoadPortalKeyring(cfg.Portal.Keyring, time.Now().UTC())
	if err != nil {
		return keyVerifier{}, err
	}
	model, modelSource := a.applianceModel(cfg.Identity.Model)
	return keyVerifier{keyring: kr, check: license.KeyCheck{Now: time.Now().UTC(), Model: model}, modelSource: modelSource}, nil
}

func (v keyVerifier) parse(raw string) (*license.Key, error) {
	return license.ParseKey(raw, v.keyring, v.check)
}

// readKey reads the key from a file, or from stdin when file is "" or "-".
// The key never comes from argv, where other users could read it.
func (a *app) readKey(file string) (string, error) {
	var r io.Reader = a.stdin
	name := "standard input"
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("reading key: %w", err)
		}
		defer f.Close()
		r, name = f, file
	} else if f, ok := a.stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprintln(a.stderr, "Paste the PBX key, then press Ctrl-D:")
	}
	data, err := io.ReadAll(io.LimitReader(r, maxKeySize+1))
	if err != nil {
		return "", fmt.Errorf("reading key from %s: %w", name, err)
	}
	if len(data) > maxKeySize {
		return "", &codedError{code: exitError, err: fmt.Errorf("%s holds more than %d KiB: that is not a PBX key", name, maxKeySize>>10)}
	}
	return string(data), nil
}

// applianceModel returns the model keys are checked against: the
// identity.model override, or detection. Detection failing skips the check.
func (a *app) applianceModel(override string) (license.Model, string) {
	if override != "" {
		m, _ := license.ParseModel(override) // validated with the config
		return m, "identity.model"
	}
	m, err := identity.DetectModel("/")
	if err != nil {
		return "", "not detected: " + err.Error()
	}
	return m, "detected"
}

func printKey(w io.Writer, k *license.Key, verified bool, keyErr error, model license.Model, modelSource string, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if !verified {
		fmt.Fprintln(tw, "UNVERIFIED\tthe signature does not hold: nothing below can be trusted")
	}
	fmt.Fprintf(tw, "PBX\t%s (%s)\n", k.PBX.ID, k.PBX.Name)
	this := "not checked, " + modelSource
	if model != "" {
		this = fmt.Sprintf("this appliance: %s, %s", model, modelSource)
	}
	fmt.Fprintf(tw, "Model\t%s (%s)\n", k.PBX.Model, this)
	fmt.Fprintf(tw, "Term\t%s\n", k.Term)
	fmt.Fprintf(tw, "Users\t%s\n", formatCounts(k.Counts))
	fmt.Fprintf(tw, "Issued\t%s\n", k.IssuedAt.UTC().Format(time.RFC3339))
	// The key's expiry is its activation deadline, not the licence's: the
	// licence's term comes from the portal at activation.
	use := "the last time this key can activate the PBX; the licence's term is the portal's, shown by pbx-agent status once activated"
	if !now.Before(k.ExpiresAt) {
		use = "too late to activate with this key: copy a new PBX key from the portal"
	}
	fmt.Fprintf(tw, "Activate by\t%s (%s): %s\n", k.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"), license.Relative(k.ExpiresAt, now), use)
	if k.Portal != "" {
		fmt.Fprintf(tw, "Portal\t%s\n", k.Portal)
	}
	switch {
	case verified:
		fmt.Fprintf(tw, "Signature\tvalid, portal key %s\n", k.SignerKeyID)
	case errors.Is(keyErr, license.ErrUnknownSigner):
		fmt.Fprintln(tw, "Signature\tNOT TRUSTED: signed by a portal key this PBX does not trust")
	default:
		fmt.Fprintln(tw, "Signature\tINVALID: the content was altered after signing")
	}
	fmt.Fprintf(tw, "Verdict\t%s\n", verdict(keyErr))
	tw.Flush()
}

func verdict(err error) string {
	if err == nil {
		return "valid"
	}
	var e *license.Error
	if errors.As(err, &e) {
		return "NOT VALID: " + e.Kind.Error()
	}
	return "NOT VALID"
}

// formatCounts lists the licensed profiles in catalogue order, by their
// display names.
func formatCounts(c license.Counts) string {
	var parts []string
	for _, p := range license.Profiles() {
		if n := c[p.ID]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p.Name, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
