package agent

import (
	"context"
	"net"
	"net/http"
	"testing"
)

// BenchmarkAdmissionSocketNewConn is BenchmarkAdmissionSocket for a
// client that opens a connection for each admission, as a script calling
// curl or `pbx-agent check` does: what the local API spends on each
// connection (peer credentials, the connection cap) shows here, on top of
// each request. The baseline, measured first in the same run, is the bare
// handler on a unix socket, also a connection per request.
func BenchmarkAdmissionSocketNewConn(b *testing.B) { benchAdmissionOverSocket(b, newConnClient) }

// newConnClient opens a connection to sock for every request.
func newConnClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}
