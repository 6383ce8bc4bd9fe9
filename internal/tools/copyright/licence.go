package main

import (
	"regexp"
	"slices"
	"strings"
)

// A marker identifies a licence by phrases its text always holds; every
// phrase must be present.
type marker struct {
	id      string // SPDX identifier, as a DEP-5 License field names it
	phrases []string
	// unless lists phrases that rule the licence out (BSD-2-Clause is
	// BSD-3-Clause without its third clause).
	unless []string
}

// markers are matched against a licence file's text with its whitespace
// folded, so line breaks do not matter.
var markers = []marker{
	{id: "Apache-2.0", phrases: []string{"Apache License", "Version 2.0"}},
	{id: "MPL-2.0", phrases: []string{"Mozilla Public License", "2.0"}},
	{id: "MIT", phrases: []string{"Permission is hereby granted, free of charge, to any person obtaining a copy"}},
	{id: "BSD-3-Clause", phrases: []string{"Redistribution and use in source and binary forms", "Neither the name"}},
	{id: "BSD-3-Clause", phrases: []string{"Redistribution and use in source and binary forms", "names of its contributors may be used"}},
	{id: "BSD-2-Clause", phrases: []string{"Redistribution and use in source and binary forms"},
		unless: []string{"Neither the name", "names of its contributors may be used", "may be used to endorse"}},
	{id: "ISC", phrases: []string{"Permission to use, copy, modify, and", "distribute this software for any purpose with or without fee is hereby granted"}},
	{id: "public-domain", phrases: []string{"dedicated", "to the public domain"}},
}

// commonLicences are those Debian ships under /usr/share/common-licenses:
// the copyright file names them and points there rather than copying them.
var commonLicences = map[string]string{
	"Apache-2.0": "Apache-2.0",
	"MPL-2.0":    "MPL-2.0",
}

var spaces = regexp.MustCompile(`\s+`)

// identify returns the licences whose markers text holds, sorted; a file
// may hold several (yaml's is MIT and Apache-2.0).
func identify(text string) []string {
	folded := spaces.ReplaceAllString(text, " ")
	var ids []string
	for _, m := range markers {
		if containsAll(folded, m.phrases) && !containsAny(folded, m.unless) && !slices.Contains(ids, m.id) {
			ids = append(ids, m.id)
		}
	}
	slices.Sort(ids)
	return ids
}

func containsAll(s string, phrases []string) bool {
	for _, p := range phrases {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func containsAny(s string, phrases []string) bool {
	for _, p := range phrases {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

var (
	copyrightLine = regexp.MustCompile(`^\s*(?:Copyright|COPYRIGHT)\b\s*(?:\([cC]\)|©)?\s*(.*\d.*)$`)
	rightsTail    = regexp.MustCompile(`(?i)[.,]?\s*all rights reserved\.?$`)
)

// copyrights returns the copyright statements of licence and notice texts,
// in order and without repeats: lines starting "Copyright" that carry a
// year, which leaves out the templates ("Copyright [yyyy] [name of
// copyright owner]") and the clauses that only mention copyright.
func copyrights(texts ...string) []string {
	var found []string
	for _, text := range texts {
		for line := range strings.Lines(text) {
			m := copyrightLine.FindStringSubmatch(strings.TrimRight(line, "\r\n"))
			if m == nil || strings.ContainsAny(m[1], "[]{}<>") {
				continue
			}
			c := strings.TrimSpace(rightsTail.ReplaceAllString(strings.TrimSpace(m[1]), ""))
			if c != "" && !slices.Contains(found, c) {
				found = append(found, c)
			}
		}
	}
	return found
}

// apacheText is the whole Apache License 2.0 as a file may carry it beside
// other licences, with its appendix on how to apply it.
var apacheText = regexp.MustCompile(`(?s)[^\n]*Apache License\s*\n\s*Version 2\.0, January 2004.*?END OF TERMS AND CONDITIONS[^\n]*(\s*APPENDIX: How to apply the Apache License.*?limitations under the License\.)?`)

// elideCommon replaces a licence text Debian ships in common-licenses by a
// pointer to it, in a file copied because it also holds other licences:
// the copyright file refers to those texts instead of repeating them.
func elideCommon(text string) string {
	return apacheText.ReplaceAllLiteralString(text, "(The Apache License, Version 2.0: /usr/share/common-licenses/Apache-2.0.)")
}
