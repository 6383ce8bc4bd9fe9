package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
)

// exchange is one HTTP request and its response as they crossed the
// wire: request line, headers and body, status line, headers and body.
type exchange struct {
	Method, Path      string
	Status            int
	Req, Resp         int64 // bytes
	ReqBody, RespBody int64 // of which the bodies (Content-Length; -1 unknown)
}

// countingProxy forwards TCP connections to an upstream HTTP server byte
// for byte, and reads a copy of each stream as HTTP to tell where each
// request and response starts and ends: what a heartbeat costs on the
// wire, headers included, without changing a byte of it.
type countingProxy struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	done  []exchange
	conns map[net.Conn]struct{} // open client connections, closed by close
	wg    sync.WaitGroup
}

func newCountingProxy(upstream string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	return p, nil
}

func (p *countingProxy) addr() string { return p.ln.Addr().String() }

// close stops accepting, ends the open connections and waits for them.
func (p *countingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// exchanges returns a copy of the exchanges completed so far.
func (p *countingProxy) exchanges() []exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]exchange(nil), p.done...)
}

func (p *countingProxy) serve() {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		conns.Go(func() {
			p.relay(c)
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		})
	}
}

// relay copies one connection each way. The request side tells the
// response side, in order, which request each response answers (HTTP/1.1
// answers in order; a HEAD has no body).
func (p *countingProxy) relay(client net.Conn) {
	defer client.Close()
	var d net.Dialer
	up, err := d.DialContext(context.Background(), "tcp", p.upstream)
	if err != nil {
		return
	}
	defer up.Close()
	reqs := make(chan *exchange, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(reqs)
		readRequests(io.TeeReader(client, up), reqs)
		// The client is done sending: let the upstream see the end.
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	})
	wg.Go(func() {
		p.readResponses(io.TeeReader(up, client), reqs)
		client.Close()
	})
	wg.Wait()
}

// readRequests parses requests off r (which forwards what it reads) and
// hands each to the response side. After anything that is not HTTP it
// keeps forwarding without counting.
func readRequests(r io.Reader, out chan<- *exchange) {
	cr := &countReader{r: r}
	br := bufio.NewReader(cr)
	var mark int64
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			io.Copy(io.Discard, br)
			return
		}
		body, _ := io.Copy(io.Discard, req.Body)
		req.Body.Close()
		end := cr.n - int64(br.Buffered())
		out <- &exchange{Method: req.Method, Path: req.URL.Path, Req: end - mark, ReqBody: bodyLen(req.ContentLength, req.TransferEncoding, body)}
		mark = end
	}
}

func (p *countingProxy) readResponses(r io.Reader, in <-chan *exchange) {
	cr := &countReader{r: r}
	br := bufio.NewReader(cr)
	var mark int64
	for x := range in {
		resp, err := http.ReadResponse(br, &http.Request{Method: x.Method})
		if err != nil {
			break
		}
		body, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		end := cr.n - int64(br.Buffered())
		x.Status, x.Resp, x.RespBody = resp.StatusCode, end-mark, bodyLen(resp.ContentLength, resp.TransferEncoding, body)
		mark = end
		p.mu.Lock()
		p.done = append(p.done, *x)
		p.mu.Unlock()
		if resp.StatusCode == http.StatusSwitchingProtocols {
			break // the connection is another protocol's from here on
		}
	}
	// Past a response that is not HTTP, or a switch to another protocol
	// (the support tunnel's WebSocket), forward the rest uncounted, and
	// keep the request side from blocking on a full channel.
	go func() {
		for range in {
		}
	}()
	io.Copy(io.Discard, br)
}

// bodyLen is the body's length on the wire when it went as is (a
// Content-Length, or nothing at all), else -1: chunked framing adds bytes
// that are neither headers nor body.
func bodyLen(contentLength int64, te []string, read int64) int64 {
	if len(te) > 0 {
		return -1
	}
	if contentLength >= 0 {
		return contentLength
	}
	return read
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
