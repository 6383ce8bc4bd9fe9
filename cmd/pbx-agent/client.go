package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/pbx-agent/pbx-agent/agent"
	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// Exit codes of the verbs that go through the daemon (DESIGN.md section 4).
const (
	exitRefused     = 3 // the portal refused (activate)
	exitUnreachable = 4 // the portal could not be reached (activate, refresh)
)

// Timeouts of a request to the daemon. Writes wait for the portal, which
// the daemon bounds itself.
const (
	dialTimeout  = 5 * time.Second
	readTimeout  = 15 * time.Second
	writeTimeout = 2 * time.Minute
)

// apiClient talks to the running daemon over its unix socket.
type apiClient struct {
	socket string
	hc     *http.Client
}

// apiClient returns a client for the socket of the configuration
// (listen.socket, or --socket).
//
// A configuration file that no longer loads does not stop the client: the
// daemon runs on the configuration it loaded before, and the admin must
// reach it to see where it stands (its status says the reload failed). The
// client then says so and tries --socket or the default socket.
func (a *app) apiClient() (*apiClient, error) {
	cfg, err := a.config()
	if err != nil {
		socket := agent.DefaultConfig().Listen.Socket
		if f := a.root.PersistentFlags().Lookup("socket"); f != nil && f.Changed {
			socket = f.Value.String()
		}
		fmt.Fprintf(a.stderr, "pbx-agent: warning: %v; trying the socket %s\n", err, socket)
		return newAPIClient(socket), nil
	}
	return newAPIClient(cfg.Listen.Socket), nil
}

func newAPIClient(socket string) *apiClient {
	return &apiClient{socket: socket, hc: &http.Client{Transport: &http.Transport{
		// No proxy: the daemon is on this machine, whatever HTTP_PROXY says.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout}
			return d.DialContext(ctx, "unix", socket)
		},
		MaxResponseHeaderBytes: 64 << 10,
	}}}
}

// daemonError is an error answer of the daemon: {"error", "code"}.
type daemonError struct {
	status int
	body   apitype.ErrorBody
	raw    []byte // the answer as it came, for verbs whose non-2xx answers carry more
}

func (e *daemonError) Error() string {
	if e.status == http.StatusForbidden {
		return "permission denied: " + e.body.Error
	}
	return e.body.Error
}

// do sends a request to the daemon and decodes a 2xx answer into out: JSON
// into a pointer to a value, or the raw body into a *[]byte. Errors are one
// line, for people.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	timeout := readTimeout
	var body io.Reader
	if method != http.MethodGet {
		timeout = writeTimeout
	}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of pbx-agent on %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		de := &daemonError{status: resp.StatusCode, raw: data}
		if json.Unmarshal(data, &de.body) != nil || de.body.Error == "" {
			de.body.Error = fmt.Sprintf("pbx-agent on %s answered %s", c.socket, resp.Status)
		}
		return de
	}
	switch out := out.(type) {
	case nil:
	case *[]byte:
		*out = data
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("the answer of pbx-agent on %s: %w", c.socket, err)
		}
	}
	return nil
}

// connError explains why the daemon could not be reached.
func (c *apiClient) connError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach pbx-agent on %s: is the daemon running? (systemctl status pbx-agent)", c.socket)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		group := socketGroup(c.socket)
		return fmt.Errorf("permission denied on %s: join the group %s (sudo usermod -aG %s $USER, then log in again) or run as root",
			c.socket, group, group)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("pbx-agent on %s did not answer in time", c.socket)
	}
	return fmt.Errorf("talking to pbx-agent on %s: %w", c.socket, err)
}

// socketGroup names the group owning the socket: the one to join to use
// it. It falls back to the packaged default.
func socketGroup(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return localapi.DefaultReadGroup
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Gid == 0 {
		return localapi.DefaultReadGroup
	}
	g, err := user.LookupGroupId(strconv.FormatUint(uint64(st.Gid), 10))
	if err != nil {
		return localapi.DefaultReadGroup
	}
	return g.Name
}

// exitFor gives an error from the daemon its exit code: 3 refused by the
// portal, 4 portal unreachable, 2 anything else.
func exitFor(err error) error {
	code := exitError
	var de *daemonError
	if errors.As(err, &de) {
		switch de.body.Code {
		case apitype.CodeRefused:
			code = exitRefused
		case apitype.CodePortalUnreachable:
			code = exitUnreachable
		}
	}
	return &codedError{code: code, err: err}
}
