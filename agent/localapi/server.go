package localapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/httpserve"
)

// Kind says what a listener is, and so what its peers may do.
type Kind int

const (
	// Unix is the unix socket: the full API, as the peer's credentials allow.
	Unix Kind = iota + 1
	// TCP is the loopback HTTP listener: read-only for every peer.
	TCP
)

func (k Kind) String() string {
	switch k {
	case Unix:
		return "unix"
	case TCP:
		return "tcp"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// DefaultReadGroup is the group whose members may read the API.
const DefaultReadGroup = "pbx-agent"

// Limits of the HTTP servers. Peers are local programs (the CLI, WMS,
// monitoring): the numbers bound a misbehaving one, not real load.
//
// The socket takes as many connections as a WMS has workers that keep
// theirs open: Apache's prefork MPM allows 256 by default. Past the cap a
// new connection evicts an idle one, and a request racing that eviction
// fails, so the cap sits above the worker pools integrators run, not at
// them. An idle connection costs its goroutine and buffers, tens of KiB.
// The TCP listener serves the status page and scrapes.
const (
	maxBodyBytes   = 64 << 10
	maxHeaderBytes = 16 << 10
	maxConnsUnix   = 256
	maxConnsTCP    = 32
	// maxInflightTCP bounds the TCP requests in handlers at once: a flood
	// of page loads and scrapes keeps at most this many busy, leaving the
	// CPU to the socket, whose peers admit users and run the CLI.
	maxInflightTCP  = 2
	backendTO       = 90 * time.Second // activation and refresh talk to the portal
	writeTO         = backendTO + 10*time.Second
	shutdownTimeout = 5 * time.Second
)

// timeouts cut off slow and idle clients, so a peer that dribbles its
// request, or keeps a connection open doing nothing, cannot hold a slot
// for long.
type timeouts struct {
	readHeader time.Duration // from the connection (or the last answer) to the request's headers
	read       time.Duration // to the whole request, body included
	idle       time.Duration // a keep-alive connection between requests
}

var defaultTimeouts = timeouts{readHeader: 5 * time.Second, read: 30 * time.Second, idle: 30 * time.Second}

// Config configures New.
type Config struct {
	Backend Backend
	Logger  *slog.Logger // nil discards
	// WriteGroups are the groups (names, api.write_groups) whose members may
	// write besides root and the daemon's own user. Each must exist.
	WriteGroups []string
	// ReadGroup is the group whose members may read; "" means
	// DefaultReadGroup. A group that does not exist (a development machine)
	// is tolerated: then only root, the daemon's user and WriteGroups read.
	ReadGroup string
	// Ready reports whether the daemon is ready (state loaded, listeners
	// bound) for GET /readyz. nil means always ready.
	Ready func() bool
	// Metrics serves GET /metrics (read permission); nil answers 404.
	Metrics http.Handler

	timeouts *timeouts // nil is defaultTimeouts; tests shorten them
}

// Server is the local API. One Server serves any number of listeners.
type Server struct {
	backend Backend
	log     *slog.Logger
	ready   func() bool
	metrics http.Handler
	to      timeouts

	selfUID     uint32
	writeGIDs   map[uint32]bool
	writeGroups []string // names, for messages
	readGID     uint32
	readGroup   string // name, for messages
	hasReadGID  bool

	lmu       sync.Mutex // guards listeners
	listeners apitype.ListenersStatus
}

// New resolves the groups of cfg and returns the API.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("localapi: no backend")
	}
	s := &Server{
		backend:     cfg.Backend,
		log:         cfg.Logger,
		ready:       cfg.Ready,
		metrics:     cfg.Metrics,
		to:          defaultTimeouts,
		selfUID:     uint32(os.Getuid()),
		writeGIDs:   map[uint32]bool{},
		writeGroups: cfg.WriteGroups,
		readGroup:   cfg.ReadGroup,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.timeouts != nil {
		s.to = *cfg.timeouts
	}
	if s.ready == nil {
		s.ready = func() bool { return true }
	}
	for _, name := range cfg.WriteGroups {
		gid, err := lookupGID(name)
		if err != nil {
			return nil, fmt.Errorf("api.write_groups: %w", err)
		}
		s.writeGIDs[gid] = true
	}
	if s.readGroup == "" {
		s.readGroup = DefaultReadGroup
	}
	gid, err := lookupGID(s.readGroup)
	var unknown user.UnknownGroupError
	switch {
	case err == nil:
		s.readGID, s.hasReadGID = gid, true
	case errors.As(err, &unknown):
		s.log.Info("read group does not exist: only root, the daemon's user and api.write_groups may read the local API",
			"group", s.readGroup)
	default:
		return nil, fmt.Errorf("local API read group: %w", err)
	}
	return s, nil
}

func lookupGID(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("group %q does not exist: %w", name, err)
		}
		return 0, fmt.Errorf("looking up group %q: %w", name, err)
	}
	gid, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %q has a non-numeric gid %q", name, g.Gid)
	}
	return uint32(gid), nil
}

// ListenUnix listens on the unix socket at path, which it owns from then on.
// It creates the parent folder if missing (0755) and refuses to start if
// something answers on path ("another pbx-agent is running"); a stale socket
// file left by a crash is replaced. The socket is given to group when that
// group exists (in tests and the demo it may not: skipped) and set to mode.
func (s *Server) ListenUnix(ctx context.Context, path, group string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("local API socket folder: %w", err)
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("local API socket: %w", err)
	case fi.Mode().Type() != os.ModeSocket:
		return nil, fmt.Errorf("local API socket %s exists and is not a socket: move it away", path)
	default:
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("another pbx-agent is running on %s", path)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			// Not proof that nobody listens (a full backlog answers
			// EAGAIN): leave the socket alone.
			return nil, fmt.Errorf("checking for another pbx-agent on %s: %w", path, err)
		}
		// Nothing answers: the file is left over from a process that died.
		s.log.Info("removing stale local API socket", "path", path, "dial", err)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		return nil, err
	}
	if group != "" {
		gid, err := lookupGID(group)
		var unknown user.UnknownGroupError
		switch {
		case errors.As(err, &unknown):
			s.log.Debug("socket group does not exist: socket keeps the daemon's group", "group", group, "path", path)
		case err != nil:
			return fail(fmt.Errorf("local API socket group: %w", err))
		case int(gid) == os.Getegid():
			// Already the socket's group: the daemon runs as pbx-agent
			// under a unit that forbids chown (@privileged).
		default:
			if err := os.Chown(path, -1, int(gid)); err != nil {
				return fail(fmt.Errorf("local API socket: %w", err))
			}
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		return fail(fmt.Errorf("local API socket: %w", err))
	}
	return ln, nil
}

// Serve serves the API on ln until ctx ends, then shuts down gracefully
// (in-flight requests get a few seconds). kind says what the listener is:
// Unix for the full API subject to peer credentials, TCP for read-only.
// It returns nil after a shutdown through ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener, kind Kind) error {
	return s.serve(ctx, ln, kind, false)
}

// ServeSystemd is Serve for a listener systemd bound and handed over
// (socket activation): the status says so.
func (s *Server) ServeSystemd(ctx context.Context, ln net.Listener, kind Kind) error {
	return s.serve(ctx, ln, kind, true)
}

// bindBackoff spaces the attempts to bind listen.http while another
// process holds its port.
var bindBackoff = httpserve.Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second}

// ServeTCPAddr binds addr and serves the read-only TCP listener on it
// until ctx ends. While addr cannot be bound (another local process holds
// the port) it keeps trying with backoff, logs the failure and reports it
// in the status (listeners.http.error): the daemon runs and enforces
// without its TCP listener, which only shows the status.
func (s *Server) ServeTCPAddr(ctx context.Context, addr string) error {
	var lastErr string
	ln, err := httpserve.Bind(ctx, "tcp", addr, bindBackoff, func(attempt int, err error) {
		msg := err.Error()
		s.setListener(TCP, &apitype.ListenerStatus{Address: addr,
			Error: fmt.Sprintf("not listening: %s; retrying (attempt %d)", msg, attempt)})
		if msg != lastErr {
			lastErr = msg
			s.log.Error("listen.http cannot be bound: the status page and local scrapes are unavailable until it is; retrying",
				"addr", addr, "err", err,
				"fix", "find the process holding the port (ss -ltnp) and stop it, or let systemd hold it (pbx-agent-http.socket)")
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("config listen.http: %w", err)
	}
	if lastErr != "" {
		s.log.Info("listen.http bound after failures", "addr", ln.Addr().String())
	}
	return s.serve(ctx, ln, TCP, false)
}

// setListener records the state of a listener for the status.
func (s *Server) setListener(kind Kind, st *apitype.ListenerStatus) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	switch kind {
	case Unix:
		s.listeners.Socket = st
	case TCP:
		s.listeners.HTTP = st
	}
}

// listenersStatus is a copy of the listeners' states; nil before any.
func (s *Server) listenersStatus() *apitype.ListenersStatus {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.listeners.Socket == nil && s.listeners.HTTP == nil {
		return nil
	}
	out := &apitype.ListenersStatus{}
	if l := s.listeners.Socket; l != nil {
		c := *l
		out.Socket = &c
	}
	if l := s.listeners.HTTP; l != nil {
		c := *l
		out.HTTP = &c
	}
	return out
}

func (s *Server) serve(ctx context.Context, ln net.Listener, kind Kind, systemd bool) error {
	var hosts []string
	var gate chan struct{}
	limit := maxConnsUnix
	switch kind {
	case Unix:
		hosts = []string{"", "localhost", "local"}
	case TCP:
		limit = maxConnsTCP
		port := "0"
		if a, ok := ln.Addr().(*net.TCPAddr); ok {
			port = strconv.Itoa(a.Port)
		}
		hosts = []string{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port}
		gate = make(chan struct{}, maxInflightTCP)
	default:
		return fmt.Errorf("localapi: unknown listener kind %v", kind)
	}
	s.setListener(kind, &apitype.ListenerStatus{Address: ln.Addr().String(), Systemd: systemd})
	lis := newLimitListener(ln, limit)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.to.readHeader,
		ReadTimeout:       s.to.read,
		WriteTimeout:      writeTO,
		IdleTimeout:       s.to.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         lis.connState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// Requests outlive ctx by up to shutdownTimeout: a graceful stop
		// lets an activation in flight finish.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext: func(cctx context.Context, c net.Conn) context.Context {
			ci := s.connInfo(c, kind, hosts)
			ci.conn, ci.gate, ci.peer = c, gate, ci.describe()
			return context.WithValue(cctx, connKey{}, ci)
		},
	}
	if kind == TCP {
		// Bound at start or later (after a squatter let go): worth a line.
		s.log.Info("HTTP listener bound", "addr", ln.Addr().String())
	} else {
		s.log.Debug("local API serving", "kind", kind, "addr", ln.Addr().String())
	}
	if err := httpserve.Run(ctx, srv, shutdownTimeout, func() error { return srv.Serve(lis) }); err != nil {
		return fmt.Errorf("local API on %s: %w", ln.Addr(), err)
	}
	return nil
}

// access is what a peer may do.
type access int

const (
	accessNone access = iota
	accessRead
	accessWrite
)

// connInfo is what the door learnt of a connection: attached by ConnContext,
// read by every request on it.
type connInfo struct {
	kind   Kind
	hosts  []string // Host values accepted on guarded endpoints
	access access
	creds  *peerCreds    // unix peers only; nil when unknown
	peer   string        // the peer for the audit log (describe), set by Serve
	conn   net.Conn      // for the connection cap: a request reached a handler
	gate   chan struct{} // TCP: a slot per request in a handler (maxInflightTCP)
}

type connKey struct{}

func connFrom(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connKey{}).(*connInfo)
	if ci == nil {
		return &connInfo{} // not through Serve: no rights
	}
	return ci
}

// describe is the peer for the audit log: "uid 1001 pid 4242", or the
// listener's kind when the peer is unknown.
func (ci *connInfo) describe() string {
	if ci.creds == nil {
		return ci.kind.String()
	}
	return "uid " + strconv.FormatUint(uint64(ci.creds.uid), 10) + " pid " + strconv.Itoa(int(ci.creds.pid))
}

// connInfo decides, once per connection, what its peer may do.
func (s *Server) connInfo(c net.Conn, kind Kind, hosts []string) *connInfo {
	ci := &connInfo{kind: kind, hosts: hosts}
	if kind == TCP {
		ci.access = accessRead
		return ci
	}
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		s.log.Warn("local API: unix listener gave a non-unix connection; no rights", "type", fmt.Sprintf("%T", c))
		return ci
	}
	creds, err := peerCredentials(uc)
	if err != nil {
		s.log.Warn("local API: cannot read peer credentials; no rights", "err", err)
		return ci
	}
	ci.creds = creds
	ci.access = s.accessOf(creds)
	return ci
}

func (s *Server) accessOf(p *peerCreds) access {
	if p.uid == 0 || p.uid == s.selfUID {
		return accessWrite
	}
	gids := append([]uint32{p.gid}, p.groups...)
	for _, g := range gids {
		if s.writeGIDs[g] {
			return accessWrite
		}
	}
	for _, g := range gids {
		if s.hasReadGID && g == s.readGID {
			return accessRead
		}
	}
	return accessNone
}

// deniedMessage tells a refused peer what would let it in.
func (s *Server) deniedMessage(ci *connInfo, need perm) string {
	who := "this peer"
	if ci.creds != nil {
		who = "uid " + strconv.FormatUint(uint64(ci.creds.uid), 10)
	}
	if need == permAdmit {
		if ci.kind == TCP {
			return "admission is asked on the unix socket (listen.socket), by root or a member of group " + s.readGroup + ": the TCP listener may not reserve users"
		}
		return who + " may not ask for admission: join the group " + s.readGroup + " (then log in again)"
	}
	if need == permReadSocket && ci.kind == TCP {
		return "the audit log is served on the unix socket only (pbx-agent audit), to root and group " + s.readGroup + ": not on the TCP listener, which every local user reaches"
	}
	if need == permWrite {
		if ci.kind == TCP {
			return "the TCP listener is read-only: writes go through the unix socket (the pbx-agent command)"
		}
		switch len(s.writeGroups) {
		case 0:
			return who + " may not change pbx-agent: writes need root (or a group named in api.write_groups)"
		case 1:
			return who + " may not change pbx-agent: writes need root or membership in group " + s.writeGroups[0]
		default:
			return who + " may not change pbx-agent: writes need root or membership in one of the groups " + strings.Join(s.writeGroups, ", ")
		}
	}
	if !s.hasReadGID {
		return who + " may not read pbx-agent: reads need root or group " + s.readGroup + ", which does not exist on this system"
	}
	return who + " may not read pbx-agent: join the group " + s.readGroup + " (then log in again)"
}

// limitListener caps concurrent connections, so that local peers cannot
// exhaust the daemon's file descriptors. A connection that arrives when
// every slot is taken closes another and takes its slot: first the one
// that has waited longest, past slowAfter, without bringing a request to a
// handler (a slow or silent client), else the keep-alive connection idle
// the longest (an HTTP client opens a new connection when the server closes
// an idle one). It waits for a slot only when neither exists. The server's
// timeouts cut slow clients off in any case.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	idleMu   sync.Mutex
	idle     map[*limitConn]time.Time // connections between requests, and since when
	pending  map[*limitConn]time.Time // connections reading a request's headers, and since when
	turnIdle chan struct{}            // a connection turned idle
}

// slowAfter is how long a client may take to send a request's headers
// before its connection is the first to go when the cap is reached: long
// enough for a burst of honest clients on a loaded machine, well under the
// 5 s a slow client may hold a slot for otherwise.
const slowAfter = 2 * time.Second

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{}),
		idle: map[*limitConn]time.Time{}, pending: map[*limitConn]time.Time{}, turnIdle: make(chan struct{}, 1)}
}

// Accept takes the next connection, then a slot for it: a free one, or
// the slot of the connection idle the longest, closed for it, or else the
// first slot that frees up.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, owner: l, release: func() { <-l.sem }}, nil
		default:
		}
		if l.closeIdlest() {
			continue // its Close freed a slot
		}
		t := time.NewTimer(slowAfter) // a pending connection may turn slow meanwhile
		select {
		case l.sem <- struct{}{}:
			t.Stop()
			return &limitConn{Conn: c, owner: l, release: func() { <-l.sem }}, nil
		case <-l.turnIdle:
		case <-t.C:
		case <-l.done:
			t.Stop()
			c.Close()
			return nil, net.ErrClosed
		}
		t.Stop()
	}
}

// closeIdlest closes the slowest pending connection, else the one idle the
// longest; false when there is neither.
func (l *limitListener) closeIdlest() bool {
	// Connection ages are the machine's monotonic time: they judge clients,
	// not licences.
	l.idleMu.Lock()
	oldest := func(m map[*limitConn]time.Time, before time.Time) *limitConn {
		var o *limitConn
		var since time.Time
		for c, t := range m {
			if t.Before(before) && (o == nil || t.Before(since)) {
				o, since = c, t
			}
		}
		return o
	}
	// Ages on the machine's monotonic clock, as connState records them: a
	// socket's wait is this process's matter, not the licence's.
	victim := oldest(l.pending, time.Now().Add(-slowAfter))
	if victim == nil {
		victim = oldest(l.idle, time.Now().Add(time.Hour))
	}
	delete(l.idle, victim)
	delete(l.pending, victim)
	l.idleMu.Unlock()
	if victim == nil {
		return false
	}
	victim.Close()
	return true
}

// serving records that a request on c reached a handler: c is no longer
// a slow client.
func (l *limitListener) serving(c *limitConn) {
	l.idleMu.Lock()
	delete(l.pending, c)
	l.idleMu.Unlock()
}

// connState is the server's http.Server.ConnState: it keeps the sets of
// pending and idle connections. Their ages are the machine's monotonic
// clock (time.Now's reading carries it): how long a socket has waited is
// a matter of this process, not of the licence.
func (l *limitListener) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitConn)
	if !ok {
		return
	}
	l.idleMu.Lock()
	defer l.idleMu.Unlock()
	switch st {
	case http.StateNew:
		l.pending[lc] = time.Now()
		return
	case http.StateActive:
		// Reading a request: pending until a handler has it (serving).
		if _, ok := l.pending[lc]; !ok {
			l.pending[lc] = time.Now()
		}
		delete(l.idle, lc)
		return
	case http.StateIdle:
	default:
		delete(l.idle, lc)
		delete(l.pending, lc)
		return
	}
	delete(l.pending, lc)
	l.idle[lc] = time.Now()
	select {
	case l.turnIdle <- struct{}{}:
	default:
	}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	owner       *limitListener
	releaseOnce sync.Once
	release     func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(c.release)
	return err
}

// NetConn returns the connection underneath, for peer credentials.
func (c *limitConn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection underneath. net/http does so
// before closing a connection whose request body it did not read (a
// request refused before its body): the client then reads the answer and
// an end of stream, not a reset.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
