package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// socketClient talks HTTP over the agent's unix socket.
func socketClient(path string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 4,
	}}
}

// malformed are requests no client should send: broken HTTP, bad bodies,
// oversized headers and bodies. Each is written on a fresh connection.
func malformed(rng *rand.Rand) string {
	junk := make([]byte, 1+rng.IntN(300))
	for i := range junk {
		junk[i] = byte(rng.IntN(256))
	}
	body := func(ct, b string) string {
		return fmt.Sprintf("POST /v1/admission HTTP/1.1\r\nHost: localhost\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", ct, len(b), b)
	}
	switch rng.IntN(10) {
	case 0:
		return string(junk)
	case 1:
		return "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n"
	case 2:
		return "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + strings.Repeat("a", 32<<10) + "\r\n\r\n"
	case 3:
		return "BREW /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n"
	case 4:
		return body("application/json", string(junk))
	case 5:
		return body("application/json", `{"profile": "uc-business", "count": `+strings.Repeat("9", 400)+`}`)
	case 6:
		return body("application/json", `{"profile": "`+strings.Repeat("x", 70<<10)+`"}`) // over the 64 KiB cap
	case 7:
		return "POST /v1/admission HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
	case 8:
		return body("text/plain", `{"profile": "uc-business"}`)
	default:
		return "GET /../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n"
	}
}

// sendRaw writes one raw request on a new connection and returns the
// status line, or "" when the agent closed the connection without one.
func sendRaw(network, addr, req string) string {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	// Half-close: the agent sees the request end, so a partial one is
	// answered or dropped at once, not at the header timeout.
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	if f := strings.Fields(line); len(f) >= 2 {
		return f[1]
	}
	return ""
}

// TestLocalAPIUnderAbuseAndLoad: for PBX_LOAD_SECONDS (10; 60 under soak),
// well-behaved clients read the status over TCP and ask for admission over
// the socket in closed loops, while others send thousands of malformed
// requests, oversized bodies, unauthorised writes, and hold slow
// connections open that never finish their headers. The agent must not
// crash, every unauthorised write is refused and changes nothing, its
// goroutines and memory stay bounded and come back, and the well-behaved
// clients' latency percentiles are reported. A last phase floods past the
// connection caps and checks the API serves again when the flood ends.
func TestLocalAPIUnderAbuseAndLoad(t *testing.T) {
	load := time.Duration(sized(t, "PBX_LOAD_SECONDS", 10, 60)) * time.Second
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "load.example", "--users", "uc-business=10")
	a := newAppliance(t, "loaded", p, "1h")
	f, err := os.OpenFile(a.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "users:\n  source: command\n  command:\n    argv: [\"/bin/echo\", '{\"profiles\": {\"uc-business\": 3}}']\n")
	f.Close()
	a.startQuick()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: %s", r.stderr)
	}
	sock := filepath.Join(filepath.Dir(a.config), "run", "agent.sock")
	wb := socketClient(sock)
	if code, body := postJSON(t, wb, "http://localhost/v1/admission", `{"profile": "uc-business", "dry_run": true}`, nil); code != 200 {
		t.Fatalf("admission before the load: %d %s", code, body)
	}
	heartbeats := func() float64 {
		var sum float64
		for _, r := range []string{"success", "unreachable", "refused", "invalid", "gone"} {
			v, _ := a.labelled("pbx_agent_heartbeats_total", `result="`+r+`"`)
			sum += v
		}
		return sum
	}
	hbBefore := heartbeats()
	g0, _ := a.metric("go_goroutines")
	rss0, _ := a.metric("process_resident_memory_bytes")

	ctx, cancel := context.WithTimeout(context.Background(), load)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var statusLat, admitLat []time.Duration
	var wellFailed, reconnects, malformedSent, oversized, unauthorised, unauthorisedPassed atomic.Int64
	codes := map[string]int{}

	// Well-behaved clients: two on each endpoint, each in a closed loop.
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				began := time.Now()
				var ok bool
				// A well-behaved client retries (up to 4 times) when the server closed
				// its keep-alive connection before answering (the cap gives
				// idle connections up to new ones): nothing was processed.
				for attempt := 0; attempt < 5 && !ok; attempt++ {
					if attempt > 0 {
						reconnects.Add(1)
					}
					if i%2 == 0 {
						_, err := a.httpStatus()
						ok = err == nil
					} else {
						code, _ := postJSON(t, wb, "http://localhost/v1/admission", `{"profile": "uc-business", "dry_run": true}`, nil)
						ok = code == 200
					}
				}
				took := time.Since(began)
				if !ok {
					wellFailed.Add(1)
					continue
				}
				mu.Lock()
				if i%2 == 0 {
					statusLat = append(statusLat, took)
				} else {
					admitLat = append(admitLat, took)
				}
				mu.Unlock()
			}
		}()
	}
	// Malformed requests on both listeners.
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for ctx.Err() == nil {
				network, addr := "tcp", a.http
				if i%2 == 1 {
					network, addr = "unix", sock
				}
				code := sendRaw(network, addr, malformed(rng))
				malformedSent.Add(1)
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	// Oversized bodies and unauthorised writes.
	wg.Add(1)
	go func() {
		defer wg.Done()
		big := `{"key": "` + strings.Repeat("A", 1<<20) + `"}`
		tcp := &http.Client{Timeout: 30 * time.Second}
		for n := 0; ctx.Err() == nil; n++ {
			// Refused: 413, or, once the declared length is seen over the
			// limit, the connection closed without reading (code 0).
			if code, _ := postJSON(t, wb, "http://localhost/v1/admission", big, nil); code != http.StatusRequestEntityTooLarge && code != 0 {
				t.Errorf("a 1 MiB admission body: %d, want 413 or the connection closed", code)
			}
			oversized.Add(1)
			for _, w := range []struct {
				client *http.Client
				url    string
				header map[string]string
			}{
				{tcp, "http://" + a.http + "/v1/activate", nil},                                          // TCP is read-only
				{tcp, "http://" + a.http + "/v1/refresh", nil},                                           // TCP is read-only
				{tcp, "http://" + a.http + "/v1/admission", nil},                                         // admission is socket-only
				{wb, "http://localhost/v1/activate", map[string]string{"Origin": "http://evil.example"}}, // a web page
				{wb, "http://evil.example/v1/refresh", nil},                                              // DNS rebinding
			} {
				code, _ := postJSON(t, w.client, w.url, `{"key": "`+key+`"}`, w.header)
				unauthorised.Add(1)
				// 403, or 0 when the server closed the connection first (an
				// idle keep-alive connection given up under the cap, which
				// the abuse keeps full): never a success.
				if code/100 == 2 {
					unauthorisedPassed.Add(1)
					t.Errorf("unauthorised write %s %v: %d, want 403", w.url, w.header, code)
				} else if code != http.StatusForbidden && code != 0 {
					t.Errorf("unauthorised write %s %v: %d, want 403 or the connection closed", w.url, w.header, code)
				}
			}
		}
	}()
	// Slow clients: connections that never finish their headers, kept
	// under the connection caps (64 on the socket, 32 on TCP), renewed as
	// the agent drops them.
	for i := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			network, addr := "unix", sock
			if i%3 == 0 {
				network, addr = "tcp", a.http
			}
			for ctx.Err() == nil {
				c, err := net.Dial(network, addr)
				if err != nil {
					continue
				}
				io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n")
				buf := make([]byte, 1)
				c.SetReadDeadline(deadlineOf(ctx))
				c.Read(buf) // returns when the agent drops it, or at the end
				c.Close()
			}
		}()
	}
	// Samples of the agent's goroutines and memory, once a second.
	var gMax, rssMax float64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			g, err1 := a.metric("go_goroutines")
			rss, err2 := a.metric("process_resident_memory_bytes")
			if err1 == nil && err2 == nil {
				mu.Lock()
				gMax, rssMax = max(gMax, g), max(rssMax, rss)
				mu.Unlock()
			}
		}
	}()
	wg.Wait()

	select {
	case <-a.proc.done:
		t.Fatalf("the agent died under the load: %v", a.proc.cmd.ProcessState)
	default:
	}
	sp, ap := percentiles(statusLat, 50, 90, 99, 100), percentiles(admitLat, 50, 90, 99, 100)
	t.Logf("%v of load: status over TCP %d requests, p50 %v p90 %v p99 %v max %v", load, len(statusLat), sp[0], sp[1], sp[2], sp[3])
	t.Logf("admission over the socket %d requests, p50 %v p90 %v p99 %v max %v; %d well-behaved requests failed, %d retried on a new connection",
		len(admitLat), ap[0], ap[1], ap[2], ap[3], wellFailed.Load(), reconnects.Load())
	t.Logf("abuse: %d malformed requests (answers by status %v), %d bodies of 1 MiB, %d unauthorised writes (%d let through), 48 slow clients",
		malformedSent.Load(), codes, oversized.Load(), unauthorised.Load(), unauthorisedPassed.Load())
	t.Logf("goroutines %.0f before, %.0f at most; resident memory %.1f MiB before, %.1f MiB at most",
		g0, gMax, rss0/(1<<20), rssMax/(1<<20))
	if wellFailed.Load() > 0 {
		t.Errorf("%d well-behaved requests failed", wellFailed.Load())
	}
	// Bounded: each admitted connection holds a few goroutines, and the
	// caps (agent/localapi's maxConnsUnix, maxConnsTCP) admit 256 + 32 at
	// once.
	if gMax > g0+3*(256+32)+20 {
		t.Errorf("goroutines reached %.0f from %.0f: not bounded by the connection caps", gMax, g0)
	}
	if rssMax > 256<<20 {
		t.Errorf("resident memory reached %.1f MiB", rssMax/(1<<20))
	}
	eventually(t, 15*time.Second, "goroutines back near the start", func() (bool, string) {
		g, err := a.metric("go_goroutines")
		return err == nil && g <= g0+10, fmt.Sprint(g)
	})
	if hb := heartbeats(); hb != hbBefore {
		t.Errorf("heartbeats went from %v to %v: an unauthorised refresh got through", hbBefore, hb)
	}
	if n := countKind(a, "activated"); n != 1 {
		t.Errorf("%d activations in the audit log, want the test's one", n)
	}

	t.Run("flood past the connection caps", func(t *testing.T) {
		var conns []net.Conn
		for range 256 + 16 {
			if c, err := net.Dial("unix", sock); err == nil {
				conns = append(conns, c)
			}
		}
		for range 32 + 16 {
			if c, err := net.Dial("tcp", a.http); err == nil {
				conns = append(conns, c)
			}
		}
		// A new connection, as a new client would open: the pooled ones
		// were accepted before the flood.
		fresh := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		began := time.Now()
		resp, err := fresh.Get("http://" + a.http + "/v1/status")
		waited := time.Since(began)
		if err == nil {
			resp.Body.Close()
		}
		for _, c := range conns {
			c.Close()
		}
		t.Logf("%d idle connections held: a status read waited %v (%v)", len(conns), waited.Round(time.Millisecond), err)
		eventually(t, 10*time.Second, "served again after the flood", func() (bool, string) {
			code, body := postJSON(t, wb, "http://localhost/v1/admission", `{"profile": "uc-business", "dry_run": true}`, nil)
			return code == 200, body
		})
	})
}

func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Minute)
	}
	return d
}

func countKind(a *appliance, kind string) int {
	n := 0
	for _, e := range a.auditLog().Events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// postJSON posts body as JSON and returns the status and body; 0 when the
// request failed.
func postJSON(t *testing.T, c *http.Client, url, body string, header map[string]string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}
