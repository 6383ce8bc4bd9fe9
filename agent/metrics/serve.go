package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/pbx-agent/pbx-agent/pkg/httpserve"
)

// Limits of the remote metrics listener: its peers are Prometheus servers.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 5 * time.Second
)

// ValidateWebConfig checks an exporter-toolkit web configuration file: its
// YAML, its users' bcrypt hashes, and its certificate and key. "" is valid:
// plain HTTP without authentication.
func ValidateWebConfig(path string) error {
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("web configuration %s: %w", path, err)
	}
	return nil
}

// Serve serves GET /metrics alone on ln for Prometheus servers off the PBX,
// until ctx ends. TLS and basic auth come from the exporter-toolkit web
// configuration file at webConfig (the format node_exporter's
// --web.config.file reads), which is read again for each connection, so a
// renewed certificate or a changed password applies without a restart;
// with webConfig "", the metrics are served in plain HTTP to anyone who
// reaches ln. It returns nil after a shutdown through ctx.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener, webConfig string) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	serve := func() error { return web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &webConfig}, m.log) }
	if err := httpserve.Run(ctx, srv, shutdownTimeout, serve); err != nil {
		ln.Close() // a configuration refused before serving leaves it open
		return fmt.Errorf("metrics listener on %s: %w", ln.Addr(), err)
	}
	return nil
}
