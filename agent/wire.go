package agent

import (
	"errors"
	"maps"
	"net/http"
	"slices"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// wireState is what the heartbeats know of the portal's side of the wire:
// whether it reads compact heartbeats, and what it last acknowledged, so a
// compact heartbeat leaves out what the portal already has. It lives in
// memory only: after a start the first heartbeat reports everything. The
// licence component's exchangeMu guards it.
type wireState struct {
	// compact: the portal's last signed ok answer listed
	// protocol.TypeCompactHeartbeat among the formats it reads (a "same"
	// answer says so too).
	compact bool
	// acked is what the last heartbeat the portal answered ok reported;
	// nil since the start or an activation.
	acked *heartbeatReport
}

// heartbeatReport is what a heartbeat reports of the appliance.
type heartbeatReport struct {
	state, version string
	counted        bool // usage was counted; usage and overuse mean nothing before
	usage, overuse license.Counts
	results        []protocol.CommandResult
}

// changes is the Report of a compact heartbeat: what differs from the
// report last acknowledged, the results not yet acknowledged, and fetch.
func (w *wireState) changes(r heartbeatReport, fetch bool) protocol.Report {
	out := protocol.Report{Fetch: fetch, Results: r.results}
	a := w.acked
	if a == nil || a.state != r.state {
		out.State = r.state
	}
	if a == nil || a.version != r.version {
		out.AgentVersion = r.version
	}
	if r.counted && (a == nil || !a.counted || !maps.Equal(a.usage, r.usage)) {
		out.Usage = nonNil(r.usage)
	}
	if r.counted && (a == nil || !a.counted || !maps.Equal(a.overuse, r.overuse)) {
		out.Overuse = nonNil(r.overuse)
	}
	return out
}

// nonNil points at c, or at an empty Counts: a compact heartbeat tells
// "none" ({}) from "unchanged" (absent).
func nonNil(c license.Counts) *license.Counts {
	if c == nil {
		c = license.Counts{}
	}
	return &c
}

// learn records a verified ok answer to a heartbeat that reported r.
func (w *wireState) learn(ans *protocol.Answer, r heartbeatReport) {
	if ans.Status != protocol.StatusOK {
		return
	}
	w.compact = ans.Same || slices.Contains(ans.Formats, protocol.TypeCompactHeartbeat)
	w.acked = &r
}

// formatRefused reports a refusal that says the portal does not read what
// it was sent: after it the agent sends full heartbeats until a signed
// answer says compact ones are read. A forged refusal (it is not signed)
// costs bytes, never a check: full heartbeats are checked as ever.
func formatRefused(err error) bool {
	var re *refusedError
	return errors.As(err, &re) && (re.status == http.StatusBadRequest || re.status == http.StatusUnsupportedMediaType)
}
