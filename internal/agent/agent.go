// Package agent is the part of Tether that runs inside a cluster. It dials
// out to the hub, keeps one tunnel up, and forwards what arrives through it
// to the cluster's API server. The cluster needs no inbound port.
//
//	hub (public)  ◄──── wss, dialled by the agent ────  agent (in the cluster)
//	  │ opens one stream per HTTP connection                 │ serves HTTP on the tunnel
//	  └──────────── kubectl's requests ───────────────────►  └──► kube-apiserver
//
// First run: the agent generates an Ed25519 key, presents the one-time join
// token with its public key to the hub (enrollment) and stores the key and
// the hub's answer in its state directory or state Secret, with the keys of
// the TLS certificates the hub presented (pin.go). Every later connection,
// and every status report, must show one of those keys, and is proved with
// the agent's key (package agentkey). After any failure it reconnects with
// exponential backoff and full jitter.
//
// Beside the tunnel, the agent probes the API server, reports its status to
// the hub (StatusReport) and serves health checks and Prometheus metrics
// (docs/agent.md).
package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/backoff"
	"tether.dev/tether/internal/tunnel"
)

// The hub's agent endpoints (docs/protocol.md).
const (
	EnrollPath = "/api/v1/agent/enroll"
	TunnelPath = "/api/v1/agent/tunnel"
)

// Headers the agent reports on every tunnel connection.
const (
	HeaderAgentVersion      = "Tether-Agent-Version"
	HeaderKubernetesVersion = "Tether-Kubernetes-Version"
	// HeaderClusterMode is the hub's answer: kubernetes-rbac or hub-rbac.
	HeaderClusterMode = "Tether-Cluster-Mode"
)

// EnrollRequest is the body of POST EnrollPath.
type EnrollRequest struct {
	// PublicKey is the agent's Ed25519 public key, standard base64.
	PublicKey    string `json:"publicKey"`
	AgentVersion string `json:"agentVersion,omitempty"`
}

// EnrollResponse is the hub's answer to a successful enrollment.
type EnrollResponse struct {
	// Cluster is the ID the join token was bound to.
	Cluster string `json:"cluster"`
	// HubID names the hub in the assertions it signs (their iss).
	HubID string `json:"hubID"`
	// HubKeys are the PEM Ed25519 public keys the hub signs assertions
	// with; the agent accepts a request only with a valid assertion.
	HubKeys []string `json:"hubKeys"`
	// TunnelURL is the hub endpoint of the cluster's location, which the
	// agent dials for its tunnel and status reports from now on. Empty: the
	// URL it enrolled at.
	TunnelURL string `json:"tunnelURL,omitempty"`
}

// The reconnect policy's defaults (Config), and how long a tunnel must
// have been up for the agent to reconnect at once after the hub's GoAway.
const (
	DefaultMinBackoff  = 500 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
	DefaultStableAfter = 30 * time.Second
	GoAwayAfter        = time.Second
)

// Config configures an agent.
type Config struct {
	// Hub is the hub's base URL, https://HOST[:PORT], where the agent
	// enrolls. Required. After enrollment the tunnel and status reports go to
	// the EnrollResponse's TunnelURL when the hub sent one.
	Hub *url.URL
	// HubClient carries enrollment, the tunnel and status reports: its
	// transport holds the hub's CA bundle and the HTTPS_PROXY settings. It
	// is used for the hub only, never for the API server. Nil means a client
	// with the system roots and http.ProxyFromEnvironment. After enrollment
	// the agent uses clones of its transport that also check the hub's
	// pinned TLS keys; that needs an *http.Transport (or nil, for
	// http.DefaultTransport): with another RoundTripper the keys are not
	// pinned, and New logs a warning.
	HubClient *http.Client
	// JoinToken is the one-time token from cluster registration; needed only
	// until enrollment succeeds, and ignored (with a log line) after.
	JoinToken string
	// StateDir keeps the agent's key (agent.key) and the hub's enrollment
	// answer (hub.json); created 0700, files 0600.
	StateDir string
	// StateSecret keeps the same two entries as the keys of a Secret, read
	// and written with the agent's own credentials (get, and create or
	// update), so the replicas of a Deployment share one enrollment.
	// Exactly one of StateDir and StateSecret is required.
	StateSecret types.NamespacedName
	// APIServer is how the agent reaches the API server (in-cluster config
	// or a kubeconfig). Required.
	APIServer *rest.Config
	// Version is this agent's version, reported to the hub.
	Version string
	// MinBackoff and MaxBackoff bound the reconnect wait. Zero means 500 ms
	// and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// StableAfter is how long a tunnel must stay up for the backoff to
	// reset. Zero means 30 s.
	StableAfter time.Duration
	// CheckInterval is how often the agent probes the API server (GET
	// /version) for /readyz and for LastError. Zero means 10 s.
	CheckInterval time.Duration
	// StatusInterval is how often the agent re-checks its permissions and
	// node count and reports its status to the hub; it also reports at each
	// tunnel connect and as soon as LastError changes. A failed permission
	// or node check is made again every CheckInterval until it passes.
	// Zero means 60 s.
	StatusInterval time.Duration
	// HealthListener, when not nil, serves /livez and /readyz (and
	// /livez/NAME, /readyz/NAME for each check). MetricsListener, when not
	// nil, serves /metrics. They may be the same listener, which then
	// serves all of them. Run closes them.
	HealthListener, MetricsListener net.Listener
	// Tunnel tunes the multiplexed connection; zero values are the tunnel
	// package's defaults.
	Tunnel tunnel.Config
}

// Agent is a configured agent; Run it once.
type Agent struct {
	cfg     Config
	logger  *slog.Logger
	proxy   *apiProxy
	state   stateStore
	kube    *kubeClients
	vitals  vitals
	metrics *metrics
	// wake asks the monitor for a full check and a status report now
	// (enrolled, tunnel connected, mode changed). One pending request is
	// enough, hence the buffer of one.
	wake chan struct{}
}

// ErrRefused wraps the hub's permanent refusals (bad or used join token,
// unknown or revoked agent): retrying cannot help.
var ErrRefused = errors.New("the hub refused this agent")

// New validates cfg. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if cfg.Hub == nil || cfg.Hub.Host == "" || cfg.Hub.Scheme != "https" {
		return nil, errors.New("agent: the hub URL must be https://HOST[:PORT]")
	}
	secret := cfg.StateSecret != types.NamespacedName{}
	switch {
	case cfg.StateDir == "" && !secret:
		return nil, errors.New("agent: a state directory or state Secret is required")
	case cfg.StateDir != "" && secret:
		return nil, errors.New("agent: give a state directory or a state Secret, not both")
	case secret && (cfg.StateSecret.Namespace == "" || cfg.StateSecret.Name == ""):
		return nil, fmt.Errorf("agent: state Secret %q must be NAMESPACE/NAME", cfg.StateSecret)
	}
	if cfg.APIServer == nil {
		return nil, errors.New("agent: the API server config is required")
	}
	if cfg.HubClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = http.ProxyFromEnvironment
		cfg.HubClient = &http.Client{Transport: t}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.MinBackoff, DefaultMinBackoff},
		{&cfg.MaxBackoff, DefaultMaxBackoff},
		{&cfg.StableAfter, DefaultStableAfter},
		{&cfg.CheckInterval, 10 * time.Second},
		{&cfg.StatusInterval, time.Minute},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return nil, fmt.Errorf("agent: negative interval %s", *d.v)
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !pinnable(cfg.HubClient) {
		logger.Warn("the hub client's transport is not an *http.Transport: the hub's TLS keys will not be pinned", "transport", fmt.Sprintf("%T", cfg.HubClient.Transport))
	}
	cfg.Tunnel.Logger = logger
	// HTTPS_PROXY is for the hub only: the API server is reached directly,
	// whatever the environment says (client-go would honour it otherwise).
	cfg.APIServer = rest.CopyConfig(cfg.APIServer)
	cfg.APIServer.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	proxy, err := newAPIProxy(cfg.APIServer, logger)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	kube, err := newKubeClients(cfg.APIServer, cfg.Version)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var state stateStore = dirState{dir: cfg.StateDir}
	if secret {
		state = secretState{secrets: kube.client.CoreV1(), ref: cfg.StateSecret}
	}
	a := &Agent{cfg: cfg, logger: logger, proxy: proxy, state: state, kube: kube, wake: make(chan struct{}, 1)}
	a.metrics = newMetrics(cfg.Version)
	if a.cfg.Tunnel.OnPing == nil {
		m := a.metrics
		a.cfg.Tunnel.OnPing = func(rtt time.Duration) { m.tunnelRTT.Observe(rtt.Seconds()) }
	}
	a.vitals.s.beat = time.Now()
	return a, nil
}

// Run enrolls if needed, then keeps a tunnel to the hub until ctx ends;
// meanwhile it probes the API server, reports status to the hub and serves
// the health listener. It returns nil when ctx ends, or an error wrapping
// ErrRefused when the hub permanently refuses the agent. Every goroutine it
// starts has exited when it returns.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	side := a.sideServers()
	for l, s := range side {
		wg.Go(func() { s.Serve(l) }) // returns once s is closed
	}
	wg.Go(func() { a.monitor(ctx) })
	err := a.serve(ctx)
	a.vitals.set(func(v *vitalSigns) { v.stopping = true })
	cancel()
	for _, s := range side {
		s.Close()
	}
	wg.Wait()
	a.kube.closeIdle()
	if en := a.vitals.get().en; en != nil {
		en.closeIdle()
	}
	return err
}

// serve enrolls, then keeps the tunnel up.
func (a *Agent) serve(ctx context.Context) error {
	bo := backoff.New(a.cfg.MinBackoff, a.cfg.MaxBackoff)
	var en *enrollment
	for {
		var err error
		en, err = a.enrollment(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, ErrRefused) || ctx.Err() != nil {
			return ctxOr(ctx, err)
		}
		wait := bo.Next()
		a.logger.Warn("enrollment failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond).String())
		if !sleep(ctx, wait) {
			return nil
		}
	}
	bo.Reset()
	a.vitals.set(func(v *vitalSigns) { v.en = en })
	a.poke()
	handler := a.metrics.instrument(a.proxy.forCluster(en.cluster, en.verifier))
	rbac := &rbacManager{cfg: a.cfg.APIServer, logger: a.logger}
	defer rbac.stop()

	var served sync.WaitGroup // sessions still finishing in-flight requests
	defer served.Wait()
	for {
		start := time.Now()
		err := a.connect(ctx, en, handler, rbac, &served)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRefused) {
			return err
		}
		up := time.Since(start)
		if up >= a.cfg.StableAfter {
			bo.Reset()
		}
		if errors.Is(err, errMovedAway) && up >= GoAwayAfter {
			// A draining hub replica: connect to another one now (its
			// in-flight requests finish on the old tunnel meanwhile), and
			// count the wait afresh: a restart the hub announced is not a
			// failure, and if no other replica answers the agent is back
			// within about half the restart's length. A hub that sends
			// every new tunnel away at once gets the backoff.
			a.logger.Info("hub replica is draining; reconnecting now", "cluster", en.cluster)
			bo.Reset()
			continue
		}
		wait := bo.Next()
		if isPinError(err) {
			// Retried: a passing misrouting or interception must not stop
			// the agent for good, but every attempt is an error worth a look.
			a.logger.Error("the hub's TLS keys are not those pinned at enrollment; reconnecting", "cluster", en.cluster, "err", err, "retry_in", wait.Round(time.Millisecond).String())
		} else {
			a.logger.Warn("tunnel down; reconnecting", "cluster", en.cluster, "err", err, "retry_in", wait.Round(time.Millisecond).String())
		}
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// poke wakes the monitor for a full check and a status report.
func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default: // one is pending already
	}
}

// errMovedAway ends a tunnel whose hub replica asked the agent to reconnect
// (it is draining).
var errMovedAway = errors.New("hub asked the agent to reconnect elsewhere (draining)")

// connect dials one tunnel and serves it until it dies, the hub asks the
// agent to go elsewhere, or ctx ends. A session told to go away keeps
// serving its in-flight requests in the background (counted by served).
func (a *Agent) connect(ctx context.Context, en *enrollment, handler http.Handler, rbac *rbacManager, served *sync.WaitGroup) error {
	proof, err := en.proof()
	if err != nil {
		return err
	}
	header := http.Header{}
	header.Set("Authorization", proof)
	header.Set(HeaderAgentVersion, a.cfg.Version)
	if a.vitals.get().version == "" {
		a.probe(ctx) // not probed yet, or the API server did not answer: try now
	}
	header.Set(HeaderKubernetesVersion, a.vitals.get().version)
	client, chain, release := en.tunnelClient()
	sess, err := tunnel.Dial(ctx, tunnel.DialConfig{URL: en.endpoint("wss", TunnelPath), Header: header, Client: client, Config: a.cfg.Tunnel})
	release()
	if err != nil {
		reason := dialNetwork
		var he *tunnel.HandshakeError
		var pe *pinError
		switch {
		case errors.As(err, &pe):
			reason = dialPinMismatch
			err = pe // the whole story; the layers above add only noise
		case errors.As(err, &he):
			reason = dialHTTP
			if permanent(he.StatusCode) {
				reason = dialRefused
				err = fmt.Errorf("%w: %s (HTTP %d); re-register the cluster and use a new join token", ErrRefused, he.Message, he.StatusCode)
			}
		}
		if reason != dialRefused {
			err = fmt.Errorf("dial hub: %w", err)
		}
		if ctx.Err() == nil {
			a.metrics.connectFailures.WithLabelValues(reason).Inc()
			a.vitals.set(func(v *vitalSigns) { v.tunnelErr, v.dialErr = err, err })
		}
		return err
	}
	mode := sess.HandshakeHeader().Get(HeaderClusterMode)
	a.logger.Info("tunnel connected", "cluster", en.cluster, "hub", en.base.Host, "mode", mode)
	a.metrics.connects.Inc()
	a.metrics.tunnelConnected.Set(1)
	hubRBAC := mode == "hub-rbac"
	a.vitals.set(func(v *vitalSigns) { v.tunnelUp, v.tunnelErr, v.dialErr, v.hubRBAC = true, nil, nil, hubRBAC })
	a.poke() // a status report at connect, and a permission check for the mode
	if hubRBAC != rbac.running() {
		rbac.set(ctx, hubRBAC)
	}

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		// Assertions carry the caller's groups; thousands fit (no group limit).
		MaxHeaderBytes: 2 << 20,
		ErrorLog:       slog.NewLogLogger(a.logger.Handler(), slog.LevelDebug),
	}
	served.Add(1)
	go func() {
		defer served.Done()
		srv.Serve(a.metrics.countStreams(sess)) // returns when the session closes
	}()
	stop := func() {
		srv.Close()
		sess.Close() // also ends hijacked (upgraded) streams, which srv.Close leaves open
	}
	a.learnPins(ctx, en, chain())
	down := func(reason string, err error) error {
		a.metrics.tunnelConnected.Set(0)
		a.metrics.disconnects.WithLabelValues(reason).Inc()
		a.vitals.set(func(v *vitalSigns) { v.tunnelUp, v.tunnelErr = false, err })
		return err
	}
	select {
	case <-ctx.Done():
		stop()
		return down(disconnectShutdown, errors.New("the agent is stopping"))
	case <-sess.Done():
		stop()
		return down(disconnectClosed, fmt.Errorf("tunnel closed: %w", sess.Err()))
	case <-sess.GoAwayReceived():
		// The hub is draining: reconnect now, let this session finish what it
		// carries, and close it when its last stream ends or ctx ends.
		served.Add(1)
		go func() {
			defer served.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for sess.NumStreams() > 0 {
				select {
				case <-ctx.Done():
					stop()
					return
				case <-sess.Done():
					stop()
					return
				case <-tick.C:
				}
			}
			stop()
		}()
		return down(disconnectGoAway, errMovedAway)
	}
}

// enroll presents the join token and pub to the hub. It returns the hub's
// answer and the pins of the certificates the hub presented on that
// connection.
func (a *Agent) enroll(ctx context.Context, pub ed25519.PublicKey) (EnrollResponse, []string, error) {
	body, _ := json.Marshal(EnrollRequest{PublicKey: base64.StdEncoding.EncodeToString(pub), AgentVersion: a.cfg.Version})
	u := *a.cfg.Hub
	u.Path = strings.TrimSuffix(u.Path, "/") + EnrollPath
	data, peer, err := a.post(ctx, a.cfg.HubClient, u.String(), "Bearer "+a.cfg.JoinToken, body)
	if err != nil {
		err = fmt.Errorf("enroll at %s: %w", a.cfg.Hub.Host, err)
		var he *hubError
		if errors.As(err, &he) && permanent(he.code) {
			return EnrollResponse{}, nil, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return EnrollResponse{}, nil, err
	}
	var out EnrollResponse
	if err := json.Unmarshal(data, &out); err != nil || out.Cluster == "" || out.HubID == "" || len(out.HubKeys) == 0 {
		return EnrollResponse{}, nil, fmt.Errorf("enroll at %s: unexpected answer %q", a.cfg.Hub.Host, data)
	}
	return out, chainPins(peer), nil
}

// hubError is the hub's answer other than 2xx.
type hubError struct {
	code int
	// message is a Status's message, or else the body's text.
	message string
}

func (e *hubError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.message) }

// post sends a JSON body to the hub through client with the given
// Authorization, within 30 s, and returns the body of a 2xx answer, or a
// *hubError, with the certificates the server presented.
func (a *Agent) post(ctx context.Context, client *http.Client, u, authorization string, body []byte) ([]byte, []*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", authorization)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, nil, err
	}
	var peer []*x509.Certificate
	if resp.TLS != nil {
		peer = resp.TLS.PeerCertificates
	}
	if resp.StatusCode/100 != 2 {
		var st struct{ Message string }
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		return nil, peer, &hubError{code: resp.StatusCode, message: msg}
	}
	return data, peer, nil
}

// permanent reports whether an HTTP status from the hub means retrying
// cannot help.
func permanent(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// rbacManager runs the binding reconciler while the cluster is in hub-RBAC
// mode, and removes the bindings when it leaves that mode. Only Run's
// goroutine calls it.
type rbacManager struct {
	cfg    *rest.Config
	logger *slog.Logger
	rec    *BindingReconciler
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *rbacManager) running() bool { return m.cancel != nil }

func (m *rbacManager) set(ctx context.Context, hubRBAC bool) {
	switch {
	case hubRBAC && m.cancel == nil:
		rec, err := NewBindingReconciler(BindingReconcilerConfig{APIServer: m.cfg}, m.logger)
		if err != nil {
			m.logger.Error("start the hub-RBAC binding reconciler", "err", err)
			return
		}
		rctx, cancel := context.WithCancel(ctx)
		m.rec, m.cancel, m.done = rec, cancel, make(chan struct{})
		go func() {
			defer close(m.done)
			if err := rec.Run(rctx); err != nil && rctx.Err() == nil {
				m.logger.Error("hub-RBAC binding reconciler stopped", "err", err)
			}
		}()
		m.logger.Info("hub-RBAC mode: keeping the role bindings")
	case !hubRBAC && m.cancel != nil:
		m.stop()
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := m.rec.Remove(rctx); err != nil {
			m.logger.Error("remove the hub-RBAC bindings after leaving hub-RBAC mode", "err", err)
		}
	}
}

// stop ends the reconciler, if running, and waits for it.
func (m *rbacManager) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cancel = nil
}
