package agent

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/requestmetrics"
	"tether.dev/tether/internal/upgrade"
)

// Label values of the agent's metrics (docs/agent.md lists them).
const (
	// tether_agent_tunnel_connect_failures_total{reason}
	dialNetwork = "network" // DNS, TCP, TLS, the forward proxy, or not a tunnel endpoint
	dialHTTP    = "http"    // the hub answered with a status worth retrying (429, 5xx: draining)
	dialRefused = "refused" // the hub refused the agent for good (401, 403, 404, 410)
	// the server's TLS keys are not the hub's pinned ones (pin.go): retried
	dialPinMismatch = "pin_mismatch"

	// tether_agent_tunnel_disconnects_total{reason}
	disconnectClosed   = "closed"   // the connection died or the hub closed it
	disconnectGoAway   = "go_away"  // the hub is draining and asked for a new connection
	disconnectShutdown = "shutdown" // the agent is stopping

	// tether_agent_status_reports_total{result}
	reportOK          = "ok"
	reportFailed      = "error"
	reportUnsupported = "unsupported" // the hub answered 404: it has no status endpoint yet
)

// metrics are the agent's Prometheus metrics, in a registry of its own with
// the Go runtime and process collectors.
type metrics struct {
	registry           *prometheus.Registry
	tunnelConnected    prometheus.Gauge
	connects           prometheus.Counter
	connectFailures    *prometheus.CounterVec
	disconnects        *prometheus.CounterVec
	requests           *prometheus.CounterVec
	activeStreams      prometheus.Gauge
	receivedBytes      prometheus.Counter
	sentBytes          prometheus.Counter
	statusReports      *prometheus.CounterVec
	lastStatusReport   prometheus.Gauge
	apiserverReachable prometheus.Gauge
	timing             requestmetrics.Timing
	tunnelRTT          prometheus.Histogram
}

func newMetrics(version string) *metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := promauto.With(r)
	f.NewGauge(prometheus.GaugeOpts{Name: "tether_agent_build_info", Help: "Always 1; the agent's version as a label.",
		ConstLabels: prometheus.Labels{"version": version}}).Set(1)
	m := &metrics{
		registry: r,
		tunnelConnected: f.NewGauge(prometheus.GaugeOpts{Name: "tether_agent_tunnel_connected",
			Help: "1 while the tunnel to the hub is up, else 0."}),
		connects: f.NewCounter(prometheus.CounterOpts{Name: "tether_agent_tunnel_connects_total",
			Help: "Tunnels to the hub established."}),
		connectFailures: f.NewCounterVec(prometheus.CounterOpts{Name: "tether_agent_tunnel_connect_failures_total",
			Help: "Failed tunnel dials by reason: network, http (a status worth retrying), refused (permanent), pin_mismatch (not the hub's pinned TLS keys)."}, []string{"reason"}),
		disconnects: f.NewCounterVec(prometheus.CounterOpts{Name: "tether_agent_tunnel_disconnects_total",
			Help: "Tunnels ended by reason: closed, go_away (hub draining), shutdown."}, []string{"reason"}),
		requests: f.NewCounterVec(prometheus.CounterOpts{Name: "tether_agent_requests_total",
			Help: "Requests from the hub answered, by status class (1xx..5xx) and whether they were protocol upgrades (exec, attach, port-forward)."},
			[]string{"code", "upgrade"}),
		activeStreams: f.NewGauge(prometheus.GaugeOpts{Name: "tether_agent_tunnel_active_streams",
			Help: "Tunnel streams (HTTP connections from the hub) open now."}),
		receivedBytes: f.NewCounter(prometheus.CounterOpts{Name: "tether_agent_tunnel_received_bytes_total",
			Help: "Bytes read from tunnel streams (requests from the hub)."}),
		sentBytes: f.NewCounter(prometheus.CounterOpts{Name: "tether_agent_tunnel_sent_bytes_total",
			Help: "Bytes written to tunnel streams (answers to the hub)."}),
		statusReports: f.NewCounterVec(prometheus.CounterOpts{Name: "tether_agent_status_reports_total",
			Help: "Status reports sent to the hub by result: ok, error, unsupported (the hub has no status endpoint)."}, []string{"result"}),
		lastStatusReport: f.NewGauge(prometheus.GaugeOpts{Name: "tether_agent_status_report_last_success_timestamp_seconds",
			Help: "Unix time of the last status report the hub accepted; 0 before the first."}),
		apiserverReachable: f.NewGauge(prometheus.GaugeOpts{Name: "tether_agent_apiserver_reachable",
			Help: "1 if the last probe of the API server (GET /version) succeeded, else 0."}),
		timing: requestmetrics.New(f, "agent",
			"Duration of requests from the hub that are not long-running (watches, logs, exec, attach, port-forward and proxy excluded), by Kubernetes verb, API server time included.",
			"Long-running requests from the hub in flight, by kind: watch, exec, attach, portforward, log, proxy."),
		tunnelRTT: f.NewHistogram(prometheus.HistogramOpts{Name: "tether_agent_tunnel_rtt_seconds",
			Help:    "Round-trip time of the keepalive pings on the tunnel, from the agent's side.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	// Every series exists from the start, so rate() and absent() work.
	for _, r := range []string{dialNetwork, dialHTTP, dialRefused, dialPinMismatch} {
		m.connectFailures.WithLabelValues(r)
	}
	for _, r := range []string{disconnectClosed, disconnectGoAway, disconnectShutdown} {
		m.disconnects.WithLabelValues(r)
	}
	for _, r := range []string{reportOK, reportFailed, reportUnsupported} {
		m.statusReports.WithLabelValues(r)
	}
	for class := 1; class <= 5; class++ {
		for _, up := range []bool{false, true} {
			m.requests.WithLabelValues(strconv.Itoa(class)+"xx", strconv.FormatBool(up))
		}
	}
	return m
}

// handler serves the metrics in the Prometheus text format; the scrape's
// own errors go to logger.
func (m *metrics) handler(logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	})
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// instrument counts the requests h answers, times those that are not
// long-running, and counts the others in flight.
func (m *metrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		up := upgrade.IsUpgrade(r.Header)
		req := access.ParseRequest(r.Method, r.URL.Path, r.URL.Query())
		kind := access.LongRunningKind(req.Verb, req.Subresource, up)
		defer m.timing.InFlight(kind)()
		h.ServeHTTP(rec, r)
		m.timing.Observe(access.MetricVerb(req.Verb, req.Subresource), kind, time.Since(start))
		code := rec.code
		if code == 0 {
			code = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		m.requests.WithLabelValues(strconv.Itoa(code/100)+"xx", strconv.FormatBool(up)).Inc()
	})
}

// statusRecorder notes the status a handler sends. Flushing reaches the
// underlying writer through Unwrap (http.ResponseController).
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Hijack is how httputil.ReverseProxy takes over an upgraded connection;
// it writes the 101 on the hijacked connection itself.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil && s.code == 0 {
		s.code = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// countStreams counts the streams l accepts, and their bytes.
func (m *metrics) countStreams(l net.Listener) net.Listener { return countingListener{l, m} }

type countingListener struct {
	net.Listener
	m *metrics
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.m.activeStreams.Inc()
	return &countingConn{Conn: c, m: l.m}, nil
}

// countingConn is one stream. Whoever ends it (the HTTP server, or the
// reverse proxy for a hijacked one) closes it.
type countingConn struct {
	net.Conn
	m    *metrics
	once sync.Once
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.m.receivedBytes.Add(float64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.m.sentBytes.Add(float64(n))
	return n, err
}

func (c *countingConn) Close() error {
	c.once.Do(c.m.activeStreams.Dec)
	return c.Conn.Close()
}
