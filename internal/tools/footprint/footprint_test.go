package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRowOf(t *testing.T) {
	modules := []string{"github.com/pbx-agent/pbx-agent", "github.com/prometheus/client_golang", "github.com/prometheus/common", "golang.org/x/net", "gopkg.in/yaml.v3", "modernc.org/sqlite"}
	for _, tc := range []struct{ symbol, want string }{
		{"modernc.org/sqlite/lib._sqlite3VdbeExec", "modernc.org/sqlite"},
		{"github.com/pbx-agent/pbx-agent/agent.(*portalClient).heartbeat", "github.com/pbx-agent/pbx-agent"},
		{"type:*github.com/prometheus/common/expfmt.Encoder", "github.com/prometheus/common"},
		{"go:itab.*github.com/prometheus/client_golang/prometheus.gauge,github.com/prometheus/client_golang/prometheus.Metric", "github.com/prometheus/client_golang"},
		{"type:.eq.struct { *github.com/prometheus/client_golang/prometheus/promhttp.responseWriterDelegator; net/http.Flusher }", "github.com/prometheus/client_golang"},
		{"gopkg.in/yaml%2ev3.(*decoder).unmarshal", "gopkg.in/yaml.v3"},
		{"github.com/pbx-agent/pbx-agent/pkg/x.F[go.shape.struct { github.com/prometheus/common/model.A }]", "github.com/pbx-agent/pbx-agent"},
		{"vendor/golang.org/x/net/idna.idnaValues", stdRow},
		{"runtime.mheap_", stdRow},
		{"crypto/internal/fips140/sha3.keccakF1600.abi0", stdRow},
		{"type:.eq.net/http.Request", stdRow},
	} {
		if got := rowOf(tc.symbol, modules); got != tc.want {
			t.Errorf("rowOf(%q) = %q, want %q", tc.symbol, got, tc.want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tprog\nVmHWM:\t    2048 kB\nVmRSS:\t    1844 kB\nRssAnon:\t     544 kB\nRssFile:\t    1300 kB\n"
	s, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if s != (procStatus{RSS: 1844 << 10, Anon: 544 << 10, HWM: 2048 << 10}) {
		t.Errorf("parseStatus = %+v", s)
	}
	if _, err := parseStatus([]byte("VmRSS:\t1 kB\n")); err == nil {
		t.Error("a status without RssAnon and VmHWM parsed")
	}
}

func TestReplaceSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.md")
	doc := "# Doc\n\n" + beginMarker + "\nold table\n" + endMarker + "\n\nafter\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceSection(path, []byte("new table\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := "# Doc\n\n" + beginMarker + "\nnew table\n" + endMarker + "\n\nafter\n"
	if string(b) != want {
		t.Errorf("after replaceSection:\n%s\nwant:\n%s", b, want)
	}
	if err := os.WriteFile(path, []byte("# Doc without markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceSection(path, []byte("x\n")); err == nil || !strings.Contains(err.Error(), beginMarker) {
		t.Errorf("a file without markers: err = %v, want one naming the markers", err)
	}
}

// TestSourceBlankImports checks a do-nothing program imports each package
// blank and nothing else of its own.
func TestSourceBlankImports(t *testing.T) {
	src := source([]string{"modernc.org/sqlite", "github.com/spf13/viper"})
	for _, want := range []string{"\t_ \"github.com/spf13/viper\"\n\t_ \"modernc.org/sqlite\"\n", "func main() { time.Sleep(time.Hour) }"} {
		if !strings.Contains(src, want) {
			t.Errorf("source lacks %q:\n%s", want, src)
		}
	}
}
