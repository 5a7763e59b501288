package agent

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// vitals is what the agent's goroutines know about its health: Run's loop
// and the monitor write it, the health endpoints and status reports read
// it.
type vitals struct {
	mu sync.Mutex // guards s
	s  vitalSigns
}

type vitalSigns struct {
	en       *enrollment // nil until the state is loaded or enrolled
	hubRBAC  bool        // the cluster's mode, as the hub last said
	stopping bool
	tunnelUp bool
	// tunnelErr says why the tunnel is down; nil while it is up and
	// before the first attempt.
	tunnelErr error
	// dialErr is the last failed dial since the tunnel was last up; it is
	// reported to the hub as part of LastError.
	dialErr error
	version string    // the API server's gitVersion, from the last good probe
	apiOK   time.Time // when the API server last answered a probe
	apiErr  error     // the last probe's error
	beat    time.Time // when the monitor last began a round
}

func (v *vitals) get() vitalSigns {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.s
}

func (v *vitals) set(f func(*vitalSigns)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	f(&v.s)
}

// healthCheck is one line of /livez or /readyz, also served alone at
// /livez/NAME or /readyz/NAME.
type healthCheck struct {
	name string
	// informational checks are listed but never fail their group: the
	// tunnel, so that a hub outage does not make every agent unready.
	informational bool
	check         func(s vitalSigns, now time.Time) error
}

// wedgedAfter is how long the monitor may go without starting a round
// before /livez fails: a round's calls are bounded by timeouts well under
// two minutes.
func (a *Agent) wedgedAfter() time.Duration { return a.cfg.CheckInterval + 2*time.Minute }

func (a *Agent) livezChecks() []healthCheck {
	return []healthCheck{
		{name: "ping", check: func(vitalSigns, time.Time) error { return nil }},
		{name: "monitor", check: func(s vitalSigns, now time.Time) error {
			if d := now.Sub(s.beat); d > a.wedgedAfter() {
				return fmt.Errorf("the API server checks have not run for %s", d.Round(time.Second))
			}
			return nil
		}},
	}
}

func (a *Agent) readyzChecks() []healthCheck {
	return []healthCheck{
		{name: "shutdown", check: func(s vitalSigns, _ time.Time) error {
			if s.stopping {
				return fmt.Errorf("the agent is stopping")
			}
			return nil
		}},
		{name: "state", check: func(s vitalSigns, _ time.Time) error {
			if s.en == nil {
				return fmt.Errorf("not enrolled yet (no state in %s)", a.state)
			}
			return nil
		}},
		{name: "apiserver", check: func(s vitalSigns, now time.Time) error {
			switch {
			case s.apiOK.IsZero() && s.apiErr == nil:
				return fmt.Errorf("the API server has not been probed yet")
			case s.apiOK.IsZero():
				return s.apiErr
			case now.Sub(s.apiOK) > 3*a.cfg.CheckInterval:
				return fmt.Errorf("no answer from the API server for %s: %w", now.Sub(s.apiOK).Round(time.Second), s.apiErr)
			}
			return nil
		}},
		{name: "tunnel", informational: true, check: func(s vitalSigns, _ time.Time) error {
			switch {
			case s.tunnelUp:
				return nil
			case s.tunnelErr != nil:
				return s.tunnelErr
			}
			return fmt.Errorf("not connected yet")
		}},
	}
}

// sideServers are the servers of the health checks (HealthListener) and
// the metrics (MetricsListener): one, when they are the same listener.
func (a *Agent) sideServers() map[net.Listener]*http.Server {
	muxes := map[net.Listener]*http.ServeMux{}
	muxFor := func(l net.Listener) *http.ServeMux {
		if muxes[l] == nil {
			muxes[l] = http.NewServeMux()
		}
		return muxes[l]
	}
	if l := a.cfg.HealthListener; l != nil {
		a.healthRoutes(muxFor(l))
	}
	if l := a.cfg.MetricsListener; l != nil {
		muxFor(l).Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
		}))
	}
	servers := make(map[net.Listener]*http.Server, len(muxes))
	for l, mux := range muxes {
		servers[l] = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelDebug),
		}
	}
	return servers
}

// healthRoutes adds /livez and /readyz, and each check alone, to mux.
func (a *Agent) healthRoutes(mux *http.ServeMux) {
	a.serveChecks(mux, "livez", a.livezChecks())
	a.serveChecks(mux, "readyz", a.readyzChecks())
}

// serveChecks serves /GROUP (every check; ?verbose lists them, as
// Kubernetes components do) and /GROUP/NAME (one check, informational or
// not).
func (a *Agent) serveChecks(mux *http.ServeMux, group string, checks []healthCheck) {
	mux.HandleFunc("GET /"+group, func(w http.ResponseWriter, r *http.Request) {
		s, now := a.vitals.get(), time.Now()
		var b strings.Builder
		failed := false
		for _, c := range checks {
			switch err := c.check(s, now); {
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
			if err := c.check(a.vitals.get(), time.Now()); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "[-]%s failed: %v\n", c.name, err)
				return
			}
			fmt.Fprint(w, "ok")
		})
	}
}
