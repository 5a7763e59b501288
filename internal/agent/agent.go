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
// its cluster ID in its state directory. Every later connection is proved
// with that key (package agentkey). After any failure it reconnects with
// exponential backoff and full jitter.
package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/agentkey"
	"tether.dev/tether/internal/atomicfile"
	"tether.dev/tether/internal/identity"
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

// Config configures an agent.
type Config struct {
	// Hub is the hub's base URL, https://HOST[:PORT]. Required.
	Hub *url.URL
	// HubClient carries enrollment and the tunnel: its transport holds the
	// hub's CA bundle and the HTTPS_PROXY settings. It is used for the hub
	// only, never for the API server. Nil means a client with the system
	// roots and http.ProxyFromEnvironment.
	HubClient *http.Client
	// JoinToken is the one-time token from cluster registration; needed only
	// until enrollment succeeds.
	JoinToken string
	// StateDir keeps the agent's key (agent.key) and cluster ID (cluster);
	// created 0700, files 0600. Required.
	StateDir string
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
	// Tunnel tunes the multiplexed connection; zero values are the tunnel
	// package's defaults.
	Tunnel tunnel.Config
}

// Agent is a configured agent; Run it.
type Agent struct {
	cfg    Config
	logger *slog.Logger
	proxy  *apiProxy
}

// ErrRefused wraps the hub's permanent refusals (bad or used join token,
// unknown or revoked agent): retrying cannot help.
var ErrRefused = errors.New("the hub refused this agent")

// New validates cfg. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if cfg.Hub == nil || cfg.Hub.Host == "" || cfg.Hub.Scheme != "https" {
		return nil, errors.New("agent: the hub URL must be https://HOST[:PORT]")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("agent: a state directory is required")
	}
	if cfg.APIServer == nil {
		return nil, errors.New("agent: the API server config is required")
	}
	if cfg.HubClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = http.ProxyFromEnvironment
		cfg.HubClient = &http.Client{Transport: t}
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.StableAfter == 0 {
		cfg.StableAfter = 30 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
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
	return &Agent{cfg: cfg, logger: logger, proxy: proxy}, nil
}

// enrollment is what the agent keeps in its state directory.
type enrollment struct {
	key      ed25519.PrivateKey
	cluster  string
	verifier *identity.AssertionVerifier
}

// Run enrolls if needed, then keeps a tunnel to the hub until ctx ends. It
// returns nil when ctx ends, or an error wrapping ErrRefused when the hub
// permanently refuses the agent. Every goroutine it starts has exited when
// it returns.
func (a *Agent) Run(ctx context.Context) error {
	bo := newBackoff(a.cfg.MinBackoff, a.cfg.MaxBackoff)
	var en enrollment
	for {
		var err error
		en, err = a.enrollment(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, ErrRefused) || ctx.Err() != nil {
			return ctxOr(ctx, err)
		}
		wait := bo.next()
		a.logger.Warn("enrollment failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond).String())
		if !sleep(ctx, wait) {
			return nil
		}
	}
	bo.reset()
	key, cluster := en.key, en.cluster
	handler := a.proxy.forCluster(cluster, en.verifier)
	a.checkPermissions(ctx, false)
	rbac := &rbacManager{cfg: a.cfg.APIServer, logger: a.logger}
	defer rbac.stop()

	var served sync.WaitGroup // sessions still finishing in-flight requests
	defer served.Wait()
	for {
		start := time.Now()
		err := a.connect(ctx, key, cluster, handler, rbac, &served)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRefused) {
			return err
		}
		if time.Since(start) >= a.cfg.StableAfter {
			bo.reset()
		}
		wait := bo.next()
		a.logger.Warn("tunnel down; reconnecting", "cluster", cluster, "err", err, "retry_in", wait.Round(time.Millisecond).String())
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// connect dials one tunnel and serves it until it dies, the hub asks the
// agent to go elsewhere, or ctx ends. A session told to go away keeps
// serving its in-flight requests in the background (counted by served).
func (a *Agent) connect(ctx context.Context, key ed25519.PrivateKey, cluster string, handler http.Handler, rbac *rbacManager, served *sync.WaitGroup) error {
	proof, err := agentkey.Sign(key, cluster, a.cfg.Hub.Host, time.Now())
	if err != nil {
		return err
	}
	header := http.Header{}
	header.Set("Authorization", proof)
	header.Set(HeaderAgentVersion, a.cfg.Version)
	header.Set(HeaderKubernetesVersion, a.kubernetesVersion(ctx))
	u := *a.cfg.Hub
	u.Scheme = "wss"
	u.Path = strings.TrimSuffix(u.Path, "/") + TunnelPath
	sess, err := tunnel.Dial(ctx, tunnel.DialConfig{URL: u.String(), Header: header, Client: a.cfg.HubClient, Config: a.cfg.Tunnel})
	if err != nil {
		var he *tunnel.HandshakeError
		if errors.As(err, &he) && permanent(he.StatusCode) {
			return fmt.Errorf("%w: %s (HTTP %d); re-register the cluster and use a new join token", ErrRefused, he.Message, he.StatusCode)
		}
		return fmt.Errorf("dial hub: %w", err)
	}
	mode := sess.HandshakeHeader().Get(HeaderClusterMode)
	a.logger.Info("tunnel connected", "cluster", cluster, "hub", a.cfg.Hub.Host, "mode", mode)
	if hubRBAC := mode == "hub-rbac"; hubRBAC != rbac.running() {
		if hubRBAC {
			a.checkPermissions(ctx, true)
		}
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
		srv.Serve(sess) // returns when the session closes
	}()
	stop := func() {
		srv.Close()
		sess.Close() // also ends hijacked (upgraded) streams, which srv.Close leaves open
	}
	select {
	case <-ctx.Done():
		stop()
		return ctx.Err()
	case <-sess.Done():
		stop()
		return errors.Join(errors.New("tunnel closed"), sess.Err())
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
		return errors.New("hub asked the agent to reconnect elsewhere (draining)")
	}
}

func (a *Agent) kubernetesVersion(ctx context.Context) string {
	dc, err := discovery.NewDiscoveryClientForConfig(a.cfg.APIServer)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := dc.RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		a.logger.Warn("read the API server's version", "err", err)
		return ""
	}
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	json.Unmarshal(body, &v)
	return v.GitVersion
}

// enrollment returns the stored key, cluster ID and hub keys, enrolling
// first if the state directory has none.
func (a *Agent) enrollment(ctx context.Context) (enrollment, error) {
	keyPath := filepath.Join(a.cfg.StateDir, "agent.key")
	hubPath := filepath.Join(a.cfg.StateDir, "hub.json")
	keyPEM, kerr := os.ReadFile(keyPath)
	hubJSON, herr := os.ReadFile(hubPath)
	if kerr == nil && herr == nil {
		key, err := agentkey.UnmarshalPrivateKey(keyPEM)
		if err != nil {
			return enrollment{}, fmt.Errorf("%w: agent key %s: %v; delete the state directory and enroll again with a new join token", ErrRefused, keyPath, err)
		}
		var resp EnrollResponse
		if err := json.Unmarshal(hubJSON, &resp); err != nil {
			return enrollment{}, fmt.Errorf("%w: %s: %v; delete the state directory and enroll again with a new join token", ErrRefused, hubPath, err)
		}
		return newEnrollment(key, resp)
	}
	if a.cfg.JoinToken == "" {
		return enrollment{}, fmt.Errorf("%w: the agent is not enrolled (no %s) and has no join token; register the cluster on the hub and pass its join token", ErrRefused, hubPath)
	}
	key, err := agentkey.Generate()
	if err != nil {
		return enrollment{}, err
	}
	resp, err := a.enroll(ctx, key.Public().(ed25519.PublicKey))
	if err != nil {
		return enrollment{}, err
	}
	en, err := newEnrollment(key, resp)
	if err != nil {
		return enrollment{}, err
	}
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return enrollment{}, fmt.Errorf("create state directory: %w", err)
	}
	// Key first: hub.json marks the state complete.
	if err := atomicfile.Write(keyPath, agentkey.MarshalPrivateKey(key), 0o600); err != nil {
		return enrollment{}, err
	}
	b, _ := json.Marshal(resp)
	if err := atomicfile.Write(hubPath, b, 0o600); err != nil {
		return enrollment{}, err
	}
	a.logger.Info("agent enrolled", "cluster", resp.Cluster)
	return en, nil
}

func newEnrollment(key ed25519.PrivateKey, resp EnrollResponse) (enrollment, error) {
	var keys []ed25519.PublicKey
	for _, k := range resp.HubKeys {
		pub, err := identity.ParsePublicKeyPEM([]byte(k))
		if err != nil {
			return enrollment{}, fmt.Errorf("%w: the hub sent an unusable assertion key: %v", ErrRefused, err)
		}
		keys = append(keys, pub)
	}
	v, err := identity.NewAssertionVerifier(resp.HubID, keys...)
	if err != nil {
		return enrollment{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return enrollment{key: key, cluster: resp.Cluster, verifier: v}, nil
}

func (a *Agent) enroll(ctx context.Context, pub ed25519.PublicKey) (EnrollResponse, error) {
	body, _ := json.Marshal(EnrollRequest{PublicKey: base64.StdEncoding.EncodeToString(pub), AgentVersion: a.cfg.Version})
	u := *a.cfg.Hub
	u.Path = strings.TrimSuffix(u.Path, "/") + EnrollPath
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return EnrollResponse{}, err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.JoinToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.cfg.HubClient.Do(req)
	if err != nil {
		return EnrollResponse{}, fmt.Errorf("enroll at %s: %w", a.cfg.Hub.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return EnrollResponse{}, fmt.Errorf("enroll at %s: %w", a.cfg.Hub.Host, err)
	}
	if resp.StatusCode != http.StatusOK {
		var st struct{ Message string }
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		err := fmt.Errorf("enroll at %s: HTTP %d: %s", a.cfg.Hub.Host, resp.StatusCode, msg)
		if permanent(resp.StatusCode) {
			return EnrollResponse{}, fmt.Errorf("%w: %v", ErrRefused, err)
		}
		return EnrollResponse{}, err
	}
	var out EnrollResponse
	if err := json.Unmarshal(data, &out); err != nil || out.Cluster == "" || out.HubID == "" || len(out.HubKeys) == 0 {
		return EnrollResponse{}, fmt.Errorf("enroll at %s: unexpected answer %q", a.cfg.Hub.Host, data)
	}
	return out, nil
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

// checkPermissions reports, once, what the agent's own credentials lack.
func (a *Agent) checkPermissions(ctx context.Context, hubRBAC bool) {
	client, err := kubernetes.NewForConfig(a.cfg.APIServer)
	if err != nil {
		a.logger.Error("check the agent's permissions", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := CheckPermissions(ctx, client, hubRBAC); err != nil {
		a.logger.Error("the agent lacks permissions; signed-in callers will fail until this is fixed", "err", err)
	}
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
