// Package httpserve runs an http.Server for as long as a context lives and
// then stops it gracefully: the one shutdown sequence every listener of the
// agent shares.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Run calls serve, which must serve srv (srv.Serve(ln), or a wrapper such
// as exporter-toolkit's web.Serve), until ctx ends; then it shuts srv down,
// letting requests in flight finish within grace and closing what is left
// after that. It returns nil after a shutdown through ctx, serve's error if
// serving stopped before, and a "shutdown: ..." error if the stop failed.
func Run(ctx context.Context, srv *http.Server, grace time.Duration, serve func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Backoff spaces the attempts of Bind: Min after the first failure,
// doubling up to Max.
type Backoff struct{ Min, Max time.Duration }

// Bind listens on addr (network "tcp"), trying again after each failure
// with backoff until it succeeds or ctx ends. fail hears of every failed
// attempt (its number, from 1, and the error) before the wait, so that the
// caller can report a port held by another process while its daemon runs
// without it. It returns ctx's error when ctx ends first.
func Bind(ctx context.Context, network, addr string, b Backoff, fail func(attempt int, err error)) (net.Listener, error) {
	var lc net.ListenConfig
	wait := b.Min
	for attempt := 1; ; attempt++ {
		ln, err := lc.Listen(ctx, network, addr)
		if err == nil {
			return ln, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if fail != nil {
			fail(attempt, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, b.Max)
	}
}
