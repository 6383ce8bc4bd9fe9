package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestRunStopsWhenContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inFlight, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inFlight)
		<-release
		w.Write([]byte("done"))
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, srv, 10*time.Second, func() error { return srv.Serve(ln) }) }()

	got := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-inFlight
	cancel()
	close(release)
	if err := <-got; err != nil {
		t.Errorf("the request in flight at shutdown failed: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run after a shutdown through ctx: %v, want nil", err)
	}
}

func TestRunReturnsAnEarlyServeError(t *testing.T) {
	boom := errors.New("boom")
	err := Run(context.Background(), &http.Server{}, time.Second, func() error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("Run = %v, want the serve error", err)
	}
}
