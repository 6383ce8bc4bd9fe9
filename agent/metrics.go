package agent

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/pbx-agent/pbx-agent/agent/metrics"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// Metrics returns the agent's metrics: the admission and command code
// count their decisions on it.
func (a *Agent) Metrics() *metrics.Metrics { return a.metrics }

// heartbeatResult is the pbx_agent_heartbeats_total result of an exchange
// that failed with err.
func heartbeatResult(err error) string {
	var re *refusedError
	var ue *unreachableError
	switch {
	case errors.As(err, &re):
		return metrics.HeartbeatRefused
	case errors.As(err, &ue), errors.Is(err, context.DeadlineExceeded):
		return metrics.HeartbeatUnreachable
	}
	return metrics.HeartbeatInvalid
}

// answerResult is the pbx_agent_heartbeats_total result of an answer the
// portal signed.
func answerResult(status protocol.Status) string {
	switch status {
	case protocol.StatusOK:
		return metrics.HeartbeatSuccess
	case protocol.StatusGone:
		return metrics.HeartbeatGone
	}
	return metrics.HeartbeatInvalid
}

// listenMetrics binds the remote metrics listener of metrics.listen, after
// checking its web configuration; nil when none is configured.
func (a *Agent) listenMetrics() (net.Listener, error) {
	mc := a.cfg.Metrics
	if mc.Listen == "" {
		return nil, nil
	}
	if err := metrics.ValidateWebConfig(mc.WebConfigFile); err != nil {
		return nil, fmt.Errorf("config metrics.web_config_file: %w", err)
	}
	ln, err := net.Listen("tcp", mc.Listen)
	if err != nil {
		return nil, fmt.Errorf("config metrics.listen: %w", err)
	}
	if mc.WebConfigFile == "" {
		a.log.Warn("the remote metrics listener has no web configuration: plain HTTP, no authentication",
			"addr", ln.Addr().String())
	}
	return ln, nil
}
