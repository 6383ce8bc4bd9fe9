package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
)

// Timeouts of the HTTP server. The write timeout leaves room for the
// largest injected latency.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = portalsim.MaxLatency + 30*time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 10 * time.Second
)

func newServeCmd(e *env) *cobra.Command {
	var (
		listen, dataDir     string
		tlsFiles            tlsFiles
		interval, tolerance time.Duration
		debug               bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the simulator: the agent API and the admin API",
		Long: "Run the simulator: the agent API under /api/v1/ and the admin API under /admin/v1/.\n" +
			"The admin API has no authentication: listen on loopback only.\n" +
			"On first start it makes its signing key in DIR and writes the public keyring\n" +
			"that agents must trust (their portal.keyring) to DIR/keyring/.\n" +
			"With --tls-cert and --tls-key it serves HTTPS, as a real portal does; agents pin\n" +
			"the certificate's CA with portal.ca_file.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (tlsFiles.cert == "") != (tlsFiles.key == "") {
				return errors.New("--tls-cert and --tls-key go together: give the certificate and its key, or neither for plain HTTP")
			}
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			cfg := portalsim.Config{DataDir: dataDir, Interval: interval, HeartbeatTolerance: tolerance, Now: e.now,
				Logger: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))}
			return serve(cmd.Context(), e, listen, tlsFiles, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", defaultListen, "`ADDR` to listen on")
	f.StringVar(&dataDir, "data", "portal-data", "data `DIR`: signing key, keyring, state")
	f.DurationVar(&interval, "interval", portalsim.DefaultInterval, "heartbeat interval told to agents (whole seconds)")
	f.DurationVar(&tolerance, "heartbeat-tolerance", 0,
		"heartbeat tolerance written into the licences of PBXs created from now on (0: the agent's default, 10m)")
	f.BoolVar(&debug, "debug", false, "log every heartbeat")
	f.StringVar(&tlsFiles.cert, "tls-cert", "", "serve HTTPS with the certificate (chain) in PEM `FILE`")
	f.StringVar(&tlsFiles.key, "tls-key", "", "the private key of --tls-cert, in PEM `FILE`")
	return cmd
}

// tlsFiles are the certificate and key of an HTTPS simulator; empty serves
// plain HTTP.
type tlsFiles struct{ cert, key string }

// serve runs the simulator until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, e *env, listen string, tf tlsFiles, cfg portalsim.Config) error {
	log := cfg.Logger
	p, err := portalsim.New(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	ln, err := e.listen(listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	// Request contexts end when shutdown starts, so that injected latency
	// does not hold it up.
	baseCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{
		Handler:           p.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("listening beyond loopback: the admin API has no authentication", "addr", ln.Addr().String())
	}
	scheme := "http"
	if tf.cert != "" {
		// Loaded before serving, so a bad file is an error now, not a
		// failed handshake later.
		cert, err := tls.LoadX509KeyPair(tf.cert, tf.key)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--tls-cert, --tls-key: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	}
	log.Info("pbx-portal-sim serving", "url", scheme+"://"+ln.Addr().String(), "keyring", p.KeyringDir(),
		"kid", p.KeyID(), "data", cfg.DataDir, "interval", cfg.Interval)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	cancelRequests()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}
