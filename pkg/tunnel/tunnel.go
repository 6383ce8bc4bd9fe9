// Package tunnel carries temporary support SSH between the portal and an
// appliance that nothing can reach from outside. The agent dials out: one
// WebSocket (github.com/coder/websocket) to the portal, signed with the
// device key like every request, multiplexed by hashicorp/yamux. The portal
// opens a stream per support session; the agent pipes each stream to the
// one loopback address it was given, the support sshd it started, and to
// nothing else: no stream says where it goes.
//
// The package keeps no daemon state. The agent owns when a tunnel exists
// (the ssh.open command, its TTL, ssh.close); Serve reports each stream
// through Events so the agent can audit it.
package tunnel

import (
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// Limits bound one tunnel session. The zero value of a field takes its
// default.
type Limits struct {
	// MaxStreams caps concurrent streams; one more is closed at once and
	// reported through Events.Refused. Default 8.
	MaxStreams int
	// StreamWindow is yamux's receive window per stream, which bounds the
	// memory a stream can hold. Default 256 KiB, yamux's minimum.
	StreamWindow uint32
	// KeepAlive is how often each end pings the other; a session whose
	// pings go unanswered for ConnectionWriteTimeout ends. Default 15 s.
	KeepAlive time.Duration
	// WriteTimeout bounds one write to the connection. Default 10 s.
	WriteTimeout time.Duration
	// DialTimeout bounds the agent's connection to its target per stream.
	// Default 5 s.
	DialTimeout time.Duration
}

// Defaults of Limits.
const (
	DefaultMaxStreams   = 8
	DefaultStreamWindow = 256 * 1024
	DefaultKeepAlive    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultDialTimeout  = 5 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.MaxStreams <= 0 {
		l.MaxStreams = DefaultMaxStreams
	}
	if l.StreamWindow < DefaultStreamWindow {
		l.StreamWindow = DefaultStreamWindow // yamux refuses a smaller one
	}
	if l.KeepAlive <= 0 {
		l.KeepAlive = DefaultKeepAlive
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	if l.DialTimeout <= 0 {
		l.DialTimeout = DefaultDialTimeout
	}
	return l
}

func (l Limits) yamux() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = l.MaxStreams
	c.EnableKeepAlive = true
	c.KeepAliveInterval = l.KeepAlive
	c.ConnectionWriteTimeout = l.WriteTimeout
	c.StreamOpenTimeout = l.WriteTimeout
	c.StreamCloseTimeout = l.WriteTimeout
	c.MaxStreamWindowSize = l.StreamWindow
	c.LogOutput = io.Discard // errors come back as values
	return c
}

// StreamEnd is what Events.End reports about a finished stream.
type StreamEnd struct {
	ID       uint32
	ToTarget int64 // bytes from the portal to the target
	ToPortal int64 // bytes from the target to the portal
	Err      error // why it ended, nil for a clean close
}

// Events are called by Serve, from the stream's goroutine; each must
// return quickly. Nil ones are skipped.
type Events struct {
	Start   func(id uint32)
	End     func(StreamEnd)
	Refused func(id uint32, reason string)
}
