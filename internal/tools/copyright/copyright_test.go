package main

import (
	"context"
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestIdentify(t *testing.T) {
	const bsdHead = "Redistribution and use in source and binary forms, with or without\nmodification, are permitted provided that the following conditions are met:\n"
	tests := []struct {
		name, text string
		want       []string
	}{
		{"Apache-2.0", "                                 Apache License\n                           Version 2.0, January 2004\n", []string{"Apache-2.0"}},
		{"Apache-2.0 header only", "Licensed under the Apache License, Version 2.0 (the \"License\");", []string{"Apache-2.0"}},
		{"MIT", "Permission is hereby granted, free of charge, to any person obtaining a copy\nof this software", []string{"MIT"}},
		{"BSD-3-Clause", bsdHead + "   * Neither the name of Google Inc. nor the names of its\ncontributors may be used", []string{"BSD-3-Clause"}},
		{"BSD-3-Clause without 'Neither the name'", bsdHead + "3. The names of its contributors may be used to endorse", []string{"BSD-3-Clause"}},
		{"BSD-2-Clause", bsdHead + "1. Redistributions of source code must retain the above copyright notice", []string{"BSD-2-Clause"}},
		{"MPL-2.0", "Mozilla Public License Version 2.0\n==================================", []string{"MPL-2.0"}},
		{"ISC", "Permission to use, copy, modify, and/or distribute this software for any\npurpose with or without fee is hereby granted", []string{"ISC"}},
		{"public domain", "All of the code and documentation in SQLite has been dedicated to the public\ndomain by the authors.", []string{"public-domain"}},
		{"two licences in one file", "This project is covered by two different licenses: MIT and Apache.\nLicensed under the Apache License, Version 2.0\nPermission is hereby granted, free of charge, to any person obtaining a copy", []string{"Apache-2.0", "MIT"}},
		{"GPL is not guessed", "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007", nil},
		{"a link to a logo", "https://commons.wikimedia.org/wiki/File:Memory_infra_logo.png", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := identify(tt.text); !slices.Equal(got, tt.want) {
				t.Errorf("identify = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCopyrights(t *testing.T) {
	text := `Copyright (c) 2009 The Go Authors. All rights reserved.
Copyright 2011-2016 Canonical Ltd.
   Copyright [yyyy] [name of copyright owner]
Redistributions of source code must retain the above
copyright notice, this list of conditions and the following disclaimer.
Copyright © 2021 Matt Layher
Copyright (c) 2009 The Go Authors. All rights reserved.
`
	want := []string{"2009 The Go Authors", "2011-2016 Canonical Ltd.", "2021 Matt Layher"}
	if got := copyrights(text); !slices.Equal(got, want) {
		t.Errorf("copyrights = %q, want %q", got, want)
	}
}

func TestContinuation(t *testing.T) {
	got := continuation("MIT License\n\nCopyright (c) 2024\n.\n\tindented  \n")
	want := " MIT License\n .\n Copyright (c) 2024\n ..\n     indented\n"
	if got != want {
		t.Errorf("continuation = %q, want %q", got, want)
	}
}

// TestUnknownLicenceFails: a module whose licence no marker knows stops
// the build with its name, rather than ship a copyright file that omits it.
func TestUnknownLicenceFails(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "LICENSE"), []byte("GNU GENERAL PUBLIC LICENSE\nVersion 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := readLicensing("example.com/gpl", dir)
	if err == nil || !strings.Contains(err.Error(), "example.com/gpl") || !strings.Contains(err.Error(), "licence.go") {
		t.Fatalf("readLicensing = %v, want an error naming the module and where to add a marker", err)
	}
	_, err = readLicensing("example.com/none", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "no licence file") {
		t.Fatalf("readLicensing of a module without licence = %v, want 'no licence file'", err)
	}
}

// TestListsEveryLinkedModule builds the daemon and checks that the
// generated file has a paragraph, with a licence, for every module the
// binary records as compiled in (its build information, read by
// debug/buildinfo: independent of how the tool lists them).
func TestListsEveryLinkedModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the daemon")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "pbx-agent")
	build := exec.Command(goCommand(), "build", "-trimpath", "-o", bin, "./cmd/pbx-agent")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Deps) < 10 {
		t.Fatalf("the binary records %d modules; expected its dependencies", len(info.Deps))
	}

	l, err := listLinked(context.Background(), root, []string{"./cmd/pbx-agent"})
	if err != nil {
		t.Fatal(err)
	}
	header, err := os.ReadFile(filepath.Join(root, "packaging/copyright.header"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := render(string(header), l, []string{"pbx-agent"})
	if err != nil {
		t.Fatal(err)
	}
	paragraphs := strings.Split(doc, "\n\n")
	licensed := map[string]bool{} // Files pattern → has a License field
	standalone := map[string]bool{}
	for _, p := range paragraphs {
		fields := map[string]string{}
		for line := range strings.Lines(p) {
			if k, v, ok := strings.Cut(strings.TrimRight(line, "\n"), ": "); ok && !strings.HasPrefix(line, " ") {
				fields[k] = v
			}
		}
		if f, ok := fields["Files"]; ok {
			licensed[f] = fields["License"] != "" && fields["Copyright"] != ""
		} else if id, ok := fields["License"]; ok {
			standalone[id] = true
		}
	}
	for _, dep := range info.Deps {
		pattern := "vendor/" + dep.Path + "/*"
		if !licensed[pattern] {
			t.Errorf("module %s %s is compiled in but has no paragraph with a licence and a copyright (Files: %s)", dep.Path, dep.Version, pattern)
		}
	}
	if !licensed["GOROOT/src/*"] {
		t.Error("no paragraph for the Go standard library")
	}
	for _, id := range []string{"Apache-2.0"} {
		if !standalone[id] {
			t.Errorf("no stand-alone License: %s paragraph, which the project's own files name", id)
		}
	}
}

// TestElideCommon: a file that carries the whole Apache License beside
// another licence keeps the other and points to common-licenses for
// Apache's (Debian's lintian refuses the full text in a copyright file).
func TestElideCommon(t *testing.T) {
	apache, err := os.ReadFile("/usr/share/common-licenses/Apache-2.0")
	if err != nil {
		t.Skip("no /usr/share/common-licenses/Apache-2.0 (base-files)")
	}
	text := "MIT License\nPermission is hereby granted, free of charge, to any person obtaining a copy\n\n" + string(apache) + "\nTrailing notice.\n"
	got := elideCommon(text)
	for _, gone := range []string{"TERMS AND CONDITIONS FOR USE", "APPENDIX", "limitations under the License"} {
		if strings.Contains(got, gone) {
			t.Errorf("the Apache text is still there (%q):\n%s", gone, got)
		}
	}
	for _, kept := range []string{"MIT License", "Permission is hereby granted", "/usr/share/common-licenses/Apache-2.0", "Trailing notice."} {
		if !strings.Contains(got, kept) {
			t.Errorf("elideCommon dropped %q:\n%s", kept, got)
		}
	}
}
