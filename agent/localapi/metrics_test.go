package localapi_test

import (
	"io"
	"net/http"
	"testing"

	. "github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// TestMetricsRoute checks GET /metrics on both listeners: it serves the
// configured handler (read permission, so TCP peers too), answers 404
// without one, and allows GET only.
func TestMetricsRoute(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, "pbx_ssh_open 0\n")
	})
	h := newHarness(t, func(c *Config) { c.Metrics = metrics })
	for _, via := range []string{"unix", "tcp"} {
		a := h.do(t, request{via: via, method: "GET", path: "/metrics"})
		if a.status != http.StatusOK || string(a.body) != "pbx_ssh_open 0\n" {
			t.Errorf("GET /metrics over %s: %d %q", via, a.status, a.body)
		}
		if a := h.do(t, request{via: via, method: "POST", path: "/metrics"}); a.status != http.StatusMethodNotAllowed {
			t.Errorf("POST /metrics over %s: %d, want 405", via, a.status)
		}
	}

	none := newHarness(t, nil)
	a := none.do(t, request{via: "tcp", method: "GET", path: "/metrics"})
	if eb := a.errorBody(t); a.status != http.StatusNotFound || eb.Code != apitype.CodeNotFound {
		t.Errorf("GET /metrics without metrics: %d %+v, want 404", a.status, eb)
	}
}
