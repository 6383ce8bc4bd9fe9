package metrics

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoServerImport: the metrics read the status through its contract
// (pkg/apitype), never the HTTP server's package, so either can change
// without the other.
func TestNoServerImport(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasSuffix(dep, "/agent/localapi") {
			t.Fatalf("agent/metrics depends on %s", dep)
		}
	}
}
