// Package copybuf holds the buffer pools of Tether's reverse proxies (hub
// gateway, hub-to-hub forwarding, agent, tether proxy). Without one,
// httputil.ReverseProxy allocates and zeroes a 32 KiB buffer for every
// response it copies: on small requests that was the largest allocation of
// the hub's request path. A long-lived stream (a watch, logs -f) holds its
// buffer for as long as it lives, mostly blocked reading; its events are
// small, so it gets a small buffer (Streaming, Small).
package copybuf

import (
	"net/http"
	"strings"
	"sync"
)

// Sizes of the pools' buffers: Large is ReverseProxy's own.
const (
	LargeSize = 32 << 10
	SmallSize = 4 << 10
)

// Large and Small implement httputil.BufferPool.
var (
	Large = newPool(LargeSize)
	Small = newPool(SmallSize)
)

// Pool is a pool of buffers of one size.
type Pool struct {
	size int
	p    sync.Pool
}

func newPool(size int) *Pool {
	p := &Pool{size: size}
	p.p.New = func() any { b := make([]byte, size); return &b }
	return p
}

// Get returns a buffer of the pool's size.
func (p *Pool) Get() []byte { return *p.p.Get().(*[]byte) }

// Put returns b to the pool; buffers of another size are dropped.
func (p *Pool) Put(b []byte) {
	if cap(b) != p.size {
		return
	}
	b = b[:p.size]
	p.p.Put(&b)
}

// Streaming reports whether r asks the Kubernetes API server for a
// long-lived stream of small writes: a watch (?watch=true, or the legacy
// /watch/ paths) or a followed log (?follow=true).
func Streaming(r *http.Request) bool {
	q := r.URL.Query()
	switch {
	case q.Get("watch") == "true" || q.Get("watch") == "1":
		return true
	case q.Get("follow") == "true" || q.Get("follow") == "1":
		return true
	}
	p := r.URL.Path
	return strings.HasPrefix(p, "/api/v1/watch/") || (strings.HasPrefix(p, "/apis/") && strings.Contains(p, "/watch/"))
}
