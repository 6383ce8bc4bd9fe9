package wms

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func stanza(pkg, version string) string {
	return "Package: " + pkg + "\nVersion: " + version + "\nArchitecture: amd64\nDescription: x\n something\n\n"
}

func TestLatestStable(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src := Source{URL: "https://repo.example.com/wms_{repository}", Suite: "stable", Components: []string{"main"}, Package: "wms"}
	if _, err := LatestStable(dir, src); err == nil || !strings.Contains(err.Error(), "apt-get update") {
		t.Errorf("no lists: %v; want the fix", err)
	}
	write("repo.example.com_wms%5frel70_dists_stable_main_binary-amd64_Packages",
		stanza("wms", "7.02.20250609.3")+stanza("wms", "7.03.20250801.1~rc1")+stanza("wms-doc", "9.00.20260101.1")+stanza("wms", "7.02.20250610.1"))
	write("repo.example.com_wms%5frel71_dists_stable_main_binary-amd64_Packages",
		stanza("wms", "7.10.20251001.2")+stanza("wms", "7.11-beta"))
	// Another repository, another suite, a compressed list: not read.
	write("other.example.com_wms%5frel70_dists_stable_main_binary-amd64_Packages", stanza("wms", "9.99.20990101.1"))
	write("repo.example.com_wms%5frel70_dists_testing_main_binary-amd64_Packages", stanza("wms", "8.00.20260101.1"))
	write("repo.example.com_wms%5frel70_dists_stable_main_binary-amd64_Release", stanza("wms", "8.00.20260101.1"))

	got, err := LatestStable(dir, src)
	if err != nil || got.Version.String() != "7.10.20251001.2" || !strings.Contains(got.File, "rel71") {
		t.Errorf("LatestStable = %+v, %v; want 7.10.20251001.2 from rel71", got, err)
	}

	only70 := src
	only70.URL = "https://repo.example.com/wms_rel70"
	if got, err := LatestStable(dir, only70); err != nil || got.Version.String() != "7.02.20250610.1" {
		t.Errorf("rel70 only = %+v, %v; want 7.02.20250610.1 (the rc and the other package skipped)", got, err)
	}
	none := src
	none.Package = "absent"
	if _, err := LatestStable(dir, none); err == nil || !strings.Contains(err.Error(), "no stable version") {
		t.Errorf("absent package: %v", err)
	}
	if _, err := LatestStable(dir, Source{}); err == nil || !strings.Contains(err.Error(), "upgrade.repo_url") {
		t.Errorf("unconfigured: %v", err)
	}
}

func TestLatestStableFlat(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "repo.example.com_rel70_Packages"), []byte(stanza("wms", "7.00.20250101.1")), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LatestStable(dir, Source{URL: "http://user:pw@repo.example.com/", Suite: "{repository}/", Package: "wms"})
	if err != nil || got.Version.String() != "7.00.20250101.1" {
		t.Errorf("flat = %+v, %v", got, err)
	}
}

func TestLatestStableFlatDot(t *testing.T) {
	for _, name := range []string{"deb.example.com_wms_rel70_._Packages", "deb.example.com_wms_rel70_Packages"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(stanza("wms", "7.00.20250101.1")), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LatestStable(dir, Source{URL: "https://deb.example.com/wms/{repository}", Suite: "./", Package: "wms"})
		if err != nil || got.Version.String() != "7.00.20250101.1" {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
}
