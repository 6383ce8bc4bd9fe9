package tunnel

import (
	"io"
	"net"
	"testing"
)

// sinkServer reads every connection to its end and reports how many bytes
// each carried.
func sinkServer(b *testing.B) (string, <-chan int64) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	got := make(chan int64, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				n, _ := io.Copy(io.Discard, c)
				c.Close()
				got <- n
			}()
		}
	}()
	return ln.Addr().String(), got
}

// BenchmarkCopy compares a copy straight to the target with the same copy
// through the tunnel: go test -bench Copy ./pkg/tunnel
func BenchmarkCopy(b *testing.B) {
	chunk := make([]byte, 256*1024)
	run := func(b *testing.B, open func() net.Conn, got <-chan int64) {
		b.SetBytes(int64(len(chunk)))
		c := open()
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		if n := <-got; n != int64(b.N*len(chunk)) {
			b.Fatalf("the target read %d bytes, want %d", n, b.N*len(chunk))
		}
	}
	b.Run("direct", func(b *testing.B) {
		target, got := sinkServer(b)
		run(b, func() net.Conn {
			c, err := net.Dial("tcp", target)
			if err != nil {
				b.Fatal(err)
			}
			return c
		}, got)
	})
	b.Run("tunnel", func(b *testing.B) {
		target, got := sinkServer(b)
		r := newRig(b)
		p, _ := r.open(b.Context(), target, Events{})
		run(b, func() net.Conn {
			c, err := p.Open(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			return c
		}, got)
	})
}

// BenchmarkRoundTrip compares a one-byte echo straight to the target with
// the same echo through the tunnel: the latency the tunnel adds.
func BenchmarkRoundTrip(b *testing.B) {
	run := func(b *testing.B, c net.Conn) {
		defer c.Close()
		buf := []byte{'x'}
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", echoServer(b))
		if err != nil {
			b.Fatal(err)
		}
		run(b, c)
	})
	b.Run("tunnel", func(b *testing.B) {
		r := newRig(b)
		p, _ := r.open(b.Context(), echoServer(b), Events{})
		c, err := p.Open(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		run(b, c)
	})
}
