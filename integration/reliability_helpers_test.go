package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// soak reports whether the larger settings of `make soak` apply.
func soak() bool { return os.Getenv("PBX_SOAK") != "" }

// sized returns small for `make check`, large under `make soak`, or the
// value of env when set (a whole number).
func sized(t *testing.T, env string, small, large int) int {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a whole number from 1", env, v)
		}
		return n
	}
	if soak() {
		return large
	}
	return small
}

// fastClient reads the agent's read-only listener; its timeout bounds a
// hung agent, not a slow one.
var fastClient = &http.Client{Timeout: 10 * time.Second}

// httpStatus reads GET /v1/status from the read-only listener: cheaper than
// running the CLI, so tests can poll it often.
func (a *appliance) httpStatus() (apitype.Status, error) {
	var s apitype.Status
	resp, err := fastClient.Get("http://" + a.http + "/v1/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return s, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// startQuick starts the agent and waits for /readyz on its HTTP listener.
func (a *appliance) startQuick() {
	a.t.Helper()
	a.proc = start(a.t, "pbx-agent", "--config", a.config, "run", "--log-level", "debug")
	eventually(a.t, 15*time.Second, a.name+" ready", func() (bool, string) {
		resp, err := fastClient.Get("http://" + a.http + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// kill ends the agent with SIGKILL, as a power cut or the OOM killer would,
// and waits until it is gone.
func (a *appliance) kill() {
	a.t.Helper()
	if err := a.proc.cmd.Process.Kill(); err != nil {
		a.t.Fatal(err)
	}
	<-a.proc.done
}

var metricLineRE = regexp.MustCompile(`(?m)^(\w+)(?:\{[^}]*\})? (\S+)$`)

// metric reads one unlabelled sample from the agent's /metrics.
func (a *appliance) metric(name string) (float64, error) {
	resp, err := fastClient.Get("http://" + a.http + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, m := range metricLineRE.FindAllSubmatch(b, -1) {
		if string(m[1]) == name {
			return strconv.ParseFloat(string(m[2]), 64)
		}
	}
	return 0, fmt.Errorf("no sample %s in /metrics", name)
}

// labelled reads the sample of name whose labels are exactly labels
// (`result="success"`) from the agent's /metrics.
func (a *appliance) labelled(name, labels string) (float64, error) {
	resp, err := fastClient.Get("http://" + a.http + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	prefix := name + "{" + labels + "} "
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no sample %s{%s} in /metrics", name, labels)
}

// portalClient is the simulator's admin API, for changes made in a loop.
func (p *portal) client() *portalsim.Client { return portalsim.NewClient(p.url()) }

// setFaults replaces every fault setting of the simulator.
func (p *portal) setFaults(f portalsim.Faults) {
	p.t.Helper()
	if _, err := p.client().SetFaults(context.Background(), f); err != nil {
		p.t.Fatalf("setting faults %v: %v", f, err)
	}
}

// percentiles returns the p-th percentiles of ds (p from 0 to 100).
func percentiles(ds []time.Duration, ps ...float64) []time.Duration {
	if len(ds) == 0 {
		return make([]time.Duration, len(ps))
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	out := make([]time.Duration, len(ps))
	for i, p := range ps {
		k := int(math.Ceil(p/100*float64(len(s)))) - 1
		out[i] = s[max(0, min(k, len(s)-1))]
	}
	return out
}

// licenceRaiser is the portal issuing a new revision of a PBX's licence
// every period: revision n holds n UC-Business licences.
type licenceRaiser struct {
	issued atomic.Int64 // the newest revision the portal issued
	done   chan struct{}
}

// raiseLicences starts raising the named PBX's UC-Business count by one
// every period, from revision 1 just activated, until ctx ends.
func (p *portal) raiseLicences(ctx context.Context, name string, every time.Duration) *licenceRaiser {
	r := &licenceRaiser{done: make(chan struct{})}
	r.issued.Store(1)
	go func() {
		defer close(r.done)
		admin := p.client()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 2; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// Not under ctx: a revision the portal issued is always counted.
			res, err := admin.ChangeLicenses(context.Background(), name,
				portalsim.LicenseChange{Profiles: license.Counts{license.UCBusiness: n}})
			if err != nil {
				p.t.Errorf("changing the licence of %s: %v", name, err)
				return
			}
			r.issued.Store(res.PBX.Revision)
		}
	}()
	return r
}

// Issued is the newest revision issued so far.
func (r *licenceRaiser) Issued() int64 { return r.issued.Load() }

// Wait waits for the raiser to stop, once its context has ended, and
// returns the last revision it issued.
func (r *licenceRaiser) Wait() int64 {
	<-r.done
	return r.issued.Load()
}
