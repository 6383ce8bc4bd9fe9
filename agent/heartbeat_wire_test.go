package agent

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// wireCount records the bytes a server's connections read and write.
type wireCount struct {
	mu            sync.Mutex
	read, written bytes.Buffer
}

func (w *wireCount) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.read.Reset()
	w.written.Reset()
}

// split is the bytes read and written, each as headers (up to and with
// the blank line) and body.
func (w *wireCount) split() (reqHead, reqBody, respHead, respBody string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cut := func(b *bytes.Buffer) (string, string) {
		head, body, _ := strings.Cut(b.String(), "\r\n\r\n")
		return head + "\r\n\r\n", body
	}
	reqHead, reqBody = cut(&w.read)
	respHead, respBody = cut(&w.written)
	return
}

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
	c.n.mu.Lock()
	c.n.read.Write(b[:n])
	c.n.mu.Unlock()
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.mu.Lock()
	c.n.written.Write(b[:n])
	c.n.mu.Unlock()
	return n, err
}

// maxUnchangedHeartbeat is the budget of an unchanged compact heartbeat on
// the wire: request and answer, headers included.
const maxUnchangedHeartbeat = 600

// TestHeartbeatOnTheWire counts the bytes of an unchanged heartbeat, the
// request and the answer with their headers, as they cross the socket to
// the portal, in both formats: the compact heartbeat and its "same"
// answer, which carry no header but Host and Content-Length, and the full
// heartbeat, which carries only the headers the protocol needs (no Accept,
// no Accept-Encoding). The compact one must stay within its budget.
func TestHeartbeatOnTheWire(t *testing.T) {
	r := newRig(t)
	var count wireCount
	srv := httptest.NewUnstartedServer(r.portal.Handler())
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
	for _, tt := range []struct {
		name         string
		compact      bool
		wantReq      []string // request headers, Host aside
		wantResp     []string
		wantAnswer   string // the answer's typ
		maxOnTheWire int
	}{
		{"compact", true, []string{"Content-Length"}, []string{"Content-Length"}, protocol.TypeSame, maxUnchangedHeartbeat},
		{"full", false, []string{"Content-Length", "Content-Type", "User-Agent"},
			[]string{"Cache-Control", "Content-Length", "Content-Type", "Date"}, protocol.TypeAnswer, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A first heartbeat reports what the portal does not know yet
			// (after a start, everything); the next is unchanged.
			for i := range 2 {
				a.lic.exchangeMu.Lock()
				a.lic.wire.compact = tt.compact
				a.lic.exchangeMu.Unlock()
				count.reset()
				if err := a.heartbeat(ctx); err != nil {
					t.Fatalf("heartbeat %d: %v", i+1, err)
				}
			}
			reqHead, reqBody, respHead, respBody := count.split()
			req, resp := len(reqHead)+len(reqBody), len(respHead)+len(respBody)
			t.Logf("an unchanged %s heartbeat on the wire: %d B request (%d headers, %d body) + %d B answer (%d headers, %d body) = %d B",
				tt.name, req, len(reqHead), len(reqBody), resp, len(respHead), len(respBody), req+resp)
			t.Logf("request:\n%s%s\nanswer:\n%s%s", reqHead, reqBody, respHead, respBody)
			if got := headerNames(t, reqHead, "Host"); !slices.Equal(got, tt.wantReq) {
				t.Errorf("request headers %v, want %v", got, tt.wantReq)
			}
			if got := headerNames(t, respHead); !slices.Equal(got, tt.wantResp) {
				t.Errorf("answer headers %v, want %v", got, tt.wantResp)
			}
			if _, typ, err := license.PeekHeader(respBody); err != nil || typ != tt.wantAnswer {
				t.Errorf("answer of type %q (%v), want %q", typ, err, tt.wantAnswer)
			}
			if tt.maxOnTheWire > 0 && req+resp > tt.maxOnTheWire {
				t.Errorf("an unchanged %s heartbeat takes %d B on the wire, more than its budget of %d B", tt.name, req+resp, tt.maxOnTheWire)
			}
		})
	}
}

// headerNames lists, sorted, the header names of an HTTP head (its first
// line aside), less those skipped.
func headerNames(t *testing.T, head string, skip ...string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	if len(lines) == 0 {
		t.Fatalf("no HTTP head in %q", head)
	}
	var names []string
	for _, l := range lines[1:] {
		name, _, ok := strings.Cut(l, ":")
		if !ok {
			t.Fatalf("header line %q", l)
		}
		if !slices.Contains(skip, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
