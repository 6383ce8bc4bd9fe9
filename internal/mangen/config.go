package mangen

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

// ConfigKey is one key of the configuration file as the commented default
// file documents it.
type ConfigKey struct {
	Key      string // dotted: users.sqlite.path
	Default  string // as written in the file; for an Example key, the example
	Example  bool   // commented out in the file: unset by default
	Doc      string // the comment lines above it and the comment after it
	IsParent bool   // a mapping of further keys (users.sqlite)
}

var (
	// keyLine is a key, maybe commented out ("  # url: https://..."); the
	// identifier right after "#" keeps prose comments ("# Without systemd's
	// targets: ...") from matching.
	keyLine = regexp.MustCompile(`^(\s*)(#\s*)?([a-z][a-z0-9_]*):(?:\s+(.*?))?\s*$`)
)

// ParseConfig reads the commented default configuration file: its
// leading comment (the file's description) and every key with its default
// and the comments that document it. The file is YAML whose comments are
// the documentation: a comment block documents the key below it, a
// comment after a value documents that key, and a commented-out key is one
// with no default, shown with its example value.
func ParseConfig(src string) (intro string, keys []ConfigKey, err error) {
	type level struct {
		indent int
		key    string
	}
	var stack []level
	var pending []string
	var introLines []string
	seenKey := false
	for n, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			if !seenKey && len(pending) > 0 {
				introLines = append(introLines, pending...)
				introLines = append(introLines, "")
				pending = nil
			}
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			if comment, ok := strings.CutPrefix(trimmed, "#"); ok {
				pending = append(pending, strings.TrimSpace(comment))
				continue
			}
			return "", nil, fmt.Errorf("line %d: %q is neither a key nor a comment (a list over several lines is not supported: write it inline)", n+1, trimmed)
		}
		indent, commented, name, rest := len(m[1]), m[2] != "", m[3], m[4]
		if commented && strings.HasPrefix(rest, "#") {
			rest = ""
		}
		value, lineDoc := rest, ""
		if strings.HasPrefix(rest, "#") {
			value, lineDoc = "", strings.TrimSpace(strings.TrimPrefix(rest, "#"))
		} else if i := commentStart(rest); i >= 0 {
			value, lineDoc = strings.TrimSpace(rest[:i]), strings.TrimSpace(rest[i+1:])
		}
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		var path []string
		for _, l := range stack {
			path = append(path, l.key)
		}
		path = append(path, name)
		doc := strings.Join(pending, " ")
		if lineDoc != "" {
			doc = strings.TrimSpace(doc + " " + lineDoc)
		}
		pending = nil
		seenKey = true
		k := ConfigKey{Key: strings.Join(path, "."), Default: value, Example: commented, Doc: doc}
		if value == "" && !commented {
			k.IsParent = true
			stack = append(stack, level{indent: indent, key: name})
		}
		keys = append(keys, k)
	}
	return strings.TrimSpace(strings.Join(introLines, "\n")), keys, nil
}

// commentStart is the index of the "#" that starts the comment after a
// value: one after whitespace and outside double quotes, so that "a # b"
// keeps its "#". It is -1 when there is no comment.
func commentStart(s string) int {
	for i := 1; i < len(s); i++ {
		if s[i] == '#' && (s[i-1] == ' ' || s[i-1] == '\t') && strings.Count(s[:i], `"`)%2 == 0 {
			return i
		}
	}
	return -1
}

// ConfigPage renders agent.yaml(5): page is its Markdown body (NAME to
// SEE ALSO) in which {{intro}} becomes the configuration file's leading
// comment and {{keys}} the list of every key it documents.
func ConfigPage(yamlSrc, page string, h Header) (Page, error) {
	intro, keys, err := ParseConfig(yamlSrc)
	if err != nil {
		return Page{}, fmt.Errorf("agent.yaml: %w", err)
	}
	for _, placeholder := range []string{"{{intro}}", "{{keys}}"} {
		if !strings.Contains(page, placeholder) {
			return Page{}, fmt.Errorf("the agent.yaml(5) page has no %s: put it where it belongs", placeholder)
		}
	}
	var introMD strings.Builder
	for _, para := range strings.Split(intro, "\n\n") {
		introMD.WriteString(escape(strings.ReplaceAll(para, "\n", " ")) + "\n\n")
	}
	var b strings.Builder
	for i, k := range keys {
		topLeaf := func(k ConfigKey) bool { return !k.IsParent && !strings.Contains(k.Key, ".") }
		if topLeaf(k) && (i == 0 || !topLeaf(keys[i-1])) {
			// Keys at the top level, between sections, get a heading
			// naming them, so they do not read as the section's above.
			var names []string
			for _, next := range keys[i:] {
				if !topLeaf(next) {
					break
				}
				names = append(names, next.Key)
			}
			fmt.Fprintf(&b, "### %s\n", escape(strings.Join(names, ", "))) // go-md2man: ### is .SS
		}
		if k.IsParent {
			if !strings.Contains(k.Key, ".") {
				fmt.Fprintf(&b, "### %s\n", k.Key)
			}
			if k.Doc != "" {
				fmt.Fprintf(&b, "%s\n\n", escape(k.Doc))
			}
			continue
		}
		term := "**" + escape(k.Key) + "**"
		switch {
		case k.Example:
			term += " (unset; e.g. " + code(k.Default) + ")"
		case k.Default != "":
			term += " (default " + code(k.Default) + ")"
		}
		if k.Doc == "" {
			// Documented with its neighbours, by the comment above them.
			fmt.Fprintf(&b, "%s\n\n", term)
			continue
		}
		fmt.Fprintf(&b, "%s\n: %s\n\n", term, escape(k.Doc))
	}
	body := strings.NewReplacer("{{intro}}", strings.TrimSpace(introMD.String()), "{{keys}}", strings.TrimSpace(b.String())).Replace(page)
	md := h.titleLine("AGENT.YAML", "5") + body
	return Page{Name: "agent.yaml", Section: "5", Roff: md2man.Render([]byte(md))}, nil
}

// code shows a value as written in the file.
func code(v string) string {
	return "`" + strings.ReplaceAll(v, "`", "'") + "`"
}

var markdownSpecial = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `_`, `\_`, `[`, `\[`, `]`, `\]`, `<`, `\<`, `>`, `\>`)

// escape keeps comment text literal in Markdown, except `code spans`,
// which the comments use for commands.
func escape(s string) string {
	parts := strings.Split(s, "`")
	for i := 0; i < len(parts); i += 2 {
		parts[i] = markdownSpecial.Replace(parts[i])
	}
	return strings.Join(parts, "`")
}
