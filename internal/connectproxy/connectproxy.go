// Package connectproxy is a forward HTTP proxy that implements CONNECT
// alone, as a site's proxy does for HTTPS: tests put it between the agent
// and the portal. It resolves names from its own table, so a test can
// serve a non-loopback name such as portal.test without touching the
// system's resolver.
package connectproxy

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Config is what the proxy knows.
type Config struct {
	// Hosts maps the names clients may CONNECT to onto the addresses the
	// proxy dials: "portal.test" → "127.0.0.1". Any other name is refused
	// with 502, as a proxy that cannot resolve it would.
	Hosts map[string]string
	// User and Password, when set, are required in Proxy-Authorization
	// (Basic); a request without them gets 407.
	User, Password string
	Logger         *slog.Logger // nil discards
}

// Proxy is a running proxy.
type Proxy struct {
	cfg Config
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex
	connects []string // CONNECT targets accepted, in order
	refused  []int    // statuses of requests refused
	open     map[net.Conn]bool
	closed   bool
	tunnels  sync.WaitGroup
}

// Start listens on addr (127.0.0.1:0 for any port) and serves until Close.
func Start(addr string, cfg Config) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg, ln: ln, open: map[net.Conn]bool{}}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Connects returns the CONNECT targets the proxy tunnelled, in order.
func (p *Proxy) Connects() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.connects)
}

// Refused returns the statuses of the requests it refused, in order.
func (p *Proxy) Refused() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.refused)
}

// Close stops the proxy and ends its tunnels.
func (p *Proxy) Close() error {
	err := p.srv.Close() // hijacked connections are the proxy's to close
	p.mu.Lock()
	p.closed = true
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.tunnels.Wait()
	return err
}

func (p *Proxy) refuse(w http.ResponseWriter, status int, why string) {
	p.mu.Lock()
	p.refused = append(p.refused, status)
	p.mu.Unlock()
	p.cfg.Logger.Info("refused", "status", status, "why", why)
	if status == http.StatusProxyAuthRequired {
		w.Header().Set("Proxy-Authenticate", `Basic realm="proxy"`)
	}
	http.Error(w, why, status)
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		p.refuse(w, http.StatusMethodNotAllowed, "this proxy only tunnels (CONNECT)")
		return
	}
	if p.cfg.User != "" && r.Header.Get("Proxy-Authorization") != basicAuth(p.cfg.User, p.cfg.Password) {
		p.refuse(w, http.StatusProxyAuthRequired, "proxy authentication required")
		return
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		p.refuse(w, http.StatusBadRequest, "CONNECT wants host:port")
		return
	}
	ip, ok := p.cfg.Hosts[host]
	if !ok {
		p.refuse(w, http.StatusBadGateway, "unknown host "+host)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	upstream, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
	if err != nil {
		p.refuse(w, http.StatusBadGateway, err.Error())
		return
	}
	client, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		p.refuse(w, http.StatusInternalServerError, err.Error())
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		client.Close()
		upstream.Close()
		return
	}
	p.connects = append(p.connects, r.Host)
	p.open[client], p.open[upstream] = true, true
	p.tunnels.Add(2)
	p.mu.Unlock()
	p.cfg.Logger.Info("tunnel", "to", r.Host)
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close() // the copies below end at once
	}
	// Bytes the client sent after its request are in rw's buffer.
	go p.pipe(upstream, rw, client, upstream)
	go p.pipe(client, upstream, client, upstream)
}

// pipe copies until either side ends, then closes both so the other copy
// ends too.
func (p *Proxy) pipe(dst io.Writer, src io.Reader, a, b net.Conn) {
	defer p.tunnels.Done()
	_, err := io.Copy(dst, src)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		p.cfg.Logger.Debug("tunnel ended", "err", err)
	}
	a.Close()
	b.Close()
	p.mu.Lock()
	delete(p.open, a)
	delete(p.open, b)
	p.mu.Unlock()
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}
