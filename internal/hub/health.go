package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Health checks, as Kubernetes components serve them: GET /livez and
// /readyz answer 200 "ok" or 503; with ?verbose they list each check
// ("[+]store ok", "[-]shutdown failed: reason") and end with "readyz check
// passed" or "readyz check failed". /livez/NAME and /readyz/NAME run one
// check. They are served on the HTTPS listener (the Helm chart's probes)
// and, with Config.ProbeListener, in plain HTTP on a port of their own.

// healthCheck is one line of /livez or /readyz.
type healthCheck struct {
	name string
	// informational checks are listed but never fail their group.
	informational bool
	check         func() error
}

func (h *Hub) livezChecks() []healthCheck {
	// The hub's goroutines do not wedge as a whole: an answer is life.
	return []healthCheck{{name: "ping", check: func() error { return nil }}}
}

func (h *Hub) readyzChecks() []healthCheck {
	return []healthCheck{
		{name: "shutdown", check: func() error {
			if h.draining.Load() {
				return errors.New("this replica is draining: it is shutting down and moving its agents to other replicas")
			}
			return nil
		}},
		{name: "serving", check: func() error {
			if h.httpsStopped.Load() {
				return errors.New("the HTTPS listener has stopped serving")
			}
			return nil
		}},
		{name: "routes", check: func() error {
			if h.rt != nil && !h.rt.isSynced() {
				// This replica has not read the routes to the other
				// replicas' tunnels since it started.
				return errors.New("reading the routes to the other replicas' tunnels")
			}
			return nil
		}},
		// Informational: the replicas share one store, so a store outage
		// failing readiness would take every replica out of the load
		// balancer at once, when they can still carry the tunnels they
		// have and signed-in callers on recent decisions. /readyz/store
		// alone fails, for alerts.
		{name: "store", informational: true, check: func() error { return h.storeHealth.get(h.pingStore) }},
	}
}

// Store check timing: a probe's query is cut after storeCheckTimeout (well
// under a kubelet probe's default one-second timeout), and its answer
// serves the probes of the next storeCheckTTL without a query.
const (
	storeCheckTimeout = 500 * time.Millisecond
	storeCheckTTL     = 2 * time.Second
)

// pingStore makes the cheapest query there is: counting the (no) records
// of an ephemeral kind nothing uses.
func (h *Hub) pingStore() error {
	ctx, cancel := context.WithTimeout(context.Background(), storeCheckTimeout)
	defer cancel()
	if _, err := h.cfg.Store.CountEphemeral(ctx, "readyz-probe", h.cfg.Now()); err != nil {
		return fmt.Errorf("the store did not answer a query: %w", err)
	}
	return nil
}

// storeCheck caches the store check's answer, so that probes from every
// kubelet and load balancer do not each query the store.
type storeCheck struct {
	mu      sync.Mutex // guards the fields below
	at      time.Time  // when err was learned; zero before the first query
	err     error
	running bool // a probe is querying: the others take the last answer
}

// get returns the cached answer, or queries with ping when it is older
// than storeCheckTTL and no other probe is querying already.
func (c *storeCheck) get(ping func() error) error {
	now := time.Now()
	c.mu.Lock()
	if c.running || (!c.at.IsZero() && now.Sub(c.at) < storeCheckTTL) {
		err := c.err
		if c.at.IsZero() {
			err = errors.New("the first query to the store is in progress")
		}
		c.mu.Unlock()
		return err
	}
	c.running = true
	c.mu.Unlock()
	err := ping()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running, c.at, c.err = false, time.Now(), err
	return err
}

// probeRoutes adds /livez and /readyz, and each check alone, to mux.
func (h *Hub) probeRoutes(mux *http.ServeMux) {
	serveChecks(mux, "livez", h.livezChecks())
	serveChecks(mux, "readyz", h.readyzChecks())
}

// serveChecks serves /GROUP (every check; ?verbose lists them) and
// /GROUP/NAME (one check, informational or not).
func serveChecks(mux *http.ServeMux, group string, checks []healthCheck) {
	mux.HandleFunc("GET /"+group, func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		failed := false
		for _, c := range checks {
			switch err := c.check(); {
			case err == nil:
				fmt.Fprintf(&b, "[+]%s ok\n", c.name)
			case c.informational:
				fmt.Fprintf(&b, "[-]%s failed (informational, not counted): %v\n", c.name, err)
			default:
				fmt.Fprintf(&b, "[-]%s failed: %v\n", c.name, err)
				failed = true
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if failed {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "%s%s check failed\n", b.String(), group)
			return
		}
		if _, verbose := r.URL.Query()["verbose"]; verbose {
			fmt.Fprintf(w, "%s%s check passed\n", b.String(), group)
			return
		}
		fmt.Fprint(w, "ok")
	})
	for _, c := range checks {
		mux.HandleFunc("GET /"+group+"/"+c.name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			if err := c.check(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "[-]%s failed: %v\n", c.name, err)
				return
			}
			fmt.Fprint(w, "ok")
		})
	}
}

// sideServers are the plain-HTTP servers of Config.ProbeListener and
// Config.MetricsListener (one, when they are the same listener).
func (h *Hub) sideServers() map[net.Listener]*http.Server {
	muxes := map[net.Listener]*http.ServeMux{}
	muxFor := func(l net.Listener) *http.ServeMux {
		if muxes[l] == nil {
			muxes[l] = http.NewServeMux()
		}
		return muxes[l]
	}
	if l := h.cfg.ProbeListener; l != nil {
		h.probeRoutes(muxFor(l))
	}
	if l := h.cfg.MetricsListener; l != nil {
		muxFor(l).Handle("GET /metrics", h.metrics.Handler(h.logger))
	}
	servers := make(map[net.Listener]*http.Server, len(muxes))
	for l, mux := range muxes {
		servers[l] = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(h.logger.Handler(), slog.LevelDebug),
		}
	}
	return servers
}

// MetricsHandler serves the hub's metrics (for embedding and tests).
func (h *Hub) MetricsHandler() http.Handler { return h.metrics.Handler(h.logger) }
