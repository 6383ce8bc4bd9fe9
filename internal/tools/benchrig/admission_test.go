package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serveLimited serves a fixed answer on a unix socket, to at most conns
// connections at once: what the agent's connection cap does to clients
// that keep theirs open.
func serveLimited(t *testing.T, conns int) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	sem := make(chan struct{}, conns)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Write(bareAnswer)
		}),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				<-sem
			}
		},
	}
	go srv.Serve(&semListener{Listener: ln, sem: sem})
	t.Cleanup(func() { srv.Close() })
	return socket
}

type semListener struct {
	net.Listener
	sem chan struct{}
}

func (l *semListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	return l.Listener.Accept()
}

func TestRunLoad(t *testing.T) {
	ctx := context.Background()
	t.Run("every client answered", func(t *testing.T) {
		l := runLoad(ctx, os.Getpid(), serveLimited(t, 8), 4, true, 200*time.Millisecond, 500*time.Millisecond)
		// Every request is answered by the cut-off, a second after the
		// window: none is left waiting (a busy machine may delay one past
		// the window itself, so starved is not asserted).
		if l.decisions == 0 || l.failures != 0 || len(l.waited) != 0 {
			t.Fatalf("decisions %d, failures %d (%v), left waiting %v", l.decisions, l.failures, l.firstErr, l.waited)
		}
		if _, bound := l.percentile(0.99); bound {
			t.Error("p99 is a lower bound though every request was answered")
		}
		if l.perSecond() <= 0 || l.answered < l.decisions {
			t.Errorf("rate %v, answered %d of which %d in the window", l.perSecond(), l.answered, l.decisions)
		}
		// The server here is this process: it worked for every decision.
		if l.serverCPU <= 0 {
			t.Errorf("server CPU time %v", l.serverCPU)
		}
	})
	t.Run("clients beyond the cap starve with keep-alive", func(t *testing.T) {
		l := runLoad(ctx, os.Getpid(), serveLimited(t, 2), 4, true, 200*time.Millisecond, 500*time.Millisecond)
		if l.starved < 2 || l.decisions == 0 {
			t.Fatalf("starved %d, decisions %d; want 2 of 4 clients unanswered in the window, the others answered", l.starved, l.decisions)
		}
		// Their requests are answered once the others leave, at the end
		// of the window, or never: either way the worst is the window or more.
		if worst, _ := l.percentile(1); worst < 500*time.Millisecond {
			t.Errorf("worst %v; want at least the window", worst)
		}
	})
	t.Run("a connection per request shares the cap", func(t *testing.T) {
		l := runLoad(ctx, os.Getpid(), serveLimited(t, 2), 4, false, 200*time.Millisecond, 500*time.Millisecond)
		if l.starved != 0 || l.decisions == 0 {
			t.Fatalf("%+v", l)
		}
	})
}
