package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateWebConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, path string
		ok         bool
	}{
		{"none", "", true},
		{"basic auth only", write("auth.yml", "basic_auth_users:\n  prometheus: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n"), true},
		{"missing file", filepath.Join(dir, "missing.yml"), false},
		{"not YAML", write("junk.yml", "{{{"), false},
		{"unknown key", write("typo.yml", "tls_server_confg: {}\n"), false},
		{"missing certificate", write("tls.yml", "tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateWebConfig(c.path)
			if (err == nil) != c.ok {
				t.Errorf("ValidateWebConfig: %v, want ok %v", err, c.ok)
			}
			if err != nil && !strings.Contains(err.Error(), c.path) {
				t.Errorf("the error does not name the file: %v", err)
			}
		})
	}
}

// TestServe serves the remote listener without a web configuration (TLS
// and basic auth are tested on the real binary in integration/): metrics
// alone, and a clean stop when ctx ends.
func TestServe(t *testing.T) {
	m := newTest(t, snapshots["active"])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln, "") }()
	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `pbx_license_state{state="active"} 1`) {
		t.Errorf("GET /metrics: %d", resp.StatusCode)
	}
	for _, path := range []string{"/", "/v1/status"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after ctx ended: %v", err)
	}
}
