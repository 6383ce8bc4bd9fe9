package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// admissionBody is a dry run, so that seats never run out however many
// decisions the run makes.
var admissionBody = []byte(`{"profile": "uc-premium", "count": 1, "dry_run": true}`)

// bareAnswer is what the agent answers an allowed admission, byte for byte.
var bareAnswer = []byte("{\n  \"allowed\": true,\n  \"remaining\": 3\n}\n")

// serveBare is the `bare-server` mode: a bare net/http handler on a unix
// socket that reads the body and answers a fixed admission, in a process
// of its own like the agent's. It is the practical limit of an admission
// over HTTP on a unix socket on this machine.
func serveBare(socket string) error {
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(bareAnswer)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startBare runs this program again as the bare server, and returns it
// and its socket.
func (r *rig) startBare(ctx context.Context) (*daemon, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	socket := filepath.Join(r.work, "bare.sock")
	d, err := startDaemon("bare-server", filepath.Join(r.work, "bare.log"), nil, self, "bare-server", socket)
	if err != nil {
		return nil, "", err
	}
	r.stops = append(r.stops, d.stop)
	return d, socket, poll(ctx, 10*time.Second, "bare server up", func() error {
		if err := d.alive(); err != nil {
			return err
		}
		c, err := net.Dial("unix", socket)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// load is the outcome of one admission run.
type load struct {
	clients   int
	keepAlive bool
	decisions int             // answered 200 within the window
	window    time.Duration   // the measured span
	lat       []time.Duration // of every decision answered after the warm-up
	waited    []time.Duration // of each request unanswered at the cut-off, so far
	starved   int             // clients that got no answer within the window
	failures  int             // answers other than 200, and transport errors
	firstErr  error
	// serverCPU is the server's CPU time over the whole run, warm-up and
	// grace included, for answered decisions: its cost per decision,
	// which other work on the machine disturbs far less than the rate.
	serverCPU time.Duration
	answered  int
}

func (l load) perSecond() float64 { return float64(l.decisions) / l.window.Seconds() }

// percentile returns the q-quantile (0 < q <= 1) of the latencies, and
// whether it is only a lower bound.
func (l load) percentile(q float64) (time.Duration, bool) {
	return percentile(l.lat, l.waited, q)
}

// percentile is the q-quantile, nearest rank, of the answered latencies
// and the waits of requests never answered. A wait is a lower bound of
// its latency: if one sorts at or below the rank, the true quantile may
// be higher, and the result is a lower bound.
func percentile(answered, waited []time.Duration, q float64) (time.Duration, bool) {
	type sample struct {
		d     time.Duration
		bound bool
	}
	s := make([]sample, 0, len(answered)+len(waited))
	for _, d := range answered {
		s = append(s, sample{d, false})
	}
	for _, d := range waited {
		s = append(s, sample{d, true})
	}
	if len(s) == 0 {
		return 0, false
	}
	slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(a.d, b.d) })
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	rank = max(0, min(rank, len(s)-1))
	bound := slices.ContainsFunc(s[:rank+1], func(x sample) bool { return x.bound })
	return s[rank].d, bound
}

// loadGrace is how long a request made in the window may take past its
// end and still count: a request cut off at the end is an artefact of
// the cut, one unanswered this much later is a client left waiting.
const loadGrace = time.Second

// runLoad runs clients concurrent clients against the admission endpoint
// of socket for warm-up then window, each a loop of requests, and keeps
// the figures of the requests made in the window. With keepAlive each
// client holds one connection, as a long-running WMS worker would;
// without, each request opens its own, as a script calling `pbx-agent
// check` or curl would.
func runLoad(ctx context.Context, server int, socket string, clients int, keepAlive bool, warmup, window time.Duration) load {
	res := load{clients: clients, keepAlive: keepAlive, window: window}
	u0, uerr := readUsage(server)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	begin := time.Now().Add(warmup)
	end := begin.Add(window)
	cutoff := end.Add(loadGrace)
	type clientResult struct {
		lat      []time.Duration // of requests answered after begin
		inWindow int             // requests answered between begin and end
		answered int             // all of them, warm-up included
		waited   time.Duration   // of a request left unanswered at the cut-off
		failures int
		err      error
	}
	results := make([]clientResult, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			cr := &results[i]
			tr := &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", socket)
				},
				DisableKeepAlives:   !keepAlive,
				MaxIdleConnsPerHost: 1,
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://local/v1/admission", bytes.NewReader(admissionBody))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				t1 := time.Now()
				switch {
				case err != nil && ctx.Err() != nil: // cut off
					cr.waited = cutoff.Sub(t0)
					return
				case err == nil && resp.StatusCode == http.StatusOK && t1.Before(begin): // warm-up
					cr.answered++
				case t1.Before(begin):
				case err != nil:
					cr.failures++
					cr.err = cmp.Or(cr.err, err)
				case resp.StatusCode != http.StatusOK:
					cr.failures++
					cr.err = cmp.Or(cr.err, fmt.Errorf("answer %s", resp.Status))
				default:
					// A request made in the warm-up and answered late is
					// kept: its wait is what the window shows.
					cr.lat = append(cr.lat, t1.Sub(t0))
					cr.answered++
					if !t1.After(end) {
						cr.inWindow++
					}
				}
			}
		})
	}
	waitUntil(ctx, cutoff)
	cancel()
	wg.Wait()
	if u1, err := readUsage(server); err == nil && uerr == nil {
		res.serverCPU = u1.CPU - u0.CPU
	}
	for _, cr := range results {
		res.answered += cr.answered
		res.decisions += cr.inWindow
		res.failures += cr.failures
		res.lat = append(res.lat, cr.lat...)
		if cr.waited > 0 {
			res.waited = append(res.waited, cr.waited)
		}
		if cr.inWindow == 0 {
			res.starved++
		}
		res.firstErr = cmp.Or(res.firstErr, cr.err)
	}
	return res
}
