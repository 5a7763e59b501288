// Package requestmetrics is the request timing the hub and the agent both
// keep: a histogram of the durations of requests that are not
// long-running, by verb, and a gauge of the long-running ones in flight, by
// kind. It is defined once so that the hub's series and the agent's line
// up (the same buckets, the same labels, from package access's
// MetricVerb and LongRunningKind) and a dashboard can set one beside the
// other to see the tunnel's share of a request's time.
package requestmetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"tether.dev/tether/internal/access"
)

// Timing is tether_COMPONENT_request_duration_seconds{verb} and
// tether_COMPONENT_long_running_requests{kind}.
type Timing struct {
	// Duration is the histogram of requests that are not long-running.
	Duration *prometheus.HistogramVec
	// LongRunning is the gauge of long-running requests in flight.
	LongRunning *prometheus.GaugeVec
}

// New registers the timing of component ("hub", "agent") with f, each
// metric with its help text (what requests it counts, and where). Every
// series exists from the start, so that rate() and absent() work before
// the first request.
func New(f promauto.Factory, component, durationHelp, longRunningHelp string) Timing {
	t := Timing{
		Duration: f.NewHistogramVec(prometheus.HistogramOpts{Name: "tether_" + component + "_request_duration_seconds",
			Help:    durationHelp,
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"verb"}),
		LongRunning: f.NewGaugeVec(prometheus.GaugeOpts{Name: "tether_" + component + "_long_running_requests",
			Help: longRunningHelp}, []string{"kind"}),
	}
	for _, v := range access.MetricVerbs() {
		t.Duration.WithLabelValues(v)
	}
	for _, k := range access.LongRunningKinds() {
		t.LongRunning.WithLabelValues(k)
	}
	return t
}

// Observe times a finished request of verb (access.MetricVerb) that took
// took, unless it was long-running (kind, from access.LongRunningKind, is
// not ""): a watch's or an exec's duration says nothing about speed.
func (t Timing) Observe(verb, kind string, took time.Duration) {
	if kind == "" {
		t.Duration.WithLabelValues(verb).Observe(took.Seconds())
	}
}

// InFlight counts a long-running request of kind in flight until the
// returned func is called; for a request that is not long-running (kind
// "") it does nothing.
func (t Timing) InFlight(kind string) (done func()) {
	if kind == "" {
		return func() {}
	}
	g := t.LongRunning.WithLabelValues(kind)
	g.Inc()
	return g.Dec
}
