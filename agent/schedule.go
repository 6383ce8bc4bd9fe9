package agent

import "github.com/pbx-agent/pbx-agent/pkg/protocol"

// schedule is the heartbeat schedule in force; the heartbeat loop and the
// long-poll's retries take their waits from it (protocol.Schedule).
func (a *Agent) schedule() protocol.Schedule {
	return protocol.Schedule{Interval: a.interval(), Override: a.hb.intervalOverride(), Jitter: jitterFraction}
}
