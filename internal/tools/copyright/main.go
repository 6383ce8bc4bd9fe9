// Command copyright writes the Debian copyright file (machine-readable
// format, DEP-5) of the package: a hand-written header for the project's own
// files, then a paragraph for each Go module the given main packages link
// and one for the Go standard library, each with the licence identified in
// the module's licence files, then the stand-alone licence paragraphs.
//
//	go run ./internal/tools/copyright -header packaging/copyright.header ./cmd/pbx-agent
//
// A module whose licence it cannot tell fails the run, naming the module and
// its files: add the licence's marker to licence.go rather than write the
// file by hand.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

func main() {
	header := flag.String("header", "packaging/copyright.header", "`FILE` holding the header and the project's own paragraphs")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: copyright [-header FILE] MAIN_PACKAGE...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(context.Background(), *header, flag.Args(), os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "copyright: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, headerPath string, pkgs []string, out io.Writer) error {
	header, err := os.ReadFile(headerPath)
	if err != nil {
		return fmt.Errorf("reading the header: %w", err)
	}
	linked, err := listLinked(ctx, "", pkgs)
	if err != nil {
		return err
	}
	var programs []string
	for _, p := range pkgs {
		programs = append(programs, path.Base(p))
	}
	doc, err := render(string(header), linked, programs)
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, doc)
	return err
}

// module is a Go module as `go list -json` describes it.
type module struct {
	Path    string
	Version string
	Dir     string
	Main    bool
	Replace *module
}

// linked is what a set of main packages compiles in.
type linked struct {
	goroot    string // the standard library's licence is GOROOT/LICENSE
	goVersion string
	modules   []module // sorted by path; the main module left out
}

// listLinked asks `go list -deps` for the modules of pkgs, run in dir ("" is
// the current folder).
func listLinked(ctx context.Context, dir string, pkgs []string) (linked, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, goCommand(), append([]string{"list", "-deps", "-json=ImportPath,Standard,Module"}, pkgs...)...)
	cmd.Dir, cmd.Stderr = dir, &stderr
	// The module graph of the target platform, as `make deb` builds it.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	stdout, err := cmd.Output()
	if err != nil {
		return linked{}, fmt.Errorf("go list -deps %s: %w: %s", strings.Join(pkgs, " "), err, stderr.String())
	}
	var l linked
	seen := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(stdout))
	for {
		var p struct {
			ImportPath string
			Standard   bool
			Module     *module
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return linked{}, fmt.Errorf("reading go list's output: %w", err)
		}
		if p.Module == nil || p.Module.Main || seen[p.Module.Path] {
			continue
		}
		seen[p.Module.Path] = true
		l.modules = append(l.modules, *p.Module)
	}
	slices.SortFunc(l.modules, func(a, b module) int { return strings.Compare(a.Path, b.Path) })

	env, err := exec.CommandContext(ctx, goCommand(), "env", "GOROOT", "GOVERSION").Output()
	if err != nil {
		return linked{}, fmt.Errorf("go env: %w", err)
	}
	fields := strings.Fields(string(env))
	if len(fields) != 2 {
		return linked{}, fmt.Errorf("go env GOROOT GOVERSION printed %q", env)
	}
	l.goroot, l.goVersion = fields[0], fields[1]
	return l, nil
}

// goCommand is the go that builds the package: $GO as the Makefile sets it,
// else go on PATH.
func goCommand() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// licenceFile names the files a module's licence may be in.
var licenceFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying)([-._].*)?$`)

// licensing is what the licence files of one source tree say.
type licensing struct {
	ids        []string // SPDX identifiers, sorted
	copyrights []string
	texts      []string // the licence files' texts, for licences not in common-licenses
}

// readLicensing identifies the licences of the files at the top of dir.
// A file that names no known licence is skipped (modernc.org/memory's
// LICENSE-LOGO is a link to an image) unless no file names one.
func readLicensing(name, dir string) (licensing, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return licensing{}, fmt.Errorf("%s: %w", name, err)
	}
	var lic licensing
	var files, notices []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		isLicence := licenceFile.MatchString(e.Name())
		isNotice := strings.EqualFold(strings.TrimSuffix(e.Name(), path.Ext(e.Name())), "NOTICE")
		if !isLicence && !isNotice {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return licensing{}, fmt.Errorf("%s: %w", name, err)
		}
		text := string(b)
		if isNotice {
			notices = append(notices, text)
			continue
		}
		files = append(files, e.Name())
		ids := identify(text)
		if len(ids) == 0 {
			continue
		}
		for _, id := range ids {
			if !slices.Contains(lic.ids, id) {
				lic.ids = append(lic.ids, id)
			}
		}
		if !allCommon(ids) {
			lic.texts = append(lic.texts, elideCommon(text))
		}
		lic.copyrights = append(lic.copyrights, copyrights(text)...)
	}
	if len(lic.ids) == 0 {
		if len(files) == 0 {
			return licensing{}, fmt.Errorf("%s: no licence file (LICENSE, COPYING) in %s", name, dir)
		}
		return licensing{}, fmt.Errorf("%s: no known licence in %s (%s): add its marker to internal/tools/copyright/licence.go",
			name, dir, strings.Join(files, ", "))
	}
	slices.Sort(lic.ids)
	for _, c := range copyrights(notices...) {
		if !slices.Contains(lic.copyrights, c) {
			lic.copyrights = append(lic.copyrights, c)
		}
	}
	return lic, nil
}

func allCommon(ids []string) bool {
	for _, id := range ids {
		if _, ok := commonLicences[id]; !ok {
			return false
		}
	}
	return true
}
