package protocol

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// The agent's heartbeat schedule at its defaults: the very Schedule the
// heartbeat loop runs (agent/heartbeat.go), with no configured override.
const (
	herdInterval = 60 * time.Second // the default interval
	herdJitter   = 0.1              // ±10 % on every interval
)

var herdSchedule = Schedule{Interval: herdInterval, Jitter: herdJitter}

// herdPolicy is one way of choosing the wait after an attempt.
type herdPolicy struct {
	name string
	// next returns the wait after an attempt; failures is the count of
	// consecutive failures so far (0 after a success).
	next func(failures int, r float64) time.Duration
}

var (
	// The agent's loop: Schedule.Next, backoff up to its 10-minute cap
	// after a failure, the jittered interval after a success.
	herdAgentLoop = herdPolicy{"agent loop (Schedule.Next, cap 10 min)", func(failures int, r float64) time.Duration {
		return herdSchedule.Next(failures, 0, r)
	}}
	// For comparison: the backoff capped at the interval, as Schedule
	// does only when heartbeat.interval is configured (here at 60 s).
	herdCappedAtInterval = herdPolicy{"backoff capped at the 60 s interval", func(failures int, r float64) time.Duration {
		return Schedule{Interval: herdInterval, Override: herdInterval, Jitter: herdJitter}.Next(failures, 0, r)
	}}
	// The baseline: the same schedule without randomness, every wait at the
	// middle of its range. This is the herd the jitter exists to prevent.
	herdNoJitter = herdPolicy{"baseline without jitter", func(failures int, _ float64) time.Duration {
		return herdAgentLoop.next(failures, 0.5)
	}}
)

// herdResult is the portal's view of a simulated fleet: requests per
// second of simulated time.
type herdResult struct {
	buckets       []int // requests in each second from the start
	outage        time.Duration
	peakDown      int // the busiest second while the portal was down
	peakBack      int // the busiest second after it came back
	peakBackAt    time.Duration
	meanBack      float64 // mean requests per second after it came back
	firstMinute   int     // requests in the first minute after it came back
	requestsTotal int
}

// simulateHerd runs n agents that all boot at time 0 (a power cut ended)
// while the portal is down for outage, then keeps running them for after
// with the portal back. Time is simulated: no agent sleeps.
func simulateHerd(n int, outage, after time.Duration, p herdPolicy, seed uint64) herdResult {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	end := outage + after
	res := herdResult{buckets: make([]int, int(end/time.Second)+1), outage: outage}
	// A calendar of one-second slots: requests within a second need no
	// order, as agents do not interact, so no priority queue is needed.
	cal := make([][]herdEvent, len(res.buckets))
	failures := make([]int, n)
	for i := range n {
		// The first heartbeat after boot, as heartbeatLoop waits it.
		at := herdSchedule.First(rng.Float64())
		cal[at/time.Second] = append(cal[at/time.Second], herdEvent{at: at, agent: i})
	}
	for s := range cal {
		for i := 0; i < len(cal[s]); i++ { // a wait under a second lands in this slot
			ev := cal[s][i]
			res.buckets[s]++
			res.requestsTotal++
			if ev.at < outage {
				failures[ev.agent]++
			} else {
				failures[ev.agent] = 0
			}
			ev.at += p.next(failures[ev.agent], rng.Float64())
			if ev.at < end {
				cal[ev.at/time.Second] = append(cal[ev.at/time.Second], ev)
			}
		}
		cal[s] = nil
	}
	back := int(outage / time.Second)
	sum := 0
	for s, c := range res.buckets {
		if s < back {
			res.peakDown = max(res.peakDown, c)
			continue
		}
		if s >= len(res.buckets)-1 {
			break // the last, partial second
		}
		sum += c
		if c > res.peakBack {
			res.peakBack, res.peakBackAt = c, time.Duration(s-back)*time.Second
		}
		if s < back+60 {
			res.firstMinute += c
		}
	}
	res.meanBack = float64(sum) / float64(len(res.buckets)-1-back)
	return res
}

type herdEvent struct {
	at    time.Duration
	agent int
}

// herdBound is the busiest second the policy allows when the fleet is
// spread: each agent asks at most once per shortest jittered interval
// (interval × (1 - jitter)), so a second holds on average at most
// n / shortest requests; five standard deviations of a binomial count
// above that bound the busiest of a few thousand seconds.
func herdBound(n int) float64 {
	shortest := herdInterval.Seconds() * (1 - herdJitter)
	perSecond := float64(n) / shortest
	return perSecond + 5*math.Sqrt(perSecond)
}

// TestHerdAfterOutage: 10,000 agents boot together while their portal is
// down for an hour. When it comes back, the busiest second it sees stays
// within what a spread fleet sends (herdBound), against the mean of the
// hour after; without jitter the same fleet arrives in one second. Run
// with PBX_SOAK=1 for 100,000 agents.
func TestHerdAfterOutage(t *testing.T) {
	n := 10_000
	if os.Getenv("PBX_SOAK") != "" {
		n = 100_000
	}
	const outage, after = time.Hour, time.Hour
	bound := herdBound(n)
	nominal := float64(n) / herdInterval.Seconds()
	for _, p := range []herdPolicy{herdAgentLoop, herdCappedAtInterval, herdNoJitter} {
		r := simulateHerd(n, outage, after, p, 1)
		ratio := float64(r.peakBack) / r.meanBack
		t.Logf("%-46s %d agents: peak %d req/s (%v after the return) vs mean %.1f req/s: peak/mean %.2f (bound %.2f); "+
			"peak while down %d req/s; first minute back %d requests; %d requests in all",
			p.name, n, r.peakBack, r.peakBackAt, r.meanBack, ratio, bound/nominal, r.peakDown, r.firstMinute, r.requestsTotal)
		if p.name == herdNoJitter.name {
			// The baseline must break the bound, or the bound proves nothing.
			if float64(r.peakBack) <= bound {
				t.Errorf("the baseline without jitter peaks at %d req/s, within the bound %.0f: the bound does not tell a herd", r.peakBack, bound)
			}
			continue
		}
		if float64(r.peakBack) > bound {
			t.Errorf("%s: the busiest second after the return has %d requests, above the bound %.0f (mean %.1f)", p.name, r.peakBack, bound, r.meanBack)
		}
		// A fleet back in touch heartbeats at its normal rate, no faster.
		if r.meanBack > nominal*1.02 {
			t.Errorf("%s: mean %.1f req/s after the return, above the fleet's normal %.1f", p.name, r.meanBack, nominal)
		}
	}
}
