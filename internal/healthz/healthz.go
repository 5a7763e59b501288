// Package healthz serves health checks the way Kubernetes components do,
// for the hub and the agent alike: GET /livez and /readyz answer 200 "ok"
// or 503; with ?verbose they list each check ("[+]store ok", "[-]shutdown
// failed: reason") and end with "readyz check passed" or "readyz check
// failed". /livez/NAME and /readyz/NAME run one check. Probes, load
// balancers and tether doctor read this format, so it is written once,
// here.
//
// It also makes the plain-HTTP side servers that carry the probes and the
// metrics on ports of their own (Ports).
package healthz

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Check is one line of a group (/livez, /readyz), also served alone at
// /GROUP/NAME.
type Check struct {
	// Name is the check's line and path segment: lowercase, no slash.
	Name string
	// Informational checks are listed but never fail their group; served
	// alone they fail, for alerts.
	Informational bool
	// Run says what is wrong, or nil. It is called on every probe, so it
	// must be cheap and bounded in time.
	Run func() error
}

// Serve adds GET /GROUP (every check; ?verbose lists them) and
// GET /GROUP/NAME (one check, informational or not) to mux.
func Serve(mux *http.ServeMux, group string, checks []Check) {
	mux.HandleFunc("GET /"+group, func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		failed := false
		for _, c := range checks {
			switch err := c.Run(); {
			case err == nil:
				fmt.Fprintf(&b, "[+]%s ok\n", c.Name)
			case c.Informational:
				fmt.Fprintf(&b, "[-]%s failed (informational, not counted): %v\n", c.Name, err)
			default:
				fmt.Fprintf(&b, "[-]%s failed: %v\n", c.Name, err)
				failed = true
			}
		}
		plainText(w)
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
		mux.HandleFunc("GET /"+group+"/"+c.Name, func(w http.ResponseWriter, r *http.Request) {
			plainText(w)
			if err := c.Run(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "[-]%s failed: %v\n", c.Name, err)
				return
			}
			fmt.Fprint(w, "ok")
		})
	}
}

func plainText(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

// Ports are a component's plain-HTTP side ports: the probes' and the
// metrics'. Either listener may be nil (not served), and both may be the
// same listener (one server answers both).
type Ports struct {
	// Probes, when not nil, serves the routes Routes adds.
	Probes net.Listener
	Routes func(mux *http.ServeMux)
	// Metrics, when not nil, serves GET /metrics with MetricsHandler.
	Metrics        net.Listener
	MetricsHandler http.Handler
}

// Servers makes one server per listener of p; the caller serves each on
// its listener and closes it. The servers' own errors (bad requests, TLS
// spoken to a plain port) go to logger at debug level: any client on the
// network can cause them.
func (p Ports) Servers(logger *slog.Logger) map[net.Listener]*http.Server {
	muxes := map[net.Listener]*http.ServeMux{}
	muxFor := func(l net.Listener) *http.ServeMux {
		if muxes[l] == nil {
			muxes[l] = http.NewServeMux()
		}
		return muxes[l]
	}
	if p.Probes != nil {
		p.Routes(muxFor(p.Probes))
	}
	if p.Metrics != nil {
		muxFor(p.Metrics).Handle("GET /metrics", p.MetricsHandler)
	}
	servers := make(map[net.Listener]*http.Server, len(muxes))
	for l, mux := range muxes {
		servers[l] = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		}
	}
	return servers
}
