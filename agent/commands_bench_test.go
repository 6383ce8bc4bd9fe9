package agent

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// BenchmarkCommandDelivery measures a command's way from the portal's
// admin API to its result recorded there: queued, the agent's long-poll
// woken, a heartbeat fetching it, the journal, the SSH seam, a heartbeat
// reporting it. The heartbeat interval is the portal's 60 s, so every
// command rides the long-poll. The baseline is one heartbeat exchange, the
// least a delivery could cost. It reports the median and worst latency.
func BenchmarkCommandDelivery(b *testing.B) {
	r := newRig(b)
	key := r.createPBX(b, "bench.example", license.Counts{license.UCPremium: 5})
	cfg := r.cfg
	cfg.Listen.Socket = filepath.Join(b.TempDir(), "agent.sock")
	cfg.Listen.HTTP = ""
	a, err := New(cfg, slog.New(slog.DiscardHandler), Options{Root: r.root, SSH: &countingSSH{}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	if err := a.Activate(ctx, key); err != nil {
		b.Fatal(err)
	}

	b.Run("baseline=heartbeat", func(b *testing.B) {
		for b.Loop() {
			if err := a.exchangeHeartbeat(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ssh.close", func(b *testing.B) {
		var took []time.Duration
		for b.Loop() {
			began := time.Now()
			c, err := r.admin.QueueCommand(ctx, "bench.example", portalsim.CommandRequest{Type: protocol.CommandSSHClose})
			if err != nil {
				b.Fatal(err)
			}
			v, err := r.admin.Command(ctx, "bench.example", c.ID, 30*time.Second)
			if err != nil || v.Result == nil {
				b.Fatalf("command %s: %v, result %+v", c.ID, err, v)
			}
			took = append(took, time.Since(began))
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
	})
}
