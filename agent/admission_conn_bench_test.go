package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
)

// BenchmarkAdmissionSocketNewConn is BenchmarkAdmissionSocket for a
// client that opens a connection for each admission, as a script calling
// curl or `pbx-agent check` does: what the local API spends on each
// connection (peer credentials, the connection cap) shows here, on top of
// each request. The baseline, measured first in the same run, is the bare
// handler on a unix socket, also a connection per request.
func BenchmarkAdmissionSocketNewConn(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	body := []byte(`{"profile": "uc-premium", "count": 1, "dry_run": true}`)
	newConnClient := func(sock string) *http.Client {
		return &http.Client{Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}}
	}
	var baseNs float64
	b.Run("baseline=bare-handler", func(b *testing.B) {
		sock := filepath.Join(dir, "bare.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("{\n  \"allowed\": true,\n  \"remaining\": 3\n}\n"))
		})}
		go srv.Serve(ln)
		defer srv.Close()
		c := newConnClient(sock)
		for b.Loop() {
			postBench(b, c, body)
		}
		baseNs = nsPerOp(b)
	})
	b.Run("admission", func(b *testing.B) {
		sock := filepath.Join(dir, "agent.sock")
		a := benchAgent(b, sock)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(rctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				b.Error(err)
			}
		}()
		c := newConnClient(sock)
		eventually(b, 10*time.Second, "daemon serving", func() bool {
			var st localapi.Status
			return getJSON(c, "/v1/status", &st) == nil
		})
		for b.Loop() {
			postBench(b, c, body)
		}
		reportDecisions(b, baseNs)
	})
}
