package main

import "context"

// commandDelivery is figure 7: the median and the worst time from a
// command queued on the simulator (`pbx-portal-sim command NAME
// ssh-close`, harmless on an agent with no SSH open) to its result
// reported back, with a 60 s heartbeat. The command path (long-poll or
// an early wake-up) is not built yet, so the row says so.
//
// To fill it in once the path exists: start an agent with r.newAgent
// (60 s interval), activate it, then for each of a dozen runs take
// time.Now(), queue the command with r.sim, and poll the simulator's
// admin API (or the agent's GET /v1/status "commands") until the result
// is reported; return one row of median · worst, compared with nothing
// (or with the 60 s interval a command would wait without the path).
func (r *rig) commandDelivery(ctx context.Context) ([]row, error) {
	return []row{{Item: "7", What: "command delivery: queued on the portal to result reported, median · worst",
		Agent: "n/a (command path not built)"}}, nil
}
