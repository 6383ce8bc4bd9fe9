//go:build !linux

package localapi

import (
	"errors"
	"net"
)

type peerCreds struct {
	pid      int32
	uid, gid uint32
	groups   []uint32
}

// peerCredentials is Linux only: elsewhere unix peers get no rights.
func peerCredentials(*net.UnixConn) (*peerCreds, error) {
	return nil, errors.New("peer credentials are read on Linux only")
}
