package wms

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// AptListsDir is where apt keeps the package lists it fetched and
// verified against the source's Signed-By keys.
const AptListsDir = "/var/lib/apt/lists"

// Source is the configured WMS repository (upgrade.repo_url, repo_suite,
// repo_components); {repository} in the URL or suite stands for any relNN.
type Source struct {
	URL        string
	Suite      string
	Components []string
	Package    string
}

// Latest is the latest stable WMS a repository offers.
type Latest struct {
	Version Version
	File    string // the apt list it was read from
}

// LatestStable reads apt's package lists of src in dir and returns the
// highest stable version of src.Package: a Version: whose text parses as
// major.minor.YYYYMMDD.build. Anything else (7.03.20250701.1~rc1, 7.03-beta)
// is a pre-release or not a release, and is skipped. Only lists apt already
// fetched and verified are read: nothing is downloaded here, so the answer
// is as fresh as the last apt-get update of that source.
func LatestStable(dir string, src Source) (Latest, error) {
	if src.URL == "" {
		return Latest{}, errors.New("no WMS repository configured: set upgrade.repo_url")
	}
	re, err := listPattern(src)
	if err != nil {
		return Latest{}, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Latest{}, fmt.Errorf("reading apt's package lists: %w", err)
	}
	var best Latest
	lists := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !re.MatchString(e.Name()) {
			continue
		}
		lists++
		path := filepath.Join(dir, e.Name())
		v, err := latestInList(path, src.Package)
		if err != nil {
			return Latest{}, err
		}
		if !v.IsZero() && (best.Version.IsZero() || v.Compare(best.Version) > 0) {
			best = Latest{Version: v, File: path}
		}
	}
	switch {
	case lists == 0:
		return Latest{}, fmt.Errorf("apt has no package list of %s %s in %s: run apt-get update", src.URL, src.Suite, dir)
	case best.Version.IsZero():
		return Latest{}, fmt.Errorf("the package lists of %s %s hold no stable version of %s", src.URL, src.Suite, src.Package)
	}
	return best, nil
}

// latestInList returns the highest stable version of pkg in one
// Packages file, the zero Version when there is none.
func latestInList(path, pkg string) (Version, error) {
	f, err := os.Open(path)
	if err != nil {
		return Version{}, fmt.Errorf("reading apt's package list: %w", err)
	}
	defer f.Close()
	var best Version
	var name, version string
	flush := func() {
		if name == pkg {
			if v, err := ParseVersion(version); err == nil && (best.IsZero() || v.Compare(best) > 0) {
				best = v
			}
		}
		name, version = "", ""
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			flush()
		case strings.HasPrefix(line, "Package:"):
			name = strings.TrimSpace(strings.TrimPrefix(line, "Package:"))
		case strings.HasPrefix(line, "Version:"):
			version = strings.TrimSpace(strings.TrimPrefix(line, "Version:"))
		}
	}
	if err := sc.Err(); err != nil {
		return Version{}, fmt.Errorf("reading apt's package list %s: %w", path, err)
	}
	flush()
	return best, nil
}

// listPattern is the names apt gives the Packages lists of src
// (apt-pkg's URItoFileName: the URI without its scheme, some characters
// %-escaped, "/" as "_"), {repository} matching any relNN.
func listPattern(src Source) (*regexp.Regexp, error) {
	uri := src.URL
	if i := strings.Index(uri, "://"); i >= 0 {
		uri = uri[i+3:]
	} else {
		return nil, fmt.Errorf("upgrade.repo_url %q has no scheme (want https://…)", src.URL)
	}
	if at := strings.LastIndex(strings.SplitN(uri, "/", 2)[0], "@"); at >= 0 {
		uri = uri[at+1:]
	}
	uri = strings.TrimSuffix(uri, "/") + "/"
	var paths []string
	if strings.HasSuffix(src.Suite, "/") {
		paths = []string{uri + src.Suite + "Packages"}
	} else {
		for _, c := range src.Components {
			paths = append(paths, uri+"dists/"+src.Suite+"/"+c+"/binary-\x01/Packages")
		}
		if len(paths) == 0 {
			return nil, errors.New("upgrade.repo_components is empty for a suite that is not flat")
		}
	}
	var alts []string
	for _, p := range paths {
		p = strings.ReplaceAll(p, "{repository}", "\x00")
		p = strings.ReplaceAll(p, "/./", "/\x02") // a flat "./" suite: with or without the "._" apt may keep
		q := strings.ReplaceAll(aptQuote(p), "/", "_")
		q = regexp.QuoteMeta(q)
		q = strings.ReplaceAll(q, "\x00", "rel[0-9]{2}")
		q = strings.ReplaceAll(q, "\x01", "[a-z0-9]+")
		q = strings.ReplaceAll(q, "\x02", `(?:\._)?`)
		alts = append(alts, q)
	}
	return regexp.Compile("^(?:" + strings.Join(alts, "|") + ")$")
}

// aptQuote is apt-pkg's QuoteString with URItoFileName's set of bad
// characters; the placeholders \x00 to \x02 pass through.
func aptQuote(s string) string {
	const bad = "\\|{}[]<>\"^~_=!@#$%^&*"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > 0x02 && (c <= 0x20 || c >= 0x7f || strings.IndexByte(bad, c) >= 0) {
			fmt.Fprintf(&b, "%%%02x", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
