// Package httpserve runs an http.Server for as long as a context lives and
// then stops it gracefully: the one shutdown sequence every listener of the
// agent shares.
package httpserve

import (
	"context"
	"errors"
	"fmt"
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
