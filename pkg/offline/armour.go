package offline

import (
	"fmt"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Kinds of armoured file: the words of its BEGIN and END lines.
const (
	KindRequest = "PBX OFFLINE ACTIVATION REQUEST"
	KindLicence = "PBX OFFLINE LICENCE"
	KindReport  = "PBX OFFLINE USAGE REPORT"
)

// armourWidth is the width of the signed text's lines: short enough for
// a mail client or a terminal not to wrap them again.
const armourWidth = 64

// Header is one informative "Name: value" line of an armoured file. It is
// not signed: a reader shows it to people and never acts on it.
type Header struct{ Name, Value string }

// Armour wraps a signed file in a PEM-like block that survives being
// copied by hand, pasted into mail or printed: BEGIN and END lines naming
// the kind, informative headers, and the compact JWS in short lines.
func Armour(kind string, headers []Header, compact string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-----BEGIN %s-----\n", kind)
	for _, h := range headers {
		v := strings.Join(strings.Fields(h.Value), " ") // one line, whatever it held
		fmt.Fprintf(&b, "%s: %s\n", h.Name, v)
	}
	if len(headers) > 0 {
		b.WriteString("\n")
	}
	for len(compact) > armourWidth {
		b.WriteString(compact[:armourWidth] + "\n")
		compact = compact[armourWidth:]
	}
	b.WriteString(compact + "\n")
	fmt.Fprintf(&b, "-----END %s-----\n", kind)
	return b.String()
}

// Unarmour returns the compact JWS of a file of the given kind: an
// armoured block (text around it, as in a mail, is ignored; headers are
// skipped; line breaks, indentation and "> " quoting are undone) or the
// bare compact form. A block of another kind is refused naming it.
func Unarmour(text, kind string) (string, error) {
	doc := docOfKind(kind)
	begin := strings.Index(text, "-----BEGIN ")
	if begin < 0 {
		s := license.NormalizeKey(text)
		if s == "" {
			return "", &license.Error{Doc: doc, Kind: license.ErrTruncated, Detail: "the input is empty"}
		}
		return s, nil
	}
	rest := text[begin+len("-----BEGIN "):]
	eol := strings.Index(rest, "-----")
	if eol < 0 {
		return "", &license.Error{Doc: doc, Kind: license.ErrCorrupted, Detail: "its BEGIN line does not end with -----"}
	}
	got := rest[:eol]
	if got != kind {
		return "", &license.Error{Doc: doc, Kind: license.ErrWrongType,
			Detail: fmt.Sprintf("this is a %q block, not a %q", got, kind)}
	}
	body := rest[eol+len("-----"):]
	end := strings.Index(body, "-----END "+kind+"-----")
	if end < 0 {
		return "", &license.Error{Doc: doc, Kind: license.ErrTruncated, Detail: "it stops before its END line",
			Fix: "copy the whole block, from its BEGIN line to its END line"}
	}
	var sig strings.Builder
	for _, line := range strings.Split(body[:end], "\n") {
		line = strings.TrimSpace(line)
		for strings.HasPrefix(line, ">") { // quoted in a mail reply
			line = strings.TrimSpace(line[1:])
		}
		if strings.Contains(line, ": ") { // an informative header
			continue
		}
		sig.WriteString(line)
	}
	s := license.NormalizeKey(sig.String())
	if s == "" {
		return "", &license.Error{Doc: doc, Kind: license.ErrTruncated, Detail: "the block is empty"}
	}
	return s, nil
}

func docOfKind(kind string) string {
	switch kind {
	case KindRequest:
		return docRequest
	case KindLicence:
		return docLicence
	case KindReport:
		return docReport
	}
	return "file"
}
