package agent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// wireCount counts the bytes a server's connections read and write.
type wireCount struct{ read, written atomic.Int64 }

type countingListener struct {
	net.Listener
	n *wireCount
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *wireCount
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.read.Add(int64(n))
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.written.Add(int64(n))
	return n, err
}

// TestHeartbeatOnTheWire counts the bytes of an unchanged heartbeat, the
// request and the answer with their headers, as they cross the socket to
// the portal, and checks the request carries only the headers the
// protocol needs: no Accept (the protocol fixes what the portal answers)
// and no Accept-Encoding (the portal answers uncompressed).
func TestHeartbeatOnTheWire(t *testing.T) {
	r := newRig(t)
	var count wireCount
	var mu sync.Mutex
	var headers []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		headers = headers[:0]
		for name := range req.Header {
			headers = append(headers, name)
		}
		mu.Unlock()
		r.portal.Handler().ServeHTTP(w, req)
	}))
	srv.Listener = countingListener{srv.Listener, &count}
	srv.Start()
	t.Cleanup(srv.Close)
	r.cfg.Portal.URL = srv.URL

	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)
	ctx := context.Background()
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := a.heartbeat(ctx); err != nil { // the licence is now the one held
		t.Fatal(err)
	}
	count.read.Store(0)
	count.written.Store(0)
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	req, resp := count.read.Load(), count.written.Load()
	t.Logf("an unchanged heartbeat on the wire: %d B request + %d B answer = %d B", req, resp, req+resp)

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(headers)
	// Go's server moves Host out of the header map; Content-Length is the
	// transport's.
	want := []string{"Content-Length", "Content-Type", "User-Agent"}
	if !slices.Equal(headers, want) {
		t.Errorf("heartbeat request headers %v, want %v", headers, want)
	}
	if req == 0 || resp == 0 {
		t.Fatalf("counted %d B request, %d B answer: the heartbeat did not cross the counted socket", req, resp)
	}
}
