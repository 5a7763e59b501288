// Package hub is the public side of Tether: the endpoint agents dial out to,
// and the gateway through which kubectl reaches their clusters.
//
//	kubectl / tether proxy                hub                         agent (in the cluster)
//	  │  HTTPS /k8s/{group}/{cluster}/...  │                            │
//	  └──────────────────────────────────► │ ◄── wss /api/v1/agent/tunnel (agent dials)
//	                                       │ ───── one yamux stream per HTTP connection ──► API server
//
// A cluster is registered with the admin API, in one of the hub's locations,
// which returns a one-time join token. The agent redeems it once (POST
// /api/v1/agent/enroll) with a public key, learns its location's URL, and
// proves that key on every tunnel connection and status report (POST
// /api/v1/agent/status; package agentkey). A cluster's connectivity status
// (Connecting, Connected, Offline, Expired) is derived from its heartbeats
// when it is read; deleting a cluster revokes its agent's key and closes its
// tunnel.
// The gateway forwards requests, upgrades (exec, attach, port-forward, cp)
// and endless streams (watch, logs -f) through the cluster's tunnel, with
// no total deadline, and answers kubectl with Kubernetes Status errors.
//
// Several replicas may share one store (Config.PeerURL): each keeps a lease
// and, in memory, which replica holds which cluster's tunnel (routes.go,
// replicas.go), and forwards a request whose tunnel another replica holds
// to that replica (peer.go). Serve drains on its way out. See
// docs/scale-out.md.
package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tether.dev/tether/internal/agentkey"
	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/authheader"
	"tether.dev/tether/internal/copybuf"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/tunnel"
)

// Config configures a hub.
type Config struct {
	// Store holds clusters and join tokens. Required.
	Store store.Store
	// AdminTokenHash is the SHA-256 of the bootstrap admin token that
	// authorizes the admin API. Required (not all zero).
	AdminTokenHash [sha256.Size]byte
	// HubID names this hub (all its replicas) in the assertions it signs.
	// Required.
	HubID string
	// AssertionKey signs the per-request assertions agents demand; agents
	// learn its public half at enrollment. Required.
	AssertionKey ed25519.PrivateKey
	// Verifier checks signed-in callers' tokens (OIDC). Nil means no
	// sign-in: only service-account tokens, passed through to the cluster.
	Verifier *identity.Verifier
	// EmbeddedIssuer is the URL of the hub's own issuer (package issuer),
	// one of Verifier's issuers. Its callers must exist in Store, which
	// also holds their groups. Empty: no embedded issuer.
	EmbeddedIssuer string
	// IssuerHandler serves the embedded issuer's endpoints, under the path
	// of EmbeddedIssuer. Nil: not served by this hub.
	IssuerHandler http.Handler
	// Logins tell `tether login` where and how to sign in (served at
	// /api/v1/auth/config), the default first. Empty means the hub offers
	// no sign-in.
	Logins []LoginConfig
	// Replica names this hub process in the store. Empty means the host name.
	Replica string
	// PeerURL is where the hub's other replicas reach this one,
	// https://HOST:PORT (in Kubernetes, the pod's IP). Empty means this hub
	// runs alone: it forwards to no replica and keeps no lease. Set, Store
	// must implement store.Watcher and PeerTLS is required.
	PeerURL string
	// PeerTLS is the client TLS configuration for reaching other replicas:
	// the roots and server name their serving certificate is verified
	// with (every replica serves the same certificate).
	PeerTLS *tls.Config
	// ReplicaLease is how long this replica's record in the store lasts
	// without renewal; it is renewed every third of it, and a replica that
	// misses it is taken for dead (its tunnels' routes are dropped). Zero
	// means 15 s.
	ReplicaLease time.Duration
	// RouteWait is how long a request for a cluster whose agent is moving
	// between replicas (its tunnel just closed, or its replica died) waits
	// for the agent to connect again before the cluster is reported not
	// connected. Zero means 5 s.
	RouteWait time.Duration
	// DrainDelay is how long, once Serve's context ends, the hub fails
	// readiness while serving as usual, so load balancers stop sending it
	// new connections before its agents are moved. Zero means none.
	DrainDelay time.Duration
	// JoinTokenTTL is how long a new join token stays valid. Zero means 24 h.
	JoinTokenTTL time.Duration
	// HeartbeatInterval is how often a connected cluster's last-seen time is
	// written. Zero means 30 s.
	HeartbeatInterval time.Duration
	// OfflineAfter is how long after its last heartbeat a cluster still
	// counts as Connected; then it is Offline. Zero means three
	// HeartbeatIntervals; it may not be shorter than one.
	OfflineAfter time.Duration
	// AgentKeyMaxIdle is how long an agent key stays valid without use (no
	// heartbeat, status report or enrollment): past it the cluster is
	// Expired and its agent is refused until it enrolls again with a new
	// join token. Zero means 90 days (Azure Arc's figure); it must be longer
	// than OfflineAfter.
	AgentKeyMaxIdle time.Duration
	// Locations are the regions clusters are registered in: for each, the
	// URL the agents of its clusters dial and the endpoints they must be
	// allowed to reach (see Location). A cluster registered without a
	// location gets the first. Empty means one location, "local", without a
	// URL (agents keep the URL they enrolled at) or endpoints.
	Locations []Location
	// Version is this hub's release, served at /api/v1/version. Empty
	// means unknown.
	Version string
	// DrainGrace bounds how long Serve waits for in-flight requests after
	// its agents were moved; then long streams (watches, logs, exec) are
	// ended. Zero means 10 s.
	DrainGrace time.Duration
	// AuditLog, when set, receives every audit event as a JSON line, after
	// the store has chained it (for a SIEM). The store keeps them anyway.
	AuditLog io.Writer
	// Tunnel tunes agent tunnels; zero values are the tunnel package's
	// defaults. Its OnPing is the hub's tunnel RTT metric unless set.
	Tunnel tunnel.Config
	// Metrics are the hub's Prometheus metrics; New instruments Store with
	// them. Nil means New makes its own (NewMetrics with Version); make
	// them first when another user of the store (the embedded issuer) is
	// to be measured too (Metrics.InstrumentStore).
	Metrics *Metrics
	// MetricsListener, when not nil, serves GET /metrics in plain HTTP
	// (the Prometheus text format). ProbeListener, when not nil, serves
	// GET /livez and /readyz (with ?verbose, and /livez/NAME,
	// /readyz/NAME for each check) in plain HTTP; both are also served on
	// the HTTPS listener. They may be the same listener, which then
	// serves all three. Serve serves them until it returns (readiness
	// keeps answering, failed, through the drain) and closes them.
	MetricsListener, ProbeListener net.Listener
	// Console, when set, makes the web console's handler (package
	// console), served under /console/ (and GET / redirects there); api is
	// the hub's own handler, which the console calls in process with the
	// signed-in person's token. Nil means no console.
	Console func(api http.Handler) http.Handler
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// While the store is unreachable, a signed-in caller's request is allowed on
// the decision made for the same token and cluster up to decisionsStaleFor
// earlier (see decisions); maxDecisions bounds how many are kept.
const (
	decisionsStaleFor = 5 * time.Minute
	maxDecisions      = 10_000
)

// Hub serves the agent endpoints, the gateway and the admin API.
type Hub struct {
	cfg      Config
	logger   *slog.Logger
	mux      http.Handler
	replay   agentkey.Replay
	draining atomic.Bool
	signer   *identity.AssertionSigner
	hubKeys  []string // PEM public keys agents trust
	// issuerPath is the URL path the embedded issuer is served under.
	issuerPath string
	// locations are Config.Locations with their IDs, the default first.
	locations []LocationView

	mu      sync.Mutex            // guards tunnels and tunnelsChanged
	tunnels map[string]*agentConn // cluster ID -> its live tunnel
	// tunnelsChanged is closed and replaced when tunnels changes.
	tunnelsChanged chan struct{}
	// wg counts the tunnels registered and not yet unregistered (their
	// unregistering runs in a goroutine of its own once they end).
	wg sync.WaitGroup

	// audit records the audit trail (see audit.go).
	audit *auditor

	// decisions stand in for the store for signed-in callers while it is
	// unreachable.
	decisions *decisions

	// metrics are the Prometheus metrics (metrics.go).
	metrics *Metrics
	// httpsStopped is set when Serve's HTTPS listener has stopped serving
	// (a hub whose Handler is served by an embedder never sets it).
	httpsStopped atomic.Bool
	// storeHealth caches the readiness probe's store check.
	storeHealth storeCheck

	// active counts the gateway's requests in flight, upgraded ones
	// included; watches are the watches among them.
	active  atomic.Int64
	watches streamSet

	// Replication, when PeerURL is set (nil otherwise).
	rt            *routes
	changes       *changeQueue
	watcher       store.Watcher
	renewNow      chan struct{}
	peerKey       []byte
	peerProxy     *httputil.ReverseProxy
	peerStream    *httputil.ReverseProxy // peerProxy with small copy buffers (longStream)
	peerTransport *http.Transport
}

// New validates cfg and builds the hub. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Hub, error) {
	if cfg.Store == nil {
		return nil, errors.New("hub: a store is required")
	}
	if cfg.AdminTokenHash == ([sha256.Size]byte{}) {
		return nil, errors.New("hub: an admin token hash is required")
	}
	if cfg.Replica == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("hub: name this replica: %w", err)
		}
		cfg.Replica = host
	}
	if cfg.JoinTokenTTL == 0 {
		cfg.JoinTokenTTL = 24 * time.Hour
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 30 * time.Second
	}
	if cfg.OfflineAfter == 0 {
		cfg.OfflineAfter = 3 * cfg.HeartbeatInterval
	}
	if cfg.AgentKeyMaxIdle == 0 {
		cfg.AgentKeyMaxIdle = DefaultAgentKeyMaxIdle
	}
	switch {
	case cfg.HeartbeatInterval < 0:
		return nil, fmt.Errorf("hub: heartbeat interval %s: want a positive duration", cfg.HeartbeatInterval)
	case cfg.OfflineAfter < cfg.HeartbeatInterval:
		return nil, fmt.Errorf("hub: offline window %s is shorter than the heartbeat interval %s: connected clusters would show Offline between heartbeats", cfg.OfflineAfter, cfg.HeartbeatInterval)
	case cfg.AgentKeyMaxIdle <= cfg.OfflineAfter:
		return nil, fmt.Errorf("hub: agent key maximum idle time %s must be longer than the offline window %s", cfg.AgentKeyMaxIdle, cfg.OfflineAfter)
	}
	locations, err := newLocations(cfg.Locations)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if cfg.DrainGrace == 0 {
		cfg.DrainGrace = 10 * time.Second
	}
	if cfg.ReplicaLease == 0 {
		cfg.ReplicaLease = 15 * time.Second
	}
	if cfg.RouteWait == 0 {
		cfg.RouteWait = 5 * time.Second
	}
	if cfg.ReplicaLease < 300*time.Millisecond || cfg.RouteWait < 0 || cfg.DrainDelay < 0 || cfg.DrainGrace < 0 {
		return nil, fmt.Errorf("hub: replica lease %s (at least 300ms), route wait %s, drain delay %s and drain grace %s must not be negative", cfg.ReplicaLease, cfg.RouteWait, cfg.DrainDelay, cfg.DrainGrace)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Tunnel.Logger = logger
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(cfg.Version)
	}
	m := cfg.Metrics
	cfg.Store = m.InstrumentStore(cfg.Store)
	if cfg.Tunnel.OnPing == nil {
		cfg.Tunnel.OnPing = func(rtt time.Duration) { m.tunnelRTT.Observe(rtt.Seconds()) }
	}
	signer, err := identity.NewAssertionSigner(cfg.HubID, cfg.AssertionKey)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	pub, err := identity.MarshalPublicKeyPEM(signer.PublicKey())
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	h := &Hub{cfg: cfg, logger: logger, tunnels: map[string]*agentConn{}, tunnelsChanged: make(chan struct{}),
		decisions: newDecisions(decisionsStaleFor, maxDecisions),
		audit:     newAuditor(cfg.Store, cfg.AuditLog, logger),
		signer:    signer, hubKeys: []string{string(pub)}, locations: locations, metrics: m}
	h.audit.lostMetric = m.auditLost
	if cfg.PeerURL != "" {
		u, err := url.Parse(cfg.PeerURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("hub: peer URL %q: want https://HOST:PORT, where the other replicas reach this one", cfg.PeerURL)
		}
		w, ok := cfg.Store.(store.Watcher)
		if !ok {
			return nil, errors.New("hub: replicas need a store that tells them of each other's changes (store.Watcher)")
		}
		if cfg.PeerTLS == nil {
			return nil, errors.New("hub: replicas need the TLS configuration to verify each other (PeerTLS)")
		}
		h.watcher = w
		h.rt = newRoutes(cfg.Replica)
		h.changes = newChangeQueue()
		h.renewNow = make(chan struct{}, 1)
		h.peerKey = peerKeyFor(cfg.AssertionKey)
		h.peerProxy = h.newPeerProxy(cfg.PeerTLS)
		stream := *h.peerProxy
		stream.BufferPool = copybuf.Small
		h.peerStream = &stream
	}
	if cfg.IssuerHandler != nil {
		u, err := url.Parse(cfg.EmbeddedIssuer)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Path == "" || u.Path == "/" || strings.HasSuffix(u.Path, "/") {
			return nil, fmt.Errorf("hub: embedded issuer URL %q: want https://HOST[:PORT]/PATH", cfg.EmbeddedIssuer)
		}
		h.issuerPath = u.Path
	}
	h.routes()
	return h, nil
}

func (h *Hub) routes() {
	mux := http.NewServeMux()
	h.probeRoutes(mux)
	mux.HandleFunc("GET /api/v1/auth/config", h.authConfig)
	mux.HandleFunc("GET /api/v1/version", h.version)
	mux.HandleFunc("POST "+enrollPath, h.enroll)
	mux.HandleFunc("GET "+tunnelPath, h.tunnel)
	mux.HandleFunc("POST "+statusPath, h.agentStatus)
	mux.HandleFunc("/k8s/{group}/{cluster}/{rest...}", h.gateway)
	mux.HandleFunc("/k8s/{group}/{cluster}", h.gateway)
	h.adminRoutes(mux)
	h.locationRoutes(mux)
	h.assignmentRoutes(mux)
	h.directoryRoutes(mux)
	h.auditRoutes(mux)
	if h.issuerPath != "" {
		mux.Handle(h.issuerPath+"/", h.cfg.IssuerHandler)
	}
	if h.cfg.Console != nil {
		mux.Handle("/console/", h.cfg.Console(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) })))
		mux.Handle("GET /{$}", http.RedirectHandler("/console/", http.StatusFound))
	}
	h.mux = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			// The hub tunnels nothing by CONNECT, and ServeMux neither
			// cleans a CONNECT's path nor matches it safely ("CONNECT
			// /k8s//x" made PathValue panic): refused before routing.
			apistatus.Write(w, http.StatusMethodNotAllowed, "the hub serves no CONNECT requests; it is not a forward proxy")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// AuthConfig is the answer of GET /api/v1/auth/config.
type AuthConfig struct {
	// Issuers are where people and programs sign in for this hub, the
	// default first.
	Issuers []LoginConfig `json:"issuers"`
}

// LoginConfig is what `tether login` needs to sign in at one issuer.
type LoginConfig struct {
	// Issuer is the OIDC issuer URL.
	Issuer string `json:"issuer"`
	// ClientID is the public client the CLI signs people in as.
	ClientID string `json:"clientID"`
	// Audience is the resource the access token must be for (the hub).
	Audience string `json:"audience"`
	// IssuerCA is a PEM bundle for the issuer's TLS, when it is not
	// publicly trusted; the CLI trusts it because it came from the hub it
	// already pins.
	IssuerCA string `json:"issuerCA,omitempty"`
	// Embedded says the issuer is the hub's own: the CLI reaches it as it
	// reaches the hub (same CA, same proxy).
	Embedded bool `json:"embedded,omitempty"`
}

// VersionInfo is the answer of GET /api/v1/version, which anyone may read.
type VersionInfo struct {
	// HubVersion is the hub's release (Config.Version); empty if unknown.
	HubVersion string `json:"hubVersion"`
}

func (h *Hub) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, VersionInfo{HubVersion: h.cfg.Version})
}

// Handler returns the hub's HTTP handler (for tests and embedding).
func (h *Hub) Handler() http.Handler { return h.mux }

func (h *Hub) authConfig(w http.ResponseWriter, _ *http.Request) {
	if len(h.cfg.Logins) == 0 {
		apistatus.Write(w, http.StatusNotFound, "this hub offers no sign-in; use a service-account token (tether proxy --token)")
		return
	}
	writeJSON(w, http.StatusOK, AuthConfig{Issuers: h.cfg.Logins})
}

// Serve serves HTTPS on l with tlsConfig until ctx ends, then drains: it
// fails readiness for DrainDelay while serving as usual, asks every agent
// to reconnect elsewhere and gives up its routes, waits up to DrainGrace
// for in-flight requests, then ends the long streams still open and closes
// every tunnel. It returns when every goroutine it started has exited.
func (h *Hub) Serve(ctx context.Context, l net.Listener, tlsConfig *tls.Config) error {
	// Every request's context: cancelled when the drain's grace is over,
	// which ends the streams (watch, logs -f, exec) still open.
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	srv := &http.Server{
		Handler:           h.mux,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(h.logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return streams },
		// No ReadTimeout or WriteTimeout: watches, logs -f, exec and the
		// tunnels themselves live as long as they are used.
	}

	// The replica loops: the lease stops when the drain gives the routes
	// up; the routes are followed until the end, for the requests still
	// being forwarded. The tunnels' heartbeats go on until the end too.
	loops, stopLoops := context.WithCancel(context.Background())
	lease, stopLease := context.WithCancel(loops)
	defer stopLease()
	var leaseDone, loopsDone sync.WaitGroup
	if h.rt != nil {
		leaseDone.Add(1)
		loopsDone.Add(1)
		go func() { defer leaseDone.Done(); h.leaseLoop(lease) }()
		go func() { defer loopsDone.Done(); h.watchLoop(loops, h.watcher) }()
	}
	loopsDone.Add(1)
	go func() { defer loopsDone.Done(); h.heartbeatLoop(loops) }()
	// The audit trail is written until every request is done.
	auditing, stopAudit := context.WithCancel(context.Background())
	var auditDone sync.WaitGroup
	auditDone.Add(1)
	go func() { defer auditDone.Done(); h.audit.run(auditing, 10*time.Second) }()
	defer func() {
		stopAudit()
		auditDone.Wait()
	}()
	defer func() {
		stopLoops()
		leaseDone.Wait()
		loopsDone.Wait()
	}()

	// The probe and metrics listeners, served until Serve returns: the
	// probes see the drain.
	side := h.sideServers()
	var sideDone sync.WaitGroup
	for sl, s := range side {
		sideDone.Go(func() { s.Serve(sl) }) // returns once s is closed
	}
	defer func() {
		for _, s := range side {
			s.Close()
		}
		sideDone.Wait()
	}()

	errc := make(chan error, 1)
	go func() {
		err := srv.ServeTLS(l, "", "")
		h.httpsStopped.Store(true)
		errc <- err
	}()
	h.logger.Info("hub serving", "addr", l.Addr().String(), "replica", h.cfg.Replica, "peer_url", h.cfg.PeerURL)

	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		h.drain(srv, func() { stopLease(); leaseDone.Wait() })
		endStreams()
		err = <-errc
	}
	srv.Close()
	h.closeAll()
	h.wg.Wait()
	// Upgraded requests end with their tunnels; their audit events are the
	// last to write.
	idle, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	h.waitIdle(idle)
	cancel()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// drain is Serve's orderly stop; stopLease stops the lease loop and waits
// for it.
func (h *Hub) drain(srv *http.Server, stopLease func()) {
	h.draining.Store(true)
	h.logger.Info("draining: readiness fails from now on; send the signal again to stop at once", "drain_delay", h.cfg.DrainDelay.String(), "drain_grace", h.cfg.DrainGrace.String())
	if h.cfg.DrainDelay > 0 {
		time.Sleep(h.cfg.DrainDelay)
	}
	// Agents first: they connect to another replica while this one still
	// carries what they had in flight.
	n := h.goAwayAll()
	h.logger.Info("draining: agents asked to reconnect elsewhere", "tunnels", n)
	if h.rt != nil {
		stopLease()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cleared, err := h.cfg.Store.RemoveReplica(ctx, h.cfg.Replica)
		cancel()
		if err != nil {
			h.logger.Warn("draining: give up routes (the other replicas will expire them)", "err", err)
		} else {
			h.logger.Info("draining: routes given up", "clusters", len(cleared))
		}
	}
	deadline := time.Now().Add(h.cfg.DrainGrace)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	srv.Shutdown(ctx) // closes the listener; waits for plain requests
	// Upgraded requests (exec, attach, port-forward) are hijacked, which
	// Shutdown does not wait for: count them out too.
	h.waitIdle(ctx)
	if n := h.active.Load(); n > 0 {
		w := h.watches.endAll("this hub replica is shutting down and ended the watch; watch again (the next connection goes to another replica)")
		h.logger.Info("draining: grace is over; ending the streams still open (clients reconnect to another replica)", "streams", n, "watches", w)
	}
}

// waitIdle waits until no gateway request is in flight, or ctx ends.
func (h *Hub) waitIdle(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for h.active.Load() > 0 && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

// checkAdmin authorizes the admin API with the bootstrap admin token.
func (h *Hub) checkAdmin(r *http.Request) bool {
	token, ok := authheader.Bearer(r.Header.Get("Authorization"))
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], h.cfg.AdminTokenHash[:]) == 1
}
