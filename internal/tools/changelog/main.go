// Command changelog turns packaging/changelog.md, the changes written for
// the admins of PBXs, into the package's Debian changelog:
//
//	changelog -version 1.2.3+git4.gabcdef12 packaging/changelog.md
//
// Each "## VERSION (YYYY-MM-DD)" section is a release; "## Unreleased"
// holds what the next release will bring. A build of a released version
// starts at that release's entry; any other build gets an entry of its own,
// with the unreleased changes, dated by SOURCE_DATE_EPOCH so that two
// builds of one commit are identical.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const defaultMaintainer = "pbx-agent developers <dev@pbx-agent.invalid>"

func main() {
	version := flag.String("version", "", "package `VERSION` being built")
	maintainer := flag.String("maintainer", defaultMaintainer, "the entries' `NAME <EMAIL>`")
	flag.Parse()
	if *version == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: changelog -version VERSION packaging/changelog.md")
		os.Exit(2)
	}
	if err := run(*version, *maintainer, flag.Arg(0), os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "changelog: %v\n", err)
		os.Exit(1)
	}
}

func run(version, maintainer, path string, out io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	releases, unreleased, err := parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	built, err := buildTime()
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, render(version, maintainer, built, releases, unreleased))
	return err
}

// buildTime is SOURCE_DATE_EPOCH, else now.
func buildTime() (time.Time, error) {
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		return time.Now().UTC(), nil
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds: %w", epoch, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// release is one "## VERSION (DATE)" section.
type release struct {
	version string
	date    time.Time
	items   []string
}

var (
	releaseHeading = regexp.MustCompile(`^## ([0-9][A-Za-z0-9.+~]*) \((\d{4}-\d{2}-\d{2})\)$`)
	itemStart      = regexp.MustCompile(`^[-*] (.*)$`)
)

// parse reads the sections, newest first. Text before the first section
// (the file's own introduction) is not part of any entry.
func parse(r io.Reader) (releases []release, unreleased []string, err error) {
	sc := bufio.NewScanner(r)
	var cur *[]string // the items of the section being read
	seenUnreleased := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t")
		switch {
		case line == "## Unreleased":
			if seenUnreleased || len(releases) > 0 {
				return nil, nil, fmt.Errorf("line %d: one \"## Unreleased\" section, above every release", n)
			}
			seenUnreleased, cur = true, &unreleased
		case strings.HasPrefix(line, "## "):
			m := releaseHeading.FindStringSubmatch(line)
			if m == nil {
				return nil, nil, fmt.Errorf("line %d: %q: a section is \"## Unreleased\" or \"## VERSION (YYYY-MM-DD)\"", n, line)
			}
			date, err := time.Parse(time.DateOnly, m[2])
			if err != nil {
				return nil, nil, fmt.Errorf("line %d: %w", n, err)
			}
			releases = append(releases, release{version: m[1], date: date})
			cur = &releases[len(releases)-1].items
		case cur == nil || line == "" || strings.HasPrefix(line, "<!--"):
		case itemStart.MatchString(line):
			*cur = append(*cur, itemStart.FindStringSubmatch(line)[1])
		case strings.HasPrefix(line, "  ") && len(*cur) > 0:
			(*cur)[len(*cur)-1] += " " + strings.TrimSpace(line)
		default:
			return nil, nil, fmt.Errorf("line %d: %q: write each change as a list item (\"- ...\"), continued by indented lines", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	for _, rel := range releases {
		if len(rel.items) == 0 {
			return nil, nil, fmt.Errorf("release %s lists no change", rel.version)
		}
	}
	if len(releases) == 0 && !seenUnreleased {
		return nil, nil, errors.New("no section: add \"## Unreleased\" with the changes")
	}
	return releases, unreleased, nil
}

// render writes the Debian changelog for a build of version.
func render(version, maintainer string, built time.Time, releases []release, unreleased []string) string {
	var b strings.Builder
	for i, rel := range releases {
		if rel.version == version {
			// A release build: its entry is the first.
			writeEntries(&b, maintainer, releases[i:])
			return b.String()
		}
	}
	items := unreleased
	if len(items) == 0 {
		since := "the first release"
		if len(releases) > 0 {
			since = releases[0].version
		}
		items = []string{"A development build: no change for admins since " + since + "."}
	}
	writeEntries(&b, maintainer, append([]release{{version: version, date: built, items: items}}, releases...))
	return b.String()
}

func writeEntries(b *strings.Builder, maintainer string, entries []release) {
	for i, e := range entries {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(b, "pbx-agent (%s) unstable; urgency=medium\n\n", e.version)
		for _, item := range e.items {
			b.WriteString(wrap(item, "  * ", "    ", 80))
		}
		fmt.Fprintf(b, "\n -- %s  %s\n", maintainer, e.date.UTC().Format(time.RFC1123Z))
	}
}

// wrap fills text into lines of at most width columns (a longer word
// stands alone), the first after first and the others after rest.
func wrap(text, first, rest string, width int) string {
	var b strings.Builder
	line := first
	empty := true
	for _, word := range strings.Fields(text) {
		if !empty && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line, empty = rest, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	b.WriteString(line + "\n")
	return b.String()
}
