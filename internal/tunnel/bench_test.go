package tunnel

import (
	"fmt"
	"io"
	"testing"
)

// BenchmarkStreamThroughput measures bytes per second through one stream of
// a loopback tunnel.
func BenchmarkStreamThroughput(b *testing.B) {
	for _, tr := range transports {
		for _, size := range []int{32 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/write=%dKiB", tr.name, size>>10), func(b *testing.B) {
				hub, agent := newPair(b, pairOptions{tls: tr.tls})
				received := make(chan error, 1)
				go func() {
					c, err := agent.Accept()
					if err != nil {
						received <- err
						return
					}
					defer c.Close()
					_, err = io.Copy(io.Discard, c)
					received <- err
				}()
				c := open(b, hub)
				buf := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				if err := c.(closeWriter).CloseWrite(); err != nil {
					b.Fatal(err)
				}
				if err := <-received; err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
			})
		}
	}
}

// BenchmarkOpenStream measures opening a stream, one byte there and back
// (so the peer has accepted it), and closing it.
func BenchmarkOpenStream(b *testing.B) {
	hub, agent := newPair(b, pairOptions{tls: true})
	serveEcho(b, agent)
	ctx := b.Context()
	one := make([]byte, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := hub.Open(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamRoundTrip measures one small message there and back on an
// open stream: the latency the tunnel adds to a small request.
func BenchmarkStreamRoundTrip(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			hub, agent := newPair(b, pairOptions{tls: tr.tls})
			serveEcho(b, agent)
			c := open(b, hub)
			msg := make([]byte, 256)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
