package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"tether.dev/tether/internal/healthz"
)

// The hub's health checks (/livez, /readyz, served as package healthz
// says) are served on the HTTPS listener (the Helm chart's probes) and,
// with Config.ProbeListener, in plain HTTP on a port of their own.

func (h *Hub) livezChecks() []healthz.Check {
	// The hub's goroutines do not wedge as a whole: an answer is life.
	return []healthz.Check{{Name: "ping", Run: func() error { return nil }}}
}

func (h *Hub) readyzChecks() []healthz.Check {
	return []healthz.Check{
		{Name: "shutdown", Run: func() error {
			if h.draining.Load() {
				return errors.New("this replica is draining: it is shutting down and moving its agents to other replicas")
			}
			return nil
		}},
		{Name: "serving", Run: func() error {
			if h.httpsStopped.Load() {
				return errors.New("the HTTPS listener has stopped serving")
			}
			return nil
		}},
		{Name: "routes", Run: func() error {
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
		{Name: "store", Informational: true, Run: func() error { return h.storeHealth.get(h.pingStore) }},
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
	healthz.Serve(mux, "livez", h.livezChecks())
	healthz.Serve(mux, "readyz", h.readyzChecks())
}

// sideServers are the plain-HTTP servers of Config.ProbeListener and
// Config.MetricsListener (one, when they are the same listener).
func (h *Hub) sideServers() map[net.Listener]*http.Server {
	return healthz.Ports{
		Probes:         h.cfg.ProbeListener,
		Routes:         h.probeRoutes,
		Metrics:        h.cfg.MetricsListener,
		MetricsHandler: h.metrics.Handler(h.logger),
	}.Servers(h.logger)
}

// MetricsHandler serves the hub's metrics (for embedding and tests).
func (h *Hub) MetricsHandler() http.Handler { return h.metrics.Handler(h.logger) }
