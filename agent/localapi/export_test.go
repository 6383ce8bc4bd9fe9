package localapi

import (
	"context"
	"net/http"
	"time"
)

// Internals for the tests in package localapi_test. They are external
// because they import localapitest, which imports this package.

const (
	MaxBodyBytes = maxBodyBytes
	MaxConnsUnix = maxConnsUnix
	MaxConnsTCP  = maxConnsTCP
)

// Timeouts are the server's connection timeouts (see timeouts).
type Timeouts struct{ ReadHeader, Read, Idle time.Duration }

// SetTimeouts replaces the daemon's timeouts in c, so that a test sees slow
// clients cut off in seconds, or keeps idle ones for as long as it runs.
func SetTimeouts(c *Config, to Timeouts) {
	c.timeouts = &timeouts{readHeader: to.ReadHeader, read: to.Read, idle: to.Idle}
}

// Perm is what a route asks of its peer.
type Perm = perm

const (
	PermRead       = permRead
	PermWrite      = permWrite
	PermAdmit      = permAdmit
	PermReadSocket = permReadSocket
)

// RoutePerms returns the permission of every route, keyed "METHOD /path":
// the tests go through the table, so a route added later is checked too.
func RoutePerms() map[string]Perm {
	perms := make(map[string]Perm, len(routes))
	for key, rt := range routes {
		perms[key] = rt.perm
	}
	return perms
}

// AsUnixWriter returns r as ServeHTTP sees a request from a peer with write
// rights on the unix socket, for a test that skips the listener.
func AsUnixWriter(r *http.Request) *http.Request {
	ci := &connInfo{kind: Unix, access: accessWrite, hosts: []string{"local"}}
	return r.WithContext(context.WithValue(r.Context(), connKey{}, ci))
}
