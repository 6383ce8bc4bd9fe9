package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// deliveryRuns is how many commands figure 7 times.
const deliveryRuns = 20

// commandDelivery is figure 7: the median and the worst time from a
// command queued on the simulator (`pbx-portal-sim command NAME
// ssh-close`, harmless on an agent with no SSH open) to its result
// reported back, with a 60 s heartbeat, as an operator sees it: each run
// is the CLI queueing the command and then the CLI waiting for its result.
// It is compared with the 60 s a command would wait for the next heartbeat
// without the long-poll (half of that on average).
func (r *rig) commandDelivery(ctx context.Context) ([]row, error) {
	a, err := r.newAgent("commands", time.Minute, users)
	if err != nil {
		return nil, err
	}
	if err := r.start(ctx, a); err != nil {
		return nil, err
	}
	defer a.d.stop()
	if err := r.activate(ctx, a, licences...); err != nil {
		return nil, err
	}
	pbx := a.name + ".bench"
	var took []time.Duration
	for range deliveryRuns {
		began := time.Now()
		id, err := r.sim(ctx, "command", pbx, "ssh-close")
		if err != nil {
			return nil, err
		}
		out, err := r.sim(ctx, "command", "show", pbx, strings.TrimSpace(id), "--wait", "50s")
		if err != nil {
			return nil, err
		}
		var v struct {
			Result *struct{ State string } `json:"result"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.Result == nil {
			return nil, fmt.Errorf("command %s: no result reported: %v %s", strings.TrimSpace(id), err, out)
		}
		took = append(took, time.Since(began))
	}
	slices.Sort(took)
	median, worst := took[len(took)/2], took[len(took)-1]
	ratio, reads := costRatio(median.Seconds(), (30 * time.Second).Seconds())
	return []row{{Item: "7",
		What:    fmt.Sprintf("command delivery: queued on the portal to result reported, median · worst of %d (heartbeat 60 s)", deliveryRuns),
		Agent:   fmtDur(median) + " · " + fmtDur(worst),
		Against: "waiting for the next heartbeat: 30 s on average, 60 s at worst",
		Other:   "30 s · 60 s",
		Ratio:   ratio, Reads: reads}}, nil
}
