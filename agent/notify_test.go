package agent

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunNotifiesSystemd listens where systemd would and checks the
// daemon's messages: READY=1 once serving, WATCHDOG=1 while the heartbeat
// loop answers, STOPPING=1 on the way out.
func TestRunNotifiesSystemd(t *testing.T) {
	r := newRig(t)
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "300000") // 300 ms: probes every 100 ms

	r.cfg.Listen.Socket = filepath.Join(t.TempDir(), "agent.sock")
	r.cfg.Listen.HTTP = "127.0.0.1:0"
	a := r.newAgent(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	messages := make(chan string, 16)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(messages)
				return
			}
			messages <- string(buf[:n])
		}
	}()
	next := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m := <-messages:
				if strings.Contains(m, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s from the daemon", want)
			}
		}
	}
	next("READY=1")
	next("WATCHDOG=1")
	next("WATCHDOG=1")
	cancel()
	next("STOPPING=1")
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
