package httpserve

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestBindOutlastsASquatter holds the port as another local process would:
// Bind reports each failure and binds the port once the squatter lets go.
func TestBindOutlastsASquatter(t *testing.T) {
	squat, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := squat.Addr().String()
	failures := make(chan error, 100)
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		ln, err := Bind(context.Background(), "tcp", addr, Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
			func(attempt int, err error) { failures <- err })
		done <- result{ln, err}
	}()
	// Two failures seen: it keeps trying while the port is held.
	for range 2 {
		select {
		case err := <-failures:
			if !strings.Contains(err.Error(), "address already in use") {
				t.Errorf("failure %v, want address already in use", err)
			}
		case r := <-done:
			t.Fatalf("Bind returned while the port was held: %v %v", r.ln, r.err)
		case <-time.After(10 * time.Second):
			t.Fatal("no failure reported")
		}
	}
	squat.Close()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.ln.Close()
		if r.ln.Addr().String() != addr {
			t.Errorf("bound %s, want %s", r.ln.Addr(), addr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Bind never bound the freed port")
	}
}

func TestBindStopsWithContext(t *testing.T) {
	squat, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Bind(ctx, "tcp", squat.Addr().String(), Backoff{Min: time.Hour, Max: time.Hour},
			func(int, error) { cancel() })
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Bind = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Bind did not return when its context ended")
	}
}
