package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// benchAgent is an active agent with no portal, a licence of 1,000
// UC-Premium users, 500 of them counted: what an admission reads.
func benchAgent(b *testing.B, socket string) *Agent {
	b.Helper()
	cfg := DefaultConfig()
	cfg.StateDir = filepath.Join(b.TempDir(), "state")
	cfg.Portal.Keyring = b.TempDir() // empty: the agent runs, without a portal
	cfg.Identity.Model = "WPBX-VM"
	cfg.Listen.Socket, cfg.Listen.HTTP = socket, ""
	a, err := New(cfg, slog.New(slog.DiscardHandler), Options{Users: &fakeUsers{counts: license.Counts{license.UCPremium: 500}}})
	if err != nil {
		b.Fatal(err)
	}
	now := a.lic.clock.Now()
	a.lic.doc = &license.Document{Version: 1, PBX: license.PBX{ID: "pbx-bench", Name: "bench", Model: license.ModelVM}, Revision: 1,
		IssuedAt: now, Term: license.Monthly, TermEnd: now.Add(30 * 24 * time.Hour),
		Counts: license.Counts{license.UCPremium: 1000, license.PBXBasic: 100}}
	a.lic.ans.lastOK = now
	if err := a.countUsers(context.Background()); err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkAdmissionInProcess measures admission decisions per second in
// the daemon: Agent.Admit (the licence state, locks, reservations and the
// arithmetic), against a baseline measured first in the same run,
// admission.Decide alone, the pure arithmetic. x-baseline is the time of a
// decision over the baseline's. Dry runs, so that seats never run out.
func BenchmarkAdmissionInProcess(b *testing.B) {
	ctx := context.Background()
	req := apitype.Admission{Profile: license.UCPremium, Count: 1, DryRun: true}
	{
		a := benchAgent(b, filepath.Join(b.TempDir(), "unused.sock"))
		now := a.lic.clock.Now()
		in := admission.Input{Now: now, State: license.Active, Doc: a.lic.doc, Used: license.Counts{license.UCPremium: 500}, Reserved: license.Counts{}}
		var baseNs float64
		b.Run("baseline=decide", func(b *testing.B) {
			for b.Loop() {
				if d := admission.Decide(in, admission.Request{Profile: license.UCPremium, Count: 1}); !d.Allowed {
					b.Fatal(d.Reason)
				}
			}
			baseNs = nsPerOp(b)
		})
		b.Run("admit", func(b *testing.B) {
			for b.Loop() {
				if ans := a.Admit(ctx, req); !ans.Allowed {
					b.Fatal(ans.Reason)
				}
			}
			reportDecisions(b, baseNs)
		})
		b.Run("admit-parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if ans := a.Admit(ctx, req); !ans.Allowed {
						b.Error(ans.Reason)
						return
					}
				}
			})
			reportDecisions(b, 0)
		})
	}
}

// BenchmarkAdmissionSocket measures POST /v1/admission through the
// daemon's unix socket, on one keep-alive connection, against a baseline
// measured first in the same run: a bare net/http handler on a unix socket
// that reads the body and answers a fixed {"allowed": true, "remaining":
// 3}, the cost of HTTP on a socket that no admission can go below.
func BenchmarkAdmissionSocket(b *testing.B) { benchAdmissionOverSocket(b, socketClient) }

// benchAdmissionOverSocket runs the bare handler, then the daemon, with
// clients made by client (keep-alive, or a connection per request).
func benchAdmissionOverSocket(b *testing.B, client func(sock string) *http.Client) {
	ctx := context.Background()
	dir := b.TempDir()
	body := []byte(`{"profile": "uc-premium", "count": 1, "dry_run": true}`)
	var baseNs, baseCPU float64
	b.Run("baseline=bare-handler", func(b *testing.B) {
		sock := filepath.Join(dir, "bare.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("{\n  \"allowed\": true,\n  \"remaining\": 3\n}\n"))
		})}
		go srv.Serve(ln)
		defer srv.Close()
		c := client(sock)
		cpu := startCPU()
		for b.Loop() {
			postBench(b, c, body)
		}
		baseNs, baseCPU = nsPerOp(b), cpu.perOp(b)
		b.ReportMetric(baseCPU, "cpu-ns/op")
	})
	b.Run("admission", func(b *testing.B) {
		sock := filepath.Join(dir, "agent.sock")
		a := benchAgent(b, sock)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(rctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				b.Error(err)
			}
		}()
		c := client(sock)
		eventually(b, 10*time.Second, "daemon serving", func() bool {
			var st apitype.Status
			return getJSON(c, "/v1/status", &st) == nil
		})
		cpu := startCPU()
		for b.Loop() {
			postBench(b, c, body)
		}
		reportDecisions(b, baseNs)
		reportCPU(b, cpu, baseCPU)
	})
}

func postBench(b *testing.B, c *http.Client, body []byte) {
	resp, err := c.Post("http://local/v1/admission", "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("answer %s", resp.Status)
	}
}

// cpuMark is the process's CPU time (user and system) at the start of a
// loop. Client and server share the process, so its time per request is
// the two together; on a busy machine it moves far less than the elapsed
// time, which also counts the waits for a core.
type cpuMark time.Duration

func startCPU() cpuMark { return cpuMark(processCPU()) }

func (m cpuMark) perOp(b *testing.B) float64 {
	return float64(processCPU()-time.Duration(m)) / float64(b.N)
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per request since m and, when a baseline
// was measured, its ratio to the baseline's.
func reportCPU(b *testing.B, m cpuMark, baseCPU float64) {
	cpu := m.perOp(b)
	b.ReportMetric(cpu, "cpu-ns/op")
	if baseCPU > 0 {
		b.ReportMetric(cpu/baseCPU, "x-baseline-cpu")
	}
}

func nsPerOp(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) }

// reportDecisions reports decisions per second and, when a baseline was
// measured, the time of one against the baseline's.
func reportDecisions(b *testing.B, baseNs float64) {
	ns := nsPerOp(b)
	b.ReportMetric(1e9/ns, "decisions/s")
	if baseNs > 0 {
		b.ReportMetric(ns/baseNs, "x-baseline")
	}
}
