package testenv

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Balancer is a small TCP load balancer, like a Kubernetes Service in front
// of the hub's replicas: it passes each connection whole to the next ready
// backend, round robin, and checks every backend's /readyz over HTTPS a few
// times a second, so a draining replica gets no new connections while the
// ones it has carry on.
type Balancer struct {
	l       net.Listener
	check   *http.Client
	backs   []*backend
	next    atomic.Uint64
	wg      sync.WaitGroup
	stop    chan struct{}
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stopped bool
}

type backend struct {
	addr  string
	ready atomic.Bool
}

// CheckInterval is how often the balancer checks each backend's readiness.
const CheckInterval = 100 * time.Millisecond

// StartBalancer listens on addr and balances over backends (HOST:PORT of
// HTTPS servers with /readyz), trusting tlsConfig's roots for the checks.
func StartBalancer(addr string, backends []string, tlsConfig *tls.Config) (*Balancer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &Balancer{l: l, stop: make(chan struct{}), conns: map[net.Conn]struct{}{},
		check: &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true}}}
	for _, a := range backends {
		b.backs = append(b.backs, &backend{addr: a})
	}
	b.wg.Add(2)
	go b.serve()
	go b.checkLoop()
	return b, nil
}

// Addr is where the balancer listens.
func (b *Balancer) Addr() string { return b.l.Addr().String() }

// Ready reports which backends the balancer currently sends to.
func (b *Balancer) Ready() []bool {
	out := make([]bool, len(b.backs))
	for i, bk := range b.backs {
		out[i] = bk.ready.Load()
	}
	return out
}

// Close stops accepting, closes every connection and waits.
func (b *Balancer) Close() {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	b.stopped = true
	close(b.stop)
	b.l.Close()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Balancer) checkLoop() {
	defer b.wg.Done()
	tick := time.NewTicker(CheckInterval)
	defer tick.Stop()
	for {
		for _, bk := range b.backs {
			bk.ready.Store(b.probe(bk.addr))
		}
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
	}
}

func (b *Balancer) probe(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+addr+"/readyz", nil)
	resp, err := b.check.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (b *Balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.l.Accept()
		if err != nil {
			return
		}
		if !b.track(c) {
			c.Close()
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.untrack(c)
			b.pass(c)
		}()
	}
}

// pass connects c to the next ready backend that answers, trying each once.
func (b *Balancer) pass(c net.Conn) {
	defer c.Close()
	n := len(b.backs)
	start := int(b.next.Add(1))
	for i := range n {
		bk := b.backs[(start+i)%n]
		if !bk.ready.Load() {
			continue
		}
		up, err := net.DialTimeout("tcp", bk.addr, time.Second)
		if err != nil {
			bk.ready.Store(false)
			continue
		}
		if !b.track(up) {
			up.Close()
			return
		}
		defer b.untrack(up)
		defer up.Close()
		splice(c, up)
		return
	}
}

// splice copies both ways until both directions end, passing half-closes.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	one := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go one(a, b)
	go one(b, a)
	wg.Wait()
}

func (b *Balancer) track(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return false
	}
	b.conns[c] = struct{}{}
	return true
}

func (b *Balancer) untrack(c net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, c)
}
