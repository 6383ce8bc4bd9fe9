//go:build docgen

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/mangen"
)

// docCommands is the `docs` verb of the documentation build only:
//
//	go run -tags docgen ./cmd/pbx-agent docs --version V DIR
//
// The daemon leaves the man page generator out (docs_off.go).
func docCommands(a *app) []*cobra.Command { return []*cobra.Command{newDocsCmd(a)} }

func newDocsCmd(a *app) *cobra.Command {
	var version, shared, configYAML, configPage string
	cmd := &cobra.Command{
		Use:   "docs DIR",
		Short: "Write the manual pages and shell completions into DIR",
		Long: `Write the manual pages (DIR/man1, DIR/man5) and the shell completions
(DIR/completions) the package ships. Pages are dated by SOURCE_DATE_EPOCH
when it is set, so that two builds of one commit are identical.`,
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			date, err := buildDate()
			if err != nil {
				return err
			}
			h := mangen.Header{Date: date, Source: strings.TrimSpace("pbx-agent " + version), Manual: "pbx-agent manual"}
			sharedSrc, err := os.ReadFile(shared)
			if err != nil {
				return err
			}
			yamlSrc, err := os.ReadFile(configYAML)
			if err != nil {
				return err
			}
			pageSrc, err := os.ReadFile(configPage)
			if err != nil {
				return err
			}
			// The verbs that run with an exit code of their own document it
			// in their Long text; the codes they share are in every page.
			a.root.DisableAutoGenTag = true
			pages := mangen.CommandPages(a.root, h, string(sharedSrc), []string{"agent.yaml(5)"})
			cfg, err := mangen.ConfigPage(string(yamlSrc), string(pageSrc), h)
			if err != nil {
				return err
			}
			if err := mangen.Write(filepath.Join(args[0], "man1"), pages); err != nil {
				return err
			}
			if err := mangen.Write(filepath.Join(args[0], "man5"), []mangen.Page{cfg}); err != nil {
				return err
			}
			return writeCompletions(a.root, filepath.Join(args[0], "completions"))
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "package `VERSION` the pages name")
	cmd.Flags().StringVar(&shared, "shared", "docs/man/pbx-agent.md", "`FILE` of the sections every command page carries (Markdown)")
	cmd.Flags().StringVar(&configYAML, "config-yaml", "packaging/agent.yaml", "commented default configuration `FILE` documenting every key")
	cmd.Flags().StringVar(&configPage, "config-page", "docs/man/agent.yaml.5.md", "agent.yaml(5) page `FILE` (Markdown, with {{intro}} and {{keys}})")
	return cmd
}

// buildDate is SOURCE_DATE_EPOCH (reproducible builds), else now.
func buildDate() (time.Time, error) {
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		return time.Now(), nil
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds: %w", epoch, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func writeCompletions(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, gen := range map[string]func(*os.File) error{
		"pbx-agent.bash": func(f *os.File) error { return root.GenBashCompletionV2(f, true) },
		"_pbx-agent":     func(f *os.File) error { return root.GenZshCompletion(f) },
		"pbx-agent.fish": func(f *os.File) error { return root.GenFishCompletion(f, true) },
	} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = gen(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}
