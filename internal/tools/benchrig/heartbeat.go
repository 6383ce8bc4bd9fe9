package main

import (
	"context"
	"fmt"
	"time"
)

// heartbeatPath is the portal endpoint of a heartbeat (pkg/protocol).
const heartbeatPath = "/api/v1/heartbeat"

// heartbeatResult is what heartbeats with an unchanged licence cost.
type heartbeatResult struct {
	n            int   // heartbeats answered 200 in the window
	req, resp    int64 // mean bytes per heartbeat
	reqBody      int64 // of which the bodies, mean; -1 unknown
	respBody     int64
	cpu          time.Duration // the agent's CPU time in the window
	sys          time.Duration // of which in the kernel (10 ms ticks)
	idle         time.Duration // what it would have spent idle
	window       time.Duration
	interval     time.Duration
	perHeartbeat time.Duration // (cpu - idle) / n
}

// heartbeatCost runs an activated agent with a short heartbeat interval
// and measures, over window, the bytes of each heartbeat at the counting
// proxy and the agent's CPU time. The CPU time of a heartbeat is the
// window's CPU time less what the agent spends idle in as long (idleRate,
// ns per second, from the footprint window, where heartbeats are 60 s
// apart), divided by the heartbeats: the whole cost, signing, HTTP,
// verifying the answer and saving the state, without the idle loops'.
func (r *rig) heartbeatCost(ctx context.Context, interval, window time.Duration, idleRate float64) (heartbeatResult, error) {
	res := heartbeatResult{interval: interval}
	a, err := r.newAgent("heartbeats", interval, users)
	if err != nil {
		return res, err
	}
	if err := r.start(ctx, a); err != nil {
		return res, err
	}
	defer a.d.stop()
	if err := r.activate(ctx, a, licences...); err != nil {
		return res, err
	}
	// A few heartbeats first: connections made, users counted.
	if err := waitUntil(ctx, time.Now().Add(max(time.Second, 4*interval))); err != nil {
		return res, err
	}
	seen := len(a.proxy.exchanges())
	u0, err := readUsage(a.d.pid())
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := waitUntil(ctx, t0.Add(window)); err != nil {
		return res, err
	}
	u1, err := readUsage(a.d.pid())
	if err != nil {
		return res, err
	}
	res.window = time.Since(t0)
	for _, x := range a.proxy.exchanges()[seen:] {
		if x.Path != heartbeatPath || x.Status != 200 {
			continue
		}
		res.n++
		res.req += x.Req
		res.resp += x.Resp
		if x.ReqBody < 0 || res.reqBody < 0 {
			res.reqBody = -1
		} else {
			res.reqBody += x.ReqBody
		}
		if x.RespBody < 0 || res.respBody < 0 {
			res.respBody = -1
		} else {
			res.respBody += x.RespBody
		}
	}
	if res.n == 0 {
		return res, fmt.Errorf("no heartbeat answered in %v; agent log: %s", window, a.d.log)
	}
	res.req /= int64(res.n)
	res.resp /= int64(res.n)
	if res.reqBody > 0 {
		res.reqBody /= int64(res.n)
	}
	if res.respBody > 0 {
		res.respBody /= int64(res.n)
	}
	res.cpu, res.sys = u1.CPU-u0.CPU, u1.Sys-u0.Sys
	res.idle = time.Duration(idleRate * res.window.Seconds())
	res.perHeartbeat = (res.cpu - res.idle) / time.Duration(res.n)
	return res, nil
}

func (h heartbeatResult) rows() []row {
	return []row{
		{Item: "5", What: "bytes on the wire per heartbeat, licence unchanged: request + response, headers included",
			Agent: fmt.Sprintf("%d B (%s + %s)", h.req+h.resp, split(h.req, h.reqBody), split(h.resp, h.respBody))},
		{Item: "5", What: fmt.Sprintf("CPU time per heartbeat (%d heartbeats, %v apart, less idle)", h.n, h.interval),
			Agent: fmt.Sprintf("%s (%.0f %% of the window's CPU time in the kernel)", fmtDur(h.perHeartbeat), 100*float64(h.sys)/float64(max(h.cpu, 1)))},
	}
}

// split writes a message's size, with its headers and body when known.
func split(total, body int64) string {
	if body < 0 {
		return fmt.Sprintf("%d", total)
	}
	return fmt.Sprintf("%d: %d headers, %d body", total, total-body, body)
}
