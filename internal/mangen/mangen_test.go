package mangen

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func testTree() *cobra.Command {
	root := &cobra.Command{Use: "tool", Short: "A tool", Long: "tool does things."}
	root.PersistentFlags().String("config", "/etc/tool.yaml", "configuration `FILE`")
	status := &cobra.Command{Use: "status", Short: "Show the state", Run: func(*cobra.Command, []string) {}}
	status.Flags().Bool("json", false, "print JSON")
	hidden := &cobra.Command{Use: "secret", Short: "Not for users", Hidden: true, Run: func(*cobra.Command, []string) {}}
	ssh := &cobra.Command{Use: "ssh", Short: "Support access"}
	ssh.AddCommand(&cobra.Command{Use: "close", Short: "Close it", Run: func(*cobra.Command, []string) {}})
	root.AddCommand(status, hidden, ssh)
	return root
}

var testHeader = Header{Date: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), Source: "tool 1.2.3", Manual: "tool manual"}

const testShared = "# EXIT STATUS\n**0**\n: Success.\n\n# ENVIRONMENT\n**TOOL_KEY**\n: Sets a key.\n\n# FILES\n*/etc/tool.yaml*\n: The configuration.\n"

func TestCommandPages(t *testing.T) {
	pages := CommandPages(testTree(), testHeader, testShared, []string{"tool.yaml(5)"})
	var names []string
	for _, p := range pages {
		names = append(names, p.File())
	}
	if want := []string{"tool.1", "tool-ssh.1", "tool-ssh-close.1", "tool-status.1"}; !slices.Equal(names, want) {
		t.Fatalf("pages = %q, want %q (hidden verbs left out)", names, want)
	}
	for _, p := range pages {
		roff := string(p.Roff)
		// The sections in the order of man-pages(7).
		last := -1
		for _, section := range []string{".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH EXIT STATUS", ".SH ENVIRONMENT", ".SH FILES", ".SH SEE ALSO"} {
			i := strings.Index(roff, section)
			if i < 0 || i < last {
				t.Errorf("%s: %q missing or out of order:\n%s", p.File(), section, roff)
			}
			last = i
		}
		if !strings.Contains(roff, `.TH "`+strings.ToUpper(p.Name)+`" "1" "2026-12-05" "tool 1.2.3" "tool manual"`) {
			t.Errorf("%s: no title line with the build's date and version:\n%s", p.File(), roff)
		}
		if !strings.Contains(roff, `\fBtool.yaml\fP(5)`) {
			t.Errorf("%s: SEE ALSO lacks tool.yaml(5)", p.File())
		}
		if strings.Contains(roff, "secret") {
			t.Errorf("%s names the hidden verb", p.File())
		}
	}
	status := string(pages[3].Roff)
	for _, want := range []string{`\fB--json\fP[=false]`, ".SH OPTIONS INHERITED FROM PARENT COMMANDS", `\fB--config\fP="/etc/tool.yaml"`, `\fBtool\fP(1)`} {
		if !strings.Contains(status, want) {
			t.Errorf("tool-status.1 lacks %q:\n%s", want, status)
		}
	}
}

// TestPagesFormatCleanly renders every page with groff, warnings on, as
// man(1) and lintian do: the Markdown must not leave broken roff.
func TestPagesFormatCleanly(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff is not installed (apt-get install groff-base)")
	}
	pages := CommandPages(testTree(), testHeader, testShared, []string{"tool.yaml(5)"})
	cfg, err := ConfigPage("# Intro.\n\nportal:\n  url: \"\"  # where * and _ stay literal: [x] <y>\n", "# NAME\ntool.yaml \\- c\n\n# DESCRIPTION\n{{intro}}\n\n# KEYS\n{{keys}}\n", testHeader)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(pages, cfg) {
		var stderr bytes.Buffer
		cmd := exec.Command("groff", "-man", "-ww", "-z", "-Tutf8")
		cmd.Stdin, cmd.Stderr = bytes.NewReader(p.Roff), &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("%s: groff: %v %s\n%s", p.File(), err, stderr.String(), p.Roff)
		}
	}
	if out, err := exec.Command("sh", "-c", "printf '%s' \"$0\" | groff -man -Tutf8 -P-c 2>/dev/null", string(cfg.Roff)).Output(); err != nil || !strings.Contains(string(out), "where * and _ stay literal: [x] <y>") {
		t.Errorf("agent.yaml(5) renders the comment as %q (%v), want it literal", out, err)
	}
}
