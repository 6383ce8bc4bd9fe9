package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestCountingProxy sends known bytes through the proxy, two requests on
// one connection, and checks each exchange's count against the bytes
// that crossed, byte for byte, and that they crossed unchanged.
func TestCountingProxy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got", string(body))
		io.WriteString(w, "answer to "+r.URL.Path)
	}))
	defer srv.Close()
	p, err := newCountingProxy(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	c, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reqs := []string{
		"POST /api/v1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"GET /other HTTP/1.1\r\nHost: x\r\n\r\n",
	}
	counted := &countReader{r: c}
	br := bufio.NewReader(counted)
	for i, raw := range reqs {
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if i == 0 && (resp.Header.Get("X-Got") != "hello" || string(body) != "answer to /api/v1/heartbeat") {
			t.Errorf("the exchange changed on the way: %v %q", resp.Header, body)
		}
	}
	received := counted.n - int64(br.Buffered())
	var got []exchange
	if err := poll(context.Background(), 5*time.Second, "two exchanges counted", func() error {
		if got = p.exchanges(); len(got) < 2 {
			return io.ErrUnexpectedEOF
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var respBytes int64
	for i, x := range got {
		if x.Req != int64(len(reqs[i])) {
			t.Errorf("exchange %d: %d request bytes, sent %d", i, x.Req, len(reqs[i]))
		}
		if x.Status != 200 || x.Resp <= 0 {
			t.Errorf("exchange %d: %+v", i, x)
		}
		respBytes += x.Resp
	}
	if respBytes != received {
		t.Errorf("responses counted %d bytes, the client received %d", respBytes, received)
	}
	if got[0].ReqBody != 5 || got[1].ReqBody != 0 || got[0].RespBody != int64(len("answer to /api/v1/heartbeat")) {
		t.Errorf("bodies: %+v", got)
	}
	if got[0].Path != "/api/v1/heartbeat" || got[0].Method != "POST" || got[1].Path != "/other" {
		t.Errorf("paths: %+v", got)
	}
}

// TestCountingProxyAfterAnUpgrade: once the upstream switches protocols
// (the support tunnel's WebSocket), bytes keep flowing both ways. The
// upstream speaks first after its 101, as a portal opening a stream does.
func TestCountingProxyAfterAnUpgrade(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		io.WriteString(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nhello")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		io.WriteString(rw, "echo "+line)
		rw.Flush()
	}))
	defer srv.Close()
	p, err := newCountingProxy(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	c, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /api/v1/tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	hello := make([]byte, 5)
	if _, err := io.ReadFull(br, hello); err != nil || string(hello) != "hello" {
		t.Fatalf("the upstream's first bytes after the switch: %q %v", hello, err)
	}
	io.WriteString(c, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo ping\n" {
		t.Fatalf("after the switch: %q %v", line, err)
	}
}
