package tunnel

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hang is how long a test waits for something that should happen promptly
// before it fails: a guard against hangs, not a speed assertion.
const hang = 20 * time.Second

type pairOptions struct {
	tls bool
	cfg Config
	// front, if set, is put in front of the hub's listener; it returns the
	// address the agent dials instead.
	front func(t testing.TB, hubAddr string) string
	// proxy, if set, is the HTTP CONNECT proxy the agent's client uses.
	proxy *url.URL
}

// newPair starts a hub endpoint on an httptest server, dials it as the agent
// and returns both ends of the tunnel. Everything is closed at cleanup.
func newPair(t testing.TB, o pairOptions) (hub, agent *Session) {
	t.Helper()
	accepted := make(chan *Session, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Test-Hub", "hub-says") // reaches the agent in the 101
		s, err := Accept(w, r, o.cfg)
		if err != nil {
			t.Errorf("hub: Accept: %v", err)
			return
		}
		accepted <- s
	})
	var srv *httptest.Server
	if o.tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)

	tr := srv.Client().Transport.(*http.Transport).Clone()
	if o.proxy != nil {
		tr.Proxy = http.ProxyURL(o.proxy)
	}
	t.Cleanup(tr.CloseIdleConnections)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/agent/tunnel"
	if o.front != nil {
		u.Host = o.front(t, u.Host)
	}

	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	agent, err = Dial(ctx, DialConfig{URL: u.String(), Header: http.Header{"X-Test-Agent": {"agent-says"}}, Client: &http.Client{Transport: tr}, Config: o.cfg})
	if err != nil {
		t.Fatalf("agent: Dial: %v", err)
	}
	t.Cleanup(func() { _ = agent.Close() })
	select {
	case hub = <-accepted:
	case <-time.After(hang):
		t.Fatal("hub: no session accepted")
	}
	t.Cleanup(func() { _ = hub.Close() })
	return hub, agent
}

// serveEcho accepts streams on s and echoes each until EOF, then closes it.
// It returns when s is closed and every echo has ended.
func serveEcho(t testing.TB, s *Session) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		_ = s.Close()
		wg.Wait()
	})
}

// waitFor polls cond until it holds, or fails the test after hang.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(hang)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitClosed fails the test unless ch is closed within hang.
func waitClosed(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hang):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// connectProxy is a minimal HTTP CONNECT forward proxy, like the corporate
// proxies agents sit behind.
type connectProxy struct {
	URL      *url.URL
	connects atomic.Int32
	targets  chan string // each CONNECT target, buffered
}

func newConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	p := &connectProxy{targets: make(chan string, 16)}
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		p.connects.Add(1)
		p.targets <- r.Host
		upstream, err := net.DialTimeout("tcp", r.Host, hang)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		down, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			upstream.Close()
			down.Close()
			return
		}
		wg.Go(func() { pipe(upstream, down, brw.Reader) })
	}))
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	p.URL, _ = url.Parse(srv.URL)
	return p
}

// pipe copies between a and b (whose reads go through br) until either
// ends, then closes both.
func pipe(a, b net.Conn, br *bufio.Reader) {
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(a, br)
		a.Close()
		b.Close()
	})
	_, _ = io.Copy(b, a)
	a.Close()
	b.Close()
	wg.Wait()
}

// blackhole is a TCP forwarder that can stop forwarding without closing
// anything, like a network path that silently drops packets.
type blackhole struct {
	ln      net.Listener
	target  string
	dropped chan struct{} // closed by drop
	stop    chan struct{} // closed at cleanup
	wg      sync.WaitGroup

	mu    sync.Mutex // guards conns
	conns []net.Conn
}

func newBlackhole(t testing.TB, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target, dropped: make(chan struct{}), stop: make(chan struct{})}
	b.wg.Go(b.serve)
	t.Cleanup(func() {
		close(b.stop)
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *blackhole) drop() { close(b.dropped) }

func (b *blackhole) serve() {
	for {
		down, err := b.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", b.target, hang)
		if err != nil {
			down.Close()
			continue
		}
		b.mu.Lock()
		b.conns = append(b.conns, down, up)
		b.mu.Unlock()
		b.wg.Go(func() { b.forward(up, down) })
		b.wg.Go(func() { b.forward(down, up) })
	}
}

// forward copies src to dst until drop, after which it holds what it has
// read and reads no more, and closes nothing until cleanup.
func (b *blackhole) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-b.dropped:
			<-b.stop
			return
		default:
		}
		if _, werr := dst.Write(buf[:n]); werr != nil || err != nil {
			dst.Close()
			return
		}
	}
}
