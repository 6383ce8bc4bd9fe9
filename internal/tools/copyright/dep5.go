package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// render writes the whole copyright file: the header as given, a Files
// paragraph for the standard library and each module, and a stand-alone
// License paragraph for each licence in common-licenses that a paragraph
// names without its text.
func render(header string, l linked, programs []string) (string, error) {
	var b strings.Builder
	b.WriteString(strings.TrimRight(header, "\n"))
	b.WriteString("\n")
	used := map[string]bool{}
	for _, line := range strings.Split(header, "\n") {
		if id, ok := strings.CutPrefix(line, "License: "); ok {
			used[strings.TrimSpace(id)] = true
		}
	}
	into := strings.Join(programs, ", ")

	std, err := readLicensing("the Go standard library", l.goroot)
	if err != nil {
		return "", err
	}
	writeFiles(&b, "GOROOT/src/*", std, fmt.Sprintf("The Go standard library and runtime, %s, compiled into %s.", l.goVersion, into), used)

	for _, m := range l.modules {
		dir, version := m.Dir, m.Version
		if m.Replace != nil {
			dir, version = m.Replace.Dir, m.Replace.Version
			if version == "" {
				version = "replaced by " + m.Replace.Path
			}
		}
		if dir == "" {
			return "", fmt.Errorf("%s %s is not in the module cache: run go mod download", m.Path, version)
		}
		lic, err := readLicensing(m.Path, dir)
		if err != nil {
			return "", err
		}
		if len(lic.copyrights) == 0 {
			lic.copyrights = []string{"The authors of " + m.Path}
		}
		writeFiles(&b, "vendor/"+filepath.ToSlash(m.Path)+"/*", lic, fmt.Sprintf("Go module %s %s, compiled into %s.", m.Path, version, into), used)
	}

	var common []string
	for id := range used {
		if _, ok := commonLicences[id]; ok {
			common = append(common, id)
		}
	}
	slices.Sort(common)
	for _, id := range common {
		fmt.Fprintf(&b, "\nLicense: %s\n", id)
		fmt.Fprintf(&b, " On Debian systems, the complete text of this licence can be found in\n \"/usr/share/common-licenses/%s\".\n", commonLicences[id])
	}
	return b.String(), nil
}

// writeFiles writes one Files paragraph. A licence in common-licenses is
// named alone (a stand-alone paragraph follows); any other comes with the
// module's own text, which holds its copyright holders and conditions.
func writeFiles(b *strings.Builder, files string, lic licensing, comment string, used map[string]bool) {
	fmt.Fprintf(b, "\nFiles: %s\n", files)
	fmt.Fprintf(b, "Copyright: %s\n", strings.Join(lic.copyrights, "\n "))
	fmt.Fprintf(b, "License: %s\n", strings.Join(lic.ids, " and "))
	if len(lic.texts) == 0 {
		for _, id := range lic.ids {
			used[id] = true
		}
	}
	for i, text := range lic.texts {
		if i > 0 {
			b.WriteString(" .\n")
		}
		b.WriteString(continuation(text))
	}
	fmt.Fprintf(b, "Comment: %s\n", comment)
}

// continuation formats text as the continuation lines of a field: each
// line after a space, an empty line as " .".
func continuation(text string) string {
	var b strings.Builder
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(text, "\r\n", "\n")), "\n")
	for _, line := range lines {
		line = strings.TrimRight(strings.ReplaceAll(line, "\t", "    "), " ")
		if line == "" {
			line = "."
		} else if line == "." {
			line = ".."
		}
		b.WriteString(" " + line + "\n")
	}
	return b.String()
}
