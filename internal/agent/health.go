package agent

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"tether.dev/tether/internal/healthz"
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

// vitalCheck is a health check (healthz.Check's Run) that reads the
// agent's vital signs as of now.
func (a *Agent) vitalCheck(check func(s vitalSigns, now time.Time) error) func() error {
	return func() error { return check(a.vitals.get(), time.Now()) }
}

// wedgedAfter is how long the monitor may go without starting a round
// before /livez fails: a round's calls are bounded by timeouts well under
// two minutes.
func (a *Agent) wedgedAfter() time.Duration { return a.cfg.CheckInterval + 2*time.Minute }

func (a *Agent) livezChecks() []healthz.Check {
	return []healthz.Check{
		{Name: "ping", Run: func() error { return nil }},
		{Name: "monitor", Run: a.vitalCheck(func(s vitalSigns, now time.Time) error {
			if d := now.Sub(s.beat); d > a.wedgedAfter() {
				return fmt.Errorf("the API server checks have not run for %s", d.Round(time.Second))
			}
			return nil
		})},
	}
}

func (a *Agent) readyzChecks() []healthz.Check {
	return []healthz.Check{
		{Name: "shutdown", Run: a.vitalCheck(func(s vitalSigns, _ time.Time) error {
			if s.stopping {
				return fmt.Errorf("the agent is stopping")
			}
			return nil
		})},
		{Name: "state", Run: a.vitalCheck(func(s vitalSigns, _ time.Time) error {
			if s.en == nil {
				return fmt.Errorf("not enrolled yet (no state in %s)", a.state)
			}
			return nil
		})},
		{Name: "apiserver", Run: a.vitalCheck(func(s vitalSigns, now time.Time) error {
			switch {
			case s.apiOK.IsZero() && s.apiErr == nil:
				return fmt.Errorf("the API server has not been probed yet")
			case s.apiOK.IsZero():
				return s.apiErr
			case now.Sub(s.apiOK) > 3*a.cfg.CheckInterval:
				return fmt.Errorf("no answer from the API server for %s: %w", now.Sub(s.apiOK).Round(time.Second), s.apiErr)
			}
			return nil
		})},
		// Informational, so that a hub outage does not make every agent
		// unready.
		{Name: "tunnel", Informational: true, Run: a.vitalCheck(func(s vitalSigns, _ time.Time) error {
			switch {
			case s.tunnelUp:
				return nil
			case s.tunnelErr != nil:
				return s.tunnelErr
			}
			return fmt.Errorf("not connected yet")
		})},
	}
}

// sideServers are the servers of the health checks (HealthListener) and
// the metrics (MetricsListener): one, when they are the same listener.
func (a *Agent) sideServers() map[net.Listener]*http.Server {
	return healthz.Ports{
		Probes:         a.cfg.HealthListener,
		Routes:         a.healthRoutes,
		Metrics:        a.cfg.MetricsListener,
		MetricsHandler: a.metrics.handler(a.logger),
	}.Servers(a.logger)
}

// healthRoutes adds /livez and /readyz, and each check alone, to mux.
func (a *Agent) healthRoutes(mux *http.ServeMux) {
	healthz.Serve(mux, "livez", a.livezChecks())
	healthz.Serve(mux, "readyz", a.readyzChecks())
}
