package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
)

// The names systemd gives the listeners it hands over (FileDescriptorName=
// of pbx-agent.socket and pbx-agent-http.socket), after the keys they stand
// for. A socket unit names all of its descriptors alike, hence two units.
const (
	fdNameSocket = "socket" // listen.socket
	fdNameHTTP   = "http"   // listen.http
)

// listeners are the local API's listeners at start.
type listeners struct {
	unix        net.Listener
	unixSystemd bool         // unix was handed over by systemd
	http        net.Listener // handed over by systemd; nil: the agent binds listen.http itself
	metrics     net.Listener // metrics.listen; nil when none
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.unix, l.http, l.metrics} {
		if ln != nil {
			ln.Close()
		}
	}
}

// openListeners takes the listeners systemd bound for the agent (socket
// activation: bound before any user could take the port or the path), and
// binds the unix socket itself when systemd handed none over. The TCP
// listener it does not bind: Run serves listen.http with retries, so that a
// port held by another process never keeps the daemon from enforcing.
func (a *Agent) openListeners(ctx context.Context, api *localapi.Server) (*listeners, error) {
	named, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("listeners from systemd: %w", err)
	}
	l, err := a.adoptListeners(named)
	if err != nil {
		return nil, err
	}
	if l.unix == nil {
		if l.unix, err = api.ListenUnix(ctx, a.cfg.Listen.Socket, localapi.DefaultReadGroup, 0o660); err != nil {
			l.close()
			return nil, err
		}
	}
	if l.metrics, err = a.listenMetrics(); err != nil { // metrics.listen: metrics.go
		l.close()
		return nil, err
	}
	return l, nil
}

// adoptListeners sorts the listeners systemd handed over by name: "socket"
// must be a unix socket and "http" a TCP one. A listener with another name
// (a unit without FileDescriptorName=) is placed by its address. One that
// the configuration does not want is closed, with a warning.
func (a *Agent) adoptListeners(named map[string][]net.Listener) (*listeners, error) {
	l := &listeners{}
	var errs []error
	for name, lns := range named {
		for _, ln := range lns {
			network := ln.Addr().Network()
			want := map[string]string{fdNameSocket: "unix", fdNameHTTP: "tcp"}[name]
			switch {
			case want != "" && network != want:
				errs = append(errs, fmt.Errorf("systemd handed over %q as %s %s, want a %s listener: fix ListenStream= of the pbx-agent socket units",
					name, network, ln.Addr(), want))
				ln.Close()
			case network == "unix" && l.unix == nil:
				l.unix, l.unixSystemd = ln, true
			case network == "tcp" && l.http == nil:
				l.http = ln
			default:
				a.log.Warn("systemd handed over a listener the agent does not use; closed", "name", name, "addr", ln.Addr().String())
				ln.Close()
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		l.close()
		return nil, err
	}
	if l.unix != nil {
		if got := l.unix.Addr().String(); got != a.cfg.Listen.Socket {
			// The CLI finds the daemon at listen.socket.
			a.log.Error("listen.socket differs from the socket systemd handed over: the CLI will not find the daemon; make them agree (a drop-in for pbx-agent.socket)",
				"listen.socket", a.cfg.Listen.Socket, "systemd", got)
		}
	}
	if l.http != nil {
		got := l.http.Addr().String()
		switch {
		case a.cfg.Listen.HTTP == "":
			a.log.Warn("listen.http is empty but systemd handed over a TCP listener: not served; disable pbx-agent-http.socket",
				"systemd", got)
			l.http.Close()
			l.http = nil
		case !sameTCPAddr(a.cfg.Listen.HTTP, got):
			a.log.Warn("listen.http differs from the TCP listener systemd handed over, which is served: make them agree (a drop-in for pbx-agent-http.socket)",
				"listen.http", a.cfg.Listen.HTTP, "systemd", got)
		}
	}
	return l, nil
}

// sameTCPAddr reports whether a configured address and a bound one agree;
// a configured port 0 or host name matches any.
func sameTCPAddr(configured, bound string) bool {
	ch, cp, err := net.SplitHostPort(configured)
	if err != nil {
		return false
	}
	bh, bp, err := net.SplitHostPort(bound)
	if err != nil {
		return false
	}
	if cp != "0" && cp != bp {
		return false
	}
	if ip := net.ParseIP(ch); ip != nil {
		return ip.Equal(net.ParseIP(bh))
	}
	return ch == "" || strings.EqualFold(ch, "localhost")
}

// systemdNames lists the listeners systemd handed over, for the log.
func systemdNames(l *listeners) string {
	var names []string
	if l.unixSystemd {
		names = append(names, "listen.socket")
	}
	if l.http != nil {
		names = append(names, "listen.http")
	}
	return strings.Join(names, ",")
}
