package main

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"sort"
	"strings"
)

// The rows that are no module's: Go's standard library, and what the
// linker lays out for every function (the pclntab: names, line tables,
// stack maps) and for the binary as a whole, which no symbol names.
const (
	stdRow     = "Go standard library and runtime"
	tablesRow  = "function tables (.gopclntab), all modules"
	rodataRow  = "type descriptors and strings (.rodata), all modules"
	restRow    = "other sections, not named by a symbol"
	tablesSect = ".gopclntab"
	rodataSect = ".rodata"
)

// share is the bytes of a binary's loaded file that one row accounts for.
type share struct {
	Name  string
	Bytes int64
	// Text is the part of Bytes that is machine code; the function
	// tables grow with it.
	Text int64
}

// sizeByModule reads the symbols of an unstripped Go binary and sums the
// size of those that occupy the file (not .bss) by the module of their
// package, as its build information lists the modules. The function
// tables, and what no symbol names, are rows of their own, so that the
// rows add up to the loaded sections.
func sizeByModule(path string) (rows []share, total int64, err error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the build information of %s: %w", path, err)
	}
	modules := []string{info.Main.Path}
	for _, d := range info.Deps {
		modules = append(modules, d.Path)
	}
	f, err := elf.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, 0, fmt.Errorf("reading the symbols of %s (build it without -s): %w", path, err)
	}
	inFile := map[elf.SectionIndex]bool{}
	unnamed := map[elf.SectionIndex]int64{}
	for i, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Type != elf.SHT_NOBITS {
			inFile[elf.SectionIndex(i)] = true
			unnamed[elf.SectionIndex(i)] = int64(s.Size)
			total += int64(s.Size)
		}
	}
	sums := map[string]*share{}
	add := func(name string, b, text int64) {
		if sums[name] == nil {
			sums[name] = &share{Name: name}
		}
		sums[name].Bytes += b
		sums[name].Text += text
	}
	for _, s := range syms {
		if !inFile[s.Section] || s.Size == 0 {
			continue
		}
		name := f.Sections[s.Section].Name
		unnamed[s.Section] -= int64(s.Size)
		row, text := rowOf(s.Name, modules), int64(0)
		switch {
		case name == tablesSect:
			row = tablesRow
		case name == ".text":
			text = int64(s.Size)
		}
		add(row, int64(s.Size), text)
	}
	for i, b := range unnamed {
		switch f.Sections[i].Name {
		case tablesSect:
			add(tablesRow, b, 0)
		case rodataSect:
			add(rodataRow, b, 0)
		default:
			add(restRow, b, 0)
		}
	}
	for _, r := range sums {
		rows = append(rows, *r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Bytes != rows[j].Bytes {
			return rows[i].Bytes > rows[j].Bytes
		}
		return rows[i].Name < rows[j].Name
	})
	return rows, total, nil
}

// rowOf names the row of a symbol: the longest module path its package
// path starts with, or the standard library.
func rowOf(symbol string, modules []string) string {
	pkg := strings.ReplaceAll(packageOf(symbol), "%2e", ".")
	best := ""
	for _, m := range modules {
		if (pkg == m || strings.HasPrefix(pkg, m+"/")) && len(m) > len(best) {
			best = m
		}
	}
	if best != "" {
		return best
	}
	if first, _, _ := strings.Cut(pkg, "/"); !strings.Contains(first, ".") || strings.HasPrefix(pkg, "vendor/") {
		return stdRow // the standard library, golang.org/x packages it vendors included
	}
	// A symbol of a type the compiler made, such as a struct embedding a
	// module's type, is the first module's it names.
	at := len(symbol)
	for _, m := range modules {
		if i := strings.Index(symbol, m+"."); i >= 0 && i < at || i == at && len(m) > len(best) {
			at, best = i, m
		}
		if i := strings.Index(symbol, m+"/"); i >= 0 && i < at || i == at && len(m) > len(best) {
			at, best = i, m
		}
	}
	if best != "" {
		return best
	}
	return pkg
}

// packageOf is the import path of the package a Go symbol belongs to:
// "github.com/a/b.(*T).M" is github.com/a/b's, "type:*github.com/a/b.T"
// and "go:itab.*github.com/a/b.T,io.Reader" too.
func packageOf(symbol string) string {
	s := symbol
	for trimmed := ""; trimmed != s; {
		trimmed = s
		for _, p := range []string{"type:", "go:itab.", "go:", ".eq.", ".hash.", ".gcmask.", "struct { ", "map.", "(", "*", "[]"} {
			s = strings.TrimPrefix(s, p)
		}
		s = strings.TrimLeft(s, "[]0123456789")
	}
	// The package path ends at the first dot that no slash follows before
	// a type's arguments or a method's receiver begin. (The linker writes
	// a dot in a path's last element as %2e, so it cannot end it early.)
	for i := 0; i < len(s); i++ {
		if s[i] != '.' {
			continue
		}
		rest := s[i+1:]
		if j := strings.IndexAny(rest, "([,;"); j >= 0 {
			rest = rest[:j]
		}
		if !strings.Contains(rest, "/") {
			return s[:i]
		}
	}
	return s
}
