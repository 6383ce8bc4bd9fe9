package agent

import (
	"context"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// evaluate records the verdict now and applies it to telephony in the
// caller: what lifecycleLoop does in one turn, for tests that drive the agent without its loops.
func (a *Agent) evaluate(ctx context.Context) license.Verdict {
	v := a.record()
	a.applyTelephony(ctx, v)
	return v
}
