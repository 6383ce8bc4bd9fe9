package localapi_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	. "github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/agent/localapi/localapitest"
	"github.com/pbx-agent/pbx-agent/internal/statusfixture"
)

// TestStatusPageGolden renders the status page of every state (and the
// variants an admin meets: over-use, a suspension, a re-bind) at a fixed
// licence time through the API's handler, and compares it with
// testdata/page-STATE.golden.html. Run with -update after a deliberate
// change, and look at the page (make screenshots).
func TestStatusPageGolden(t *testing.T) {
	for _, c := range statusfixture.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			b := new(localapitest.Backend)
			b.SetStatus(c.Status)
			s, err := New(Config{Backend: b, Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, AsUnixWriter(httptest.NewRequest(http.MethodGet, "http://local/", nil)))
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /: %d %s", rec.Code, body)
			}
			path := filepath.Join("testdata", "page-"+c.Name+".golden.html")
			if *updateSeeds {
				if err := os.WriteFile(path, body, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestStatusPageGolden -update to write it)", err)
			}
			if !bytes.Equal(body, want) {
				t.Errorf("page differs from %s (go test -run TestStatusPageGolden -update rewrites it):\n%s", path, firstDiff(body, want))
			}
		})
	}
}

// firstDiff shows the first line where got and want part.
func firstDiff(got, want []byte) string {
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl []byte
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if !bytes.Equal(gl, wl) {
			return fmt.Sprintf("line %d:\n  got:  %s\n  want: %s", i+1, gl, wl)
		}
	}
	return "(same lines)"
}
