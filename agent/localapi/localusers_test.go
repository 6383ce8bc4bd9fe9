package localapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/agent/localapi/localapitest"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
)

// TestReadsRefuseARebindingHost is the DNS-rebinding page: it resolves its
// own name to 127.0.0.1 and reads the TCP listener through the browser,
// which sends Host: <its name>:<port>. Every read on TCP refuses it;
// loopback names and addresses, whatever the port, are served.
func TestReadsRefuseARebindingHost(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Metrics = http.NotFoundHandler() })
	_, port, _ := net.SplitHostPort(h.tcpAddr)
	reads := []string{"/", "/v1/status", "/healthz", "/readyz", "/metrics", "/?part=main"}
	for _, path := range reads {
		for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.evil.example:" + port, "localhost.:" + port, "pbx.local:" + port} {
			t.Run(path+"/"+host, func(t *testing.T) {
				a := h.do(t, request{via: "tcp", method: "GET", path: path, host: host})
				if eb := a.errorBody(t); a.status != 403 || eb.Code != apitype.CodeForbidden || !strings.Contains(eb.Error, "Host") {
					t.Errorf("answer %d %+v, want 403 naming the Host", a.status, eb)
				}
			})
		}
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST:" + port, "[::1]:" + port, "127.0.0.1", "localhost", "127.0.0.2:" + port} {
		t.Run("/v1/status/"+host, func(t *testing.T) {
			if a := h.do(t, request{via: "tcp", method: "GET", path: "/v1/status", host: host}); a.status != 200 {
				t.Errorf("answer %d %s, want 200", a.status, a.body)
			}
		})
	}
	// The socket is not a browser's to reach: its reads keep their Host.
	if a := h.do(t, request{method: "GET", path: "/v1/status", host: "evil.example"}); a.status != 200 {
		t.Errorf("socket read with a foreign Host = %d, want 200", a.status)
	}
}

// TestAuditNotOnTCP fetches the audit log over TCP, as any local user or a
// rebinding page with a loopback Host could: refused, naming where it is
// served, and the backend never reads the log.
func TestAuditNotOnTCP(t *testing.T) {
	h := newHarness(t, nil)
	for _, host := range []string{"", "localhost", "127.0.0.1"} {
		a := h.do(t, request{via: "tcp", method: "GET", path: "/v1/audit?limit=5", host: host})
		if eb := a.errorBody(t); a.status != 403 || !strings.Contains(eb.Error, "unix socket only") {
			t.Errorf("audit over tcp (Host %q) = %d %+v, want 403 naming the socket", host, a.status, eb)
		}
	}
	if n := len(h.backend.AuditLimits()); n != 0 {
		t.Errorf("the backend read the audit log %d times for TCP peers", n)
	}
	if a := h.do(t, request{method: "GET", path: "/v1/audit"}); a.status != 200 {
		t.Errorf("audit over the socket = %d, want 200", a.status)
	}
}

// TestServeTCPAddrOutlastsASquatter: another local user binds listen.http's
// port first. The socket serves meanwhile and the status names the failure;
// once the port is free the listener binds it and the error goes.
func TestServeTCPAddrOutlastsASquatter(t *testing.T) {
	squat, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := squat.Addr().String()
	fb := new(localapitest.Backend)
	fb.SetStatus(sampleStatus())
	srv, err := New(Config{Backend: fb, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sock := filepath.Join(t.TempDir(), "agent.sock")
	uln, err := srv.ListenUnix(ctx, sock, "", 0o660)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- srv.Serve(ctx, uln, Unix) }()
	go func() { done <- srv.ServeTCPAddr(ctx, addr) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()
	c := unixClient(sock)
	status := func() apitype.Status {
		var st apitype.Status
		resp, err := c.Get("http://local/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFor(t, "the status to name the held port", func() bool {
		l := status().Listeners
		return l != nil && l.HTTP != nil && strings.Contains(l.HTTP.Error, "address already in use")
	})
	if st := status(); st.Listeners.HTTP.Address != addr || st.Listeners.Socket == nil || st.Listeners.Socket.Address != sock {
		t.Errorf("listeners = %+v %+v", st.Listeners.Socket, st.Listeners.HTTP)
	}
	squat.Close()
	waitFor(t, "listen.http bound", func() bool {
		l := status().Listeners
		return l.HTTP != nil && l.HTTP.Error == "" && l.HTTP.Address == addr
	})
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz over the freed port = %d", resp.StatusCode)
	}
}

// waitFor polls cond until it holds, failing the test after 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// floodConns is how many connections the TCP flood opens: the count an
// unprivileged user was seen to open.
const floodConns = 500

// TestTCPFloodDoesNotStarveSocket floods the TCP listener with 500
// connections asking for its most expensive answers (the page, the status,
// the metrics, and the audit it refuses) as fast as they are answered,
// and reads the status on the socket meanwhile: every read succeeds. The
// latency of those reads is logged (p50, p99; see docs/reliability.md):
//
//	go test -run TestTCPFloodDoesNotStarveSocket -v ./agent/localapi/
func TestTCPFloodDoesNotStarveSocket(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Metrics = slowMetrics{} })
	// An audit log near its 1 MiB cap, as a PBX's is after months.
	var events []audit.Event
	for i := range 5000 {
		events = append(events, audit.Event{Time: time.Now(), Kind: "admission.denied",
			Fields: map[string]any{"profile": "uc-premium", "count": 1, "peer": fmt.Sprintf("uid 1001 pid %d", i), "reason": "UC-Premium is full"}})
	}
	h.backend.SetAudit(events, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var answered atomic.Int64
	paths := []string{"/", "/v1/status", "/metrics", "/v1/audit"}
	for i := range floodConns {
		wg.Go(func() {
			// One connection each, kept alive, as a flooding script would.
			tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr}
			for j := 0; ctx.Err() == nil; j++ {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+h.tcpAddr+paths[(i+j)%len(paths)], nil)
				resp, err := cl.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answered.Add(1)
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	// The flood under way: answers are coming.
	waitFor(t, "the flood to be answered", func() bool { return answered.Load() > floodConns })

	const reads = 300
	lat := make([]time.Duration, 0, reads)
	for range reads {
		t0 := time.Now()
		a := h.do(t, request{method: "GET", path: "/v1/status"})
		lat = append(lat, time.Since(t0))
		if a.status != 200 {
			t.Fatalf("status over the socket during the flood = %d %s", a.status, a.body)
		}
	}
	slices.Sort(lat)
	t.Logf("socket GET /v1/status during a %d-connection TCP flood (%d answered): p50 %v, p99 %v, max %v (GOMAXPROCS %d)",
		floodConns, answered.Load(), lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100].Round(10*time.Microsecond),
		lat[len(lat)-1].Round(10*time.Microsecond), runtime.GOMAXPROCS(0))
}

// slowMetrics stands for the daemon's registry: a scrape costs some CPU.
type slowMetrics struct{}

func (slowMetrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var sb strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&sb, "pbx_test_metric{i=\"%d\"} %d\n", i, i)
	}
	io.WriteString(w, sb.String())
}

// TestRefusalOnAClosingConnectionIsNoReset: an HTTP/1.0 request refused
// before its body is read (admission over TCP), its body written after
// its headers as a shell's printf to /dev/tcp may: the client reads the
// answer and an end of stream, never a reset.
func TestRefusalOnAClosingConnectionIsNoReset(t *testing.T) {
	h := newHarness(t, nil)
	const body = `{"profile": "uc-premium"}`
	for i := range 100 {
		c, err := net.Dial("tcp", h.tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /v1/admission HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", h.tcpAddr, len(body))
		io.WriteString(c, body)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(string(got), "HTTP/1.0 403 ") {
			t.Fatalf("try %d: read %q, %v; want a 403 and the end of the stream", i+1, got, err)
		}
	}
}
