package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/internal/portalsim"
)

// newTunnelCmd is `tunnel NAME [--listen ADDR]`: support's way into an
// appliance's sshd through the tunnel its agent keeps open to the portal.
func newTunnelCmd(e *env, client clientFunc) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "tunnel NAME",
		Short: "Reach a PBX's support sshd through its open tunnel: stdio for ssh's ProxyCommand, or --listen",
		Long: "Relay one SSH session to a PBX's support sshd through the tunnel its agent opened\n" +
			"for `command NAME ssh-open --tunnel`. By default the session runs over stdin and\n" +
			"stdout, for ssh:\n\n" +
			"  ssh -o ProxyCommand='pbx-portal-sim tunnel NAME' pbx-support@NAME\n\n" +
			"With --listen 127.0.0.1:PORT it accepts connections there, one session each, until\n" +
			"interrupted. It refuses when the PBX has no open tunnel.",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx, ref := c.Context(), args[0]
			if listen == "" {
				conn, err := client().Tunnel(ctx, ref)
				if err != nil {
					return err
				}
				return relayStdio(ctx, conn, e.stdin, e.stdout)
			}
			if err := checkLoopbackListen(listen); err != nil {
				return err
			}
			if err := client().TunnelOpen(ctx, ref); err != nil {
				return err
			}
			ln, err := e.listen(listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			defer ln.Close()
			stop := context.AfterFunc(ctx, func() { ln.Close() })
			defer stop()
			fmt.Fprintln(e.stdout, ln.Addr().String())
			for {
				local, err := ln.Accept()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("--listen %s: %w", listen, err)
				}
				go func() {
					remote, err := client().Tunnel(ctx, ref)
					if err != nil {
						fmt.Fprintf(e.stderr, "pbx-portal-sim: tunnel %s: %v\n", ref, err)
						local.Close()
						return
					}
					portalsim.Splice(local, remote)
				}()
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "accept sessions on this loopback `ADDR` (127.0.0.1:PORT) instead of stdio")
	return cmd
}

// checkLoopbackListen refuses to offer the relay beyond this machine:
// whoever connects reaches the appliance's sshd.
func checkLoopbackListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w (want 127.0.0.1:PORT)", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q: listen on a loopback address (127.0.0.1:PORT): whoever connects reaches the appliance's sshd", addr)
	}
	return nil
}

// relayStdio runs one session over stdin and stdout until either side
// ends.
func relayStdio(ctx context.Context, conn net.Conn, in io.Reader, out io.Writer) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, in)
		done <- err
	}()
	go func() {
		_, err := io.Copy(out, conn)
		done <- err
	}()
	<-done // ssh closed stdin, or the session ended
	return nil
}
