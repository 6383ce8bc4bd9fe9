package portalsim

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// Limits of the fault settings.
const (
	// MaxLatency keeps an injected delay within the server's write timeout.
	MaxLatency = 5 * time.Minute
	// DefaultRetryAfter is the Retry-After of an injected 429 when
	// RetryAfter is unset.
	DefaultRetryAfter = 30 * time.Second
)

// Faults are the failures the portal injects into the agent API (never the
// admin API). Rates are probabilities from 0 to 1, drawn independently for
// each request.
type Faults struct {
	// ErrorRate answers 500 with a JSON error, doing nothing.
	ErrorRate float64 `json:"error_rate"`
	// Latency delays every agent request before it is handled.
	Latency Duration `json:"latency"`
	// TruncateRate cuts a signed answer in half (after acting on the request).
	TruncateRate float64 `json:"truncate_rate"`
	// BadSignatureRate alters one character of a signed answer's signature.
	BadSignatureRate float64 `json:"bad_signature_rate"`
	// ReplayOldRate puts the previous licence revision, validly signed, in
	// an ok answer, when the PBX has one.
	ReplayOldRate float64 `json:"replay_old_rate"`
	// RateLimitRate answers 429 with Retry-After, doing nothing.
	RateLimitRate float64 `json:"rate_limit_rate"`
	// RetryAfter is the Retry-After of those 429s; DefaultRetryAfter if 0.
	RetryAfter Duration `json:"retry_after"`
	// BadCommandSignature alters the signature of each command an answer
	// carries, with this probability: the answer itself stays valid.
	BadCommandSignature float64 `json:"bad_command_signature_rate"`
}

// Validate checks the ranges.
func (f Faults) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"error_rate", f.ErrorRate}, {"truncate_rate", f.TruncateRate}, {"bad_signature_rate", f.BadSignatureRate},
		{"replay_old_rate", f.ReplayOldRate}, {"rate_limit_rate", f.RateLimitRate},
		{"bad_command_signature_rate", f.BadCommandSignature},
	} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%s %v: a rate is a probability from 0 to 1", r.name, r.v)
		}
	}
	if f.Latency < 0 || time.Duration(f.Latency) > MaxLatency {
		return fmt.Errorf("latency %v: want 0 to %v", time.Duration(f.Latency), MaxLatency)
	}
	if f.RetryAfter < 0 {
		return fmt.Errorf("retry_after %v: must not be negative", time.Duration(f.RetryAfter))
	}
	return nil
}

// String lists the settings, "none" when nothing is injected.
func (f Faults) String() string {
	var parts []string
	add := func(name string, v float64) {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%g", name, v))
		}
	}
	add("error_rate", f.ErrorRate)
	if f.Latency > 0 {
		parts = append(parts, "latency="+time.Duration(f.Latency).String())
	}
	add("truncate_rate", f.TruncateRate)
	add("bad_signature_rate", f.BadSignatureRate)
	add("replay_old_rate", f.ReplayOldRate)
	add("rate_limit_rate", f.RateLimitRate)
	add("bad_command_signature_rate", f.BadCommandSignature)
	if f.RateLimitRate > 0 || f.RetryAfter > 0 {
		parts = append(parts, "retry_after="+f.retryAfter().String())
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func (f Faults) retryAfter() time.Duration {
	if f.RetryAfter <= 0 {
		return DefaultRetryAfter
	}
	return time.Duration(f.RetryAfter)
}

// faultDraw is what the faults decided for one request.
type faultDraw struct {
	latency      time.Duration
	rateLimit    bool
	retryAfter   time.Duration
	serverError  bool
	truncate     bool
	badSignature bool
	replayOld    bool
}

// drawFaults decides every fault for one request up front, so a seeded
// source gives repeatable runs.
func (p *Portal) drawFaults() (faultDraw, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return faultDraw{}, errClosed()
	}
	f := p.st.Faults
	hit := func(rate float64) bool { return rate > 0 && p.rng.Float64() < rate }
	return faultDraw{
		latency:      time.Duration(f.Latency),
		rateLimit:    hit(f.RateLimitRate),
		retryAfter:   f.retryAfter(),
		serverError:  hit(f.ErrorRate),
		truncate:     hit(f.TruncateRate),
		badSignature: hit(f.BadSignatureRate),
		replayOld:    hit(f.ReplayOldRate),
	}, nil
}

// refusal is the injected refusal answered before the request is handled.
func (d faultDraw) refusal() error {
	switch {
	case d.rateLimit:
		return &apiError{status: http.StatusTooManyRequests, code: protocol.CodeRateLimited,
			msg: "injected fault: too many requests", retryAfter: d.retryAfter}
	case d.serverError:
		return &apiError{status: http.StatusInternalServerError, code: protocol.CodeUnavailable,
			msg: "injected fault: internal error"}
	}
	return nil
}

// damage alters a signed answer after it was made.
func (d faultDraw) damage(compact string) string {
	if d.badSignature {
		compact = flipSignature(compact)
	}
	if d.truncate {
		compact = compact[:len(compact)/2]
	}
	return compact
}

// flipSignature changes one character in the middle of the signature: it
// still decodes, but no longer matches. (The last character carries
// padding bits, so changing it would read as corruption instead.)
func flipSignature(compact string) string {
	i := strings.LastIndexByte(compact, '.')
	if i < 0 || len(compact)-i < 4 {
		return compact
	}
	j := i + 1 + (len(compact)-i-1)/2
	c := byte('A')
	if compact[j] == 'A' {
		c = 'B'
	}
	return compact[:j] + string(c) + compact[j+1:]
}
