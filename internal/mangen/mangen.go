// Package mangen writes the manual pages of pbx-agent at build time: one
// page per verb from the cobra command tree, each with the sections every
// verb shares (EXIT STATUS, ENVIRONMENT, FILES), and agent.yaml(5) from the
// commented default configuration. Pages are Markdown rendered to roff by
// go-md2man, as cobra's own generator does. It is linked into the
// documentation build only (`go run -tags docgen ./cmd/pbx-agent docs`),
// never into the daemon.
package mangen

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Page is one manual page.
type Page struct {
	Name    string // pbx-agent-status
	Section string // 1
	Roff    []byte
}

// File is the page's file name, pbx-agent-status.1.
func (p Page) File() string { return p.Name + "." + p.Section }

// Header is what every page's title line carries.
type Header struct {
	Date   time.Time // the build's: SOURCE_DATE_EPOCH, for identical builds
	Source string    // "pbx-agent 1.2.3"
	Manual string    // "pbx-agent manual"
}

// titleLine is the Markdown title block go-md2man turns into .TH.
func (h Header) titleLine(title, section string) string {
	return fmt.Sprintf("%% %q %q %q %q %q\n", title, section, h.Date.UTC().Format("2006-01-02"), h.Source, h.Manual)
}

// CommandPages renders a section 1 page for root and each available verb
// under it. shared is Markdown sections ("# EXIT STATUS" ...) put in every
// page before SEE ALSO; seeAlso names pages every page refers to, such as
// "agent.yaml(5)".
func CommandPages(root *cobra.Command, h Header, shared string, seeAlso []string) []Page {
	var pages []Page
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		pages = append(pages, commandPage(c, h, shared, seeAlso))
		for _, child := range availableChildren(c) {
			walk(child)
		}
	}
	walk(root)
	return pages
}

func availableChildren(c *cobra.Command) []*cobra.Command {
	var children []*cobra.Command
	for _, child := range c.Commands() {
		if child.IsAvailableCommand() && !child.IsAdditionalHelpTopicCommand() {
			children = append(children, child)
		}
	}
	slices.SortFunc(children, func(a, b *cobra.Command) int { return strings.Compare(a.Name(), b.Name()) })
	return children
}

func commandPage(c *cobra.Command, h Header, shared string, seeAlso []string) Page {
	c.InitDefaultHelpFlag()
	name := strings.ReplaceAll(c.CommandPath(), " ", "-")
	var b strings.Builder
	b.WriteString(h.titleLine(strings.ToUpper(name), "1"))
	fmt.Fprintf(&b, "# NAME\n%s \\- %s\n\n", name, c.Short)
	fmt.Fprintf(&b, "# SYNOPSIS\n**%s**\n\n", c.UseLine())
	description := c.Long
	if description == "" {
		description = c.Short
	}
	fmt.Fprintf(&b, "# DESCRIPTION\n%s\n\n", description)
	if children := availableChildren(c); len(children) > 0 {
		b.WriteString("# COMMANDS\n")
		for _, child := range children {
			fmt.Fprintf(&b, "**%s**\n: %s (**%s-%s**(1))\n\n", child.Name(), child.Short, name, child.Name())
		}
	}
	writeFlags(&b, "OPTIONS", c.NonInheritedFlags())
	writeFlags(&b, "OPTIONS INHERITED FROM PARENT COMMANDS", c.InheritedFlags())
	if c.Example != "" {
		fmt.Fprintf(&b, "# EXAMPLE\n```\n%s\n```\n\n", c.Example)
	}
	b.WriteString(strings.TrimSpace(shared) + "\n\n")

	var refs []string
	if c.HasParent() {
		refs = append(refs, fmt.Sprintf("**%s**(1)", strings.ReplaceAll(c.Parent().CommandPath(), " ", "-")))
	}
	for _, child := range availableChildren(c) {
		refs = append(refs, fmt.Sprintf("**%s-%s**(1)", name, child.Name()))
	}
	for _, ref := range seeAlso {
		page, section, _ := strings.Cut(strings.TrimSuffix(ref, ")"), "(")
		refs = append(refs, fmt.Sprintf("**%s**(%s)", page, section))
	}
	fmt.Fprintf(&b, "# SEE ALSO\n%s\n", strings.Join(refs, ", "))
	return Page{Name: name, Section: "1", Roff: md2man.Render([]byte(b.String()))}
}

// writeFlags lists flags as cobra's pages do: **--name**="default" and
// the usage indented below.
func writeFlags(b *strings.Builder, title string, flags *pflag.FlagSet) {
	if !flags.HasAvailableFlags() {
		return
	}
	fmt.Fprintf(b, "# %s\n", title)
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Deprecated != "" {
			return
		}
		name := "**--" + f.Name + "**"
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			name = "**-" + f.Shorthand + "**, " + name
		}
		value := f.DefValue
		if f.Value.Type() == "string" {
			value = fmt.Sprintf("%q", value)
		}
		if f.NoOptDefVal != "" {
			fmt.Fprintf(b, "%s[=%s]\n: %s\n\n", name, value, f.Usage)
		} else {
			fmt.Fprintf(b, "%s=%s\n: %s\n\n", name, value, f.Usage)
		}
	})
}

// Write writes pages into dir, creating it.
func Write(dir string, pages []Page) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing manual pages: %w", err)
	}
	for _, p := range pages {
		if err := os.WriteFile(filepath.Join(dir, p.File()), p.Roff, 0o644); err != nil {
			return fmt.Errorf("writing manual pages: %w", err)
		}
	}
	return nil
}
