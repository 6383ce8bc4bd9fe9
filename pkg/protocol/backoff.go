package protocol

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Backoff is the retry policy after failed heartbeats: capped exponential
// backoff with full jitter, so a fleet that lost its portal at the same
// moment does not come back at the same moment. It is a pure function of its
// inputs; callers supply the randomness.
type Backoff struct {
	Base time.Duration // the ceiling after the first failure
	Cap  time.Duration // the ceiling never exceeds this
}

// DefaultBackoff starts at 2 s and stops growing at 10 min.
var DefaultBackoff = Backoff{Base: 2 * time.Second, Cap: 10 * time.Minute}

// Delay returns the wait after the given number of consecutive failures
// (1 or more). r is uniform in [0, 1). The wait is uniform in [0, ceiling],
// where the ceiling doubles with each failure up to Cap. A Retry-After from
// the portal is a floor, plus up to 10 % so the herd it holds back spreads
// out again.
func (b Backoff) Delay(failures int, retryAfter time.Duration, r float64) time.Duration {
	ceiling := b.Cap
	if failures < 1 {
		failures = 1
	}
	if failures < 63 {
		if c := b.Base << (failures - 1); c > 0 && c < b.Cap {
			ceiling = c
		}
	}
	d := time.Duration(r * float64(ceiling))
	if retryAfter > 0 {
		if floor := retryAfter + time.Duration(r*float64(retryAfter)/10); floor > d {
			d = floor
		}
	}
	return d
}

// Jitter spreads an interval over ±fraction of itself; r is uniform in [0, 1).
func Jitter(interval time.Duration, fraction, r float64) time.Duration {
	return time.Duration(float64(interval) * (1 - fraction + 2*fraction*r))
}

// MaxRetryAfter bounds what a Retry-After can ask: a day. A larger value
// is a broken or hostile header, and a wait beyond a day would outlast the
// licence's offline grace.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110), at most MaxRetryAfter. It returns 0 when absent or
// unreadable.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0
		}
		// Compared in seconds: multiplying first would overflow.
		return time.Duration(min(s, int64(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryAfter)
	}
	return 0
}
