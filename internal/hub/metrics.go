package hub

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tether.dev/tether/internal/requestmetrics"
	"tether.dev/tether/internal/store"
)

// The hub's Prometheus metrics (docs/operations.md lists them). No series
// carries a user, a principal or a cluster: principals are unbounded, and
// clusters, though bounded by the fleet, may number tens of thousands,
// each multiplying every labelled series; per-cluster and per-principal
// questions are the audit trail's (tether audit list). Every label below
// takes a small, fixed set of values.

// Reasons of tether_hub_agent_disconnects_total: why a tunnel ended.
const (
	disconnectClosed    = "closed"            // the agent closed it, or the connection broke
	disconnectKeepAlive = "keepalive_timeout" // the agent stopped answering pings
	disconnectDrain     = "drain"             // this replica is draining and sent the agent elsewhere
	disconnectReplaced  = "replaced"          // the agent connected again (here or elsewhere) and the newer tunnel won
	disconnectRevoked   = "revoked"           // the cluster was deleted or its agent enrolled anew
	disconnectShutdown  = "shutdown"          // this replica stopped with the tunnel still open
)

// Reasons of tether_hub_agent_connect_refusals_total: why a tunnel was
// refused before it was accepted.
const (
	refusedDraining     = "draining"          // this replica is draining
	refusedMalformed    = "malformed_proof"   // no agent proof, or not one
	refusedUnknown      = "unknown_cluster"   // the cluster is not registered (deleted)
	refusedNotEnrolled  = "not_enrolled"      // no agent key enrolled for the cluster
	refusedBadProof     = "bad_proof"         // the proof does not verify (wrong key, replayed, stale)
	refusedExpiredKey   = "expired_key"       // the agent key was idle past AgentKeyMaxIdle
	refusedStoreFailure = "store_unavailable" // the hub could not read the cluster
)

// Modes and decisions of tether_hub_authorization_decisions_total.
const (
	// authzModeToken: a Kubernetes token passed through, which the API
	// server judges; the hub's decision is always allow.
	authzModeToken = "token"
	// authzModeAdmin: the admin API (the bootstrap admin token, or the
	// caller's hub role assignments).
	authzModeAdmin = "admin"
	// authzModeUnknown: a signed-in caller whose cluster's mode could not
	// be read (the store is unavailable): an error, or an allow on a
	// recent decision.
	authzModeUnknown = "unknown"

	decisionAllow = "allow"
	decisionDeny  = "deny"
	decisionError = "error"
)

// Metrics are a hub's Prometheus metrics, in a registry of their own with
// the Go runtime and process collectors. Make them with NewMetrics when the
// store they instrument (InstrumentStore) is shared with something other
// than the hub (the embedded issuer); otherwise New makes them.
type Metrics struct {
	registry         *prometheus.Registry
	agentSessions    prometheus.Gauge
	agentConnects    prometheus.Counter
	agentDisconnects *prometheus.CounterVec
	agentRefusals    *prometheus.CounterVec
	requests         *prometheus.CounterVec
	timing           requestmetrics.Timing
	tunnelSent       prometheus.Counter
	tunnelReceived   prometheus.Counter
	tunnelRTT        prometheus.Histogram
	authz            *prometheus.CounterVec
	storeDuration    *prometheus.HistogramVec
	auditLost        prometheus.Counter
}

// NewMetrics makes the hub's metrics; version is the hub's release (its
// build info).
func NewMetrics(version string) *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := promauto.With(r)
	if version == "" {
		version = "unknown"
	}
	f.NewGauge(prometheus.GaugeOpts{Name: "tether_hub_build_info", Help: "Always 1; the hub's version and the Go version it was built with as labels.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()}}).Set(1)
	m := &Metrics{
		registry: r,
		agentSessions: f.NewGauge(prometheus.GaugeOpts{Name: "tether_hub_agent_sessions",
			Help: "Agent tunnels connected to this replica."}),
		agentConnects: f.NewCounter(prometheus.CounterOpts{Name: "tether_hub_agent_connects_total",
			Help: "Agent tunnels accepted by this replica."}),
		agentDisconnects: f.NewCounterVec(prometheus.CounterOpts{Name: "tether_hub_agent_disconnects_total",
			Help: "Agent tunnels ended, by reason: closed, keepalive_timeout, drain, replaced, revoked, shutdown."}, []string{"reason"}),
		agentRefusals: f.NewCounterVec(prometheus.CounterOpts{Name: "tether_hub_agent_connect_refusals_total",
			Help: "Agent tunnel connections refused, by reason: draining, malformed_proof, unknown_cluster, not_enrolled, bad_proof, expired_key, store_unavailable."}, []string{"reason"}),
		requests: f.NewCounterVec(prometheus.CounterOpts{Name: "tether_hub_requests_total",
			Help: "Gateway requests answered by this replica (counted where the tunnel is, as the audit trail), by Kubernetes verb and HTTP status code (0: the client left before an answer)."},
			[]string{"verb", "code"}),
		timing: requestmetrics.New(f, "hub",
			"Duration of gateway requests that are not long-running (watches, logs, exec, attach, port-forward and proxy excluded), by Kubernetes verb.",
			"Long-running gateway requests in flight through this replica's tunnels, by kind: watch, exec, attach, portforward, log, proxy."),
		tunnelSent: f.NewCounter(prometheus.CounterOpts{Name: "tether_hub_tunnel_sent_bytes_total",
			Help: "Bytes the hub wrote to agent tunnel streams (requests toward the clusters)."}),
		tunnelReceived: f.NewCounter(prometheus.CounterOpts{Name: "tether_hub_tunnel_received_bytes_total",
			Help: "Bytes the hub read from agent tunnel streams (the clusters' answers)."}),
		tunnelRTT: f.NewHistogram(prometheus.HistogramOpts{Name: "tether_hub_tunnel_rtt_seconds",
			Help:    "Round-trip time of the keepalive pings on agent tunnels, from the hub's side.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		authz: f.NewCounterVec(prometheus.CounterOpts{Name: "tether_hub_authorization_decisions_total",
			Help: "Authorization decisions made by the hub, by mode (kubernetes-rbac, hub-rbac, token, admin, unknown) and decision (allow, deny, error)."},
			[]string{"mode", "decision"}),
		storeDuration: f.NewHistogramVec(prometheus.HistogramOpts{Name: "tether_hub_store_query_duration_seconds",
			Help:    "Duration of the hub's store calls, failed ones included, by operation (the store method).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}}, []string{"operation"}),
		auditLost: f.NewCounter(prometheus.CounterOpts{Name: "tether_hub_audit_events_lost_total",
			Help: "Audit events dropped because the queue to the store was full, or the store did not take them at shutdown."}),
	}
	// Every series known in advance exists from the start, so that rate()
	// and absent() work before the first event.
	for _, r := range []string{disconnectClosed, disconnectKeepAlive, disconnectDrain, disconnectReplaced, disconnectRevoked, disconnectShutdown} {
		m.agentDisconnects.WithLabelValues(r)
	}
	for _, r := range []string{refusedDraining, refusedMalformed, refusedUnknown, refusedNotEnrolled, refusedBadProof, refusedExpiredKey, refusedStoreFailure} {
		m.agentRefusals.WithLabelValues(r)
	}
	for _, mode := range []string{string(store.ModeKubernetesRBAC), string(store.ModeHubRBAC), authzModeToken, authzModeAdmin, authzModeUnknown} {
		for _, d := range []string{decisionAllow, decisionDeny, decisionError} {
			m.authz.WithLabelValues(mode, d)
		}
	}
	for _, op := range store.Operations() {
		m.storeDuration.WithLabelValues(op)
	}
	return m
}

// InstrumentStore returns st with every call timed into
// tether_hub_store_query_duration_seconds; it stays a store.Watcher if st
// is one.
func (m *Metrics) InstrumentStore(st store.Store) store.Store {
	return store.Instrument(st, func(op string, start time.Time, _ error) {
		m.storeDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	})
}

// Handler serves the metrics in the Prometheus text format; the scrape's
// own errors go to logger.
func (m *Metrics) Handler(logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	})
}

// authorized counts one authorization decision.
func (m *Metrics) authorized(mode, decision string) {
	m.authz.WithLabelValues(mode, decision).Inc()
}

// request counts one gateway request answered with code, and its
// duration unless it was long-running.
func (m *Metrics) request(verb, kind string, code int, took time.Duration) {
	m.requests.WithLabelValues(verb, strconv.Itoa(code)).Inc()
	m.timing.Observe(verb, kind, took)
}

// inFlight counts a long-running request of kind in flight until the
// returned func is called; for a short request (kind "") it does nothing.
func (m *Metrics) inFlight(kind string) func() { return m.timing.InFlight(kind) }

// countTunnel counts the bytes through one tunnel stream the hub opened.
func (m *Metrics) countTunnel(open func(context.Context) (net.Conn, error)) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		c, err := open(ctx)
		if err != nil {
			return nil, err
		}
		return &tunnelConn{Conn: c, m: m}, nil
	}
}

// tunnelConn is a tunnel stream with its bytes counted. It keeps the
// stream's CloseWrite, which an upgraded connection's copy half-closes
// with.
type tunnelConn struct {
	net.Conn
	m *Metrics
}

func (c *tunnelConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.m.tunnelReceived.Add(float64(n))
	}
	return n, err
}

func (c *tunnelConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.m.tunnelSent.Add(float64(n))
	}
	return n, err
}

func (c *tunnelConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// clusterAuthzMode is the mode label of a decision for a cluster in mode
// m: only the two modes there are, whatever the store holds.
func clusterAuthzMode(m store.ClusterMode) string {
	if m == store.ModeHubRBAC {
		return string(store.ModeHubRBAC)
	}
	return string(store.ModeKubernetesRBAC)
}
